/**
 * Mutual-TLS helpers shared by both nodes: loading an identity from its
 * folder, the certificate checks Node does not do for us (extended key
 * usage), and the peer's name.
 */
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

/** The certificate's subject common name, or undefined. */
export function certificateName(cert: PeerCertificate | undefined): string | undefined {
  const cn: unknown = cert?.subject?.CN;
  if (typeof cn === 'string' && cn !== '') return cn;
  if (Array.isArray(cn) && typeof cn[0] === 'string') return cn[0];
  return undefined;
}

/** True when the certificate allows `oid` as an extended key usage (or restricts none). */
export function allowsUsage(cert: PeerCertificate | undefined, oid: string): boolean {
  const usages = (cert as { ext_key_usage?: string[] } | undefined)?.ext_key_usage;
  return usages === undefined || usages.includes(oid);
}
