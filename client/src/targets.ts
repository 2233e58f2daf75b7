/**
 * The servers a client dials: `RP_CLIENT_TARGET_HOSTNAME` parsed into
 * targets (one server, or the instances of a cluster), and the rotation
 * through them that the connection loop follows. The list is shuffled once
 * per client, so a fleet given the same list spreads over the instances
 * instead of piling onto the first; on a failed attempt, a broken pipe or a
 * GoAway the client moves to the next target, and the backoff applies once
 * per round through the list, not per target.
 */
import { ConfigError } from '@restpipe/shared';

/** One server to dial. */
export interface Target {
  /** A name or address; an IPv6 address without its brackets. */
  readonly host: string;
  readonly port: number;
  /** The name the server's certificate must carry (DNS or IP SAN): `RP_CLIENT_TARGET_SERVERNAME`, else `host`. */
  readonly servername: string;
}

/** `host` or `[IPv6]`, then an optional `:port`; the same shape `RP_CLIENT_TARGET_HOSTNAME`'s check accepts. */
const ENTRY = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:,[\]]+))(?::(\d{1,5}))?$/;

/**
 * The targets of a comma-separated list of `host` or `host:port` entries
 * (IPv6 in brackets: `[::1]:4443`); a bare host uses `defaultPort`. Each
 * target's servername is `servername` when given, else its own host.
 * Repeated entries count once (the first stays). Throws `ConfigError` for a
 * bad entry or an empty list.
 */
export function parseTargets(list: string, defaultPort: number, servername?: string): readonly Target[] {
  const targets: Target[] = [];
  const seen = new Set<string>();
  for (const entry of list.split(',').map((e) => e.trim())) {
    const m = ENTRY.exec(entry);
    if (!m) throw new ConfigError(`"${entry}" is not a host or host:port`);
    const host = (m[1] ?? m[2]) as string;
    const port = m[3] === undefined ? defaultPort : Number(m[3]);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`"${entry}": the port must be from 1 to 65535`);
    const target = { host, port, servername: servername ?? host };
    const key = targetAddress(target).toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    targets.push(target);
  }
  return targets;
}

/** `host:port` as logs and status show it (`[::1]:4443` for IPv6). */
export function targetAddress(target: { readonly host: string; readonly port: number }): string {
  return target.host.includes(':') ? `[${target.host}]:${target.port}` : `${target.host}:${target.port}`;
}

/**
 * The targets as the client's start line shows them: `server a:1` or
 * `servers a:1, b:2`, with ` (certificate name X)` when one name, not each
 * host's own, is required of every server.
 */
export function describeTargets(targets: readonly Target[]): string {
  const list = targets.map(targetAddress).join(', ');
  const names = new Set(targets.map((t) => t.servername));
  const [name] = names;
  const shared = names.size === 1 && name !== undefined && targets.some((t) => t.servername !== t.host);
  return `${targets.length === 1 ? 'server' : 'servers'} ${list}${shared ? ` (certificate name ${name})` : ''}`;
}

/** A copy of `items` in random order (Fisher–Yates); `random` gives numbers in [0, 1). */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(random() * (i + 1)));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/**
 * Which target to dial next, and when a round through the list is over so
 * that the caller waits its backoff. A round counts the targets tried since
 * the last wait; a pipe that stayed up for the stable time starts a new
 * round with its own target as the first tried. So a GoAway sends the
 * client to the next target at once, but two agents sharing one identity
 * that replace each other on two instances still wait once per round.
 */
export class TargetRotation {
  /** In dial order: the list shuffled once. */
  readonly targets: readonly Target[];
  private index = 0;
  private tried = 0;

  /** `random` (in [0, 1)) shuffles the list. @default Math.random */
  constructor(targets: readonly Target[], random: () => number = Math.random) {
    if (targets.length === 0) throw new ConfigError('no server to dial');
    this.targets = Object.freeze(shuffled(targets, random));
  }

  /** The target being dialed or connected to, or the next one to dial. */
  get current(): Target {
    return this.targets[this.index] as Target;
  }

  /** An attempt on the current target starts. */
  begin(): Target {
    this.tried++;
    return this.current;
  }

  /** The attempt failed: moves to the next target; true when the round is over (wait before dialing it). */
  failed(): boolean {
    return this.moveOn(false);
  }

  /**
   * The pipe to the current target ended: moves to the next target; true
   * when the caller must wait first. A pipe that broke always waits (as a
   * single server does, so a fleet that lost an instance comes back spread
   * out); one the server sent away (GoAway) waits only when the round is over.
   */
  ended(how: { sentAway: boolean; stable: boolean }): boolean {
    if (how.stable) this.tried = 1;
    return this.moveOn(!how.sentAway);
  }

  private moveOn(waitAnyway: boolean): boolean {
    this.index = (this.index + 1) % this.targets.length;
    const wait = waitAnyway || this.tried >= this.targets.length;
    if (wait) this.tried = 0;
    return wait;
  }
}
