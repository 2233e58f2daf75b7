/**
 * The NATS subjects of a cluster, all under its namespace
 * (`RP_SERVER_CLUSTER_NAME`). Instance and client names are escaped into
 * one subject token each, so no name can reach outside its place.
 */

/** A name as one subject token: each UTF-8 byte outside `[A-Za-z0-9_-]` becomes `%XX`; reversible. */
export function subjectToken(name: string): string {
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_-]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The name a `subjectToken` came from; undefined for a token no name gives. */
export function nameOfToken(token: string): string | undefined {
  if (!/^(?:[A-Za-z0-9_-]|%[0-9A-F]{2})*$/.test(token)) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    if (token[i] === '%') {
      bytes.push(Number.parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(token.charCodeAt(i));
    }
  }
  const name = Buffer.from(bytes).toString('utf8');
  return subjectToken(name) === token ? name : undefined;
}

/** The subjects of one cluster namespace. */
export class Subjects {
  constructor(readonly namespace: string) {}

  /** Broadcast presence: hello, heartbeats, connected and disconnected clients. */
  get presence(): string {
    return `${this.namespace}.presence`;
  }

  /** Request/reply: an instance's client list. */
  snapshot(instance: string): string {
    return `${this.namespace}.inst.${subjectToken(instance)}.snapshot`;
  }

  /** Request/reply: open a link to an instance. */
  linkOpen(instance: string): string {
    return `${this.namespace}.inst.${subjectToken(instance)}.link`;
  }

  /** The bytes for `instance` on link `link`. */
  linkData(instance: string, link: string): string {
    return `${this.namespace}.link.${subjectToken(instance)}.${link}`;
  }

  /** Every link's bytes for `instance` (one subscription per instance). */
  linkDataAll(instance: string): string {
    return `${this.namespace}.link.${subjectToken(instance)}.*`;
  }

  /** The inbox prefix of an instance's connection, inside the namespace. */
  inboxPrefix(instance: string): string {
    return `${this.namespace}._INBOX.${subjectToken(instance)}`;
  }
}
