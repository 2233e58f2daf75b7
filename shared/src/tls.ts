/**
 * Mutual-TLS helpers shared by both nodes: loading an identity from its
 * folder, the certificate checks Node does not do for us (extended key
 * usage), and the peer's name.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { ConfigError } from './errors.js';

/** A node's key, its certificate and the CA that signs the peer's. */
export interface TlsIdentity {
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
  readonly ca: string | Buffer;
}

/** File names in a node's certificate folder, as the certs-tool installs them. */
export interface IdentityFileNames {
  readonly key: string;
  readonly cert: string;
  readonly ca: string;
}

export const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';
export const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';

/** Reads an identity from `dir`; a missing file names the folder's variable. */
export function loadIdentity(dir: string, files: IdentityFileNames, variable: string): TlsIdentity {
  const read = (name: string) => {
    const path = join(dir, name);
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(
        `${variable}="${dir}": cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); install an identity with restpipe-certs set-identity`,
        {
          cause: err,
        },
      );
    }
  };
  return { key: read(files.key), cert: read(files.cert), ca: read(files.ca) };
}

/**
 * The certificate's subject common name (the first, if it has several), or
 * undefined. Takes the object `getPeerCertificate()` builds or, leaner, the
 * `X509Certificate` of `getPeerX509Certificate()`: that one reads the name
 * alone instead of building an object with the DER, the public key and
 * fingerprints on every connection.
 */
export function certificateName(cert: PeerCertificate | X509Certificate | undefined): string | undefined {
  if (cert instanceof X509Certificate) return subjectCommonName(cert.subject) || undefined;
  const cn: unknown = cert?.subject?.CN;
  if (typeof cn === 'string' && cn !== '') return cn;
  if (Array.isArray(cn) && typeof cn[0] === 'string' && cn[0] !== '') return cn[0];
  return undefined;
}

/** True when the certificate allows `oid` as an extended key usage (or restricts none). */
export function allowsUsage(cert: PeerCertificate | X509Certificate | undefined, oid: string): boolean {
  // X509Certificate.keyUsage holds the extended key usage OIDs, undefined without the extension.
  const usages = cert instanceof X509Certificate ? cert.keyUsage : (cert as { ext_key_usage?: string[] } | undefined)?.ext_key_usage;
  return usages === undefined || usages.includes(oid);
}

const HEX_PAIR = /^[0-9A-Fa-f]{2}$/;

/**
 * The first `CN` value of a subject as `X509Certificate.subject` prints it:
 * one relative name per line, the values of a multi-valued one joined by
 * ` + `, values escaped as RFC 4514 says (`\,`, `\+`, `\ `, `\\`…) and
 * control characters as `\XX` hex; every newline in a value is escaped, so
 * a value cannot fake a line. Undefined without a `CN`.
 */
export function subjectCommonName(subject: string | undefined): string | undefined {
  if (!subject) return undefined;
  for (const line of subject.split('\n')) {
    let i = 0;
    while (i < line.length) {
      const eq = line.indexOf('=', i);
      if (eq < 0) break;
      const key = line.slice(i, eq);
      let value = '';
      let trailingPlainSpace = false;
      let j = eq + 1;
      for (; j < line.length; j++) {
        const c = line[j] as string;
        if (c === '\\') {
          const hex = line.slice(j + 1, j + 3);
          if (HEX_PAIR.test(hex)) {
            value += String.fromCharCode(Number.parseInt(hex, 16));
            j += 2;
          } else {
            value += line[j + 1] ?? '';
            j += 1;
          }
          trailingPlainSpace = false;
        } else if (c === '+') {
          break; // the next value of a multi-valued name: ` + ` (a `+` in a value is escaped)
        } else {
          value += c;
          trailingPlainSpace = c === ' ';
        }
      }
      // The separator's space before `+` is not part of the value (a value's own trailing space is escaped).
      if (j < line.length && trailingPlainSpace) value = value.slice(0, -1);
      if (key === 'CN') return value;
      i = j + 1;
      if (line[i] === ' ') i++;
    }
  }
  return undefined;
}
