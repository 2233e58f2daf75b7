/**
 * Mutual-TLS helpers shared by both nodes: loading an identity from its
 * folder, the TLS versions and ciphers both nodes allow, the certificate
 * checks Node does not do for us (extended key usage), OpenSSL's
 * verification codes in words, and the peer's name.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { ConfigError } from './errors.js';

/** A node's key, its certificate, the CA bundle that signs the peer's, and the CAs' revocation lists. */
export interface TlsIdentity {
  readonly key: string | Buffer;
  readonly cert: string | Buffer;
  /** One CA, or several during a CA rotation (PEM, concatenated). */
  readonly ca: string | Buffer;
  /** CRLs (PEM, one per CA or fewer), each signed by a CA of `ca`; none when absent. */
  readonly crl?: string | Buffer;
}

/** File names in a node's certificate folder, as the certs-tool installs them. */
export interface IdentityFileNames {
  readonly key: string;
  readonly cert: string;
  readonly ca: string;
  /** The optional revocation list. @default CRL_FILE */
  readonly crl?: string;
}

/** The revocation list's file name in a node's certificate folder; a node without one revokes nothing. */
export const CRL_FILE = 'crl.pem';

export const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';
export const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';

/**
 * Reads an identity from `dir`: key, certificate and CA bundle, and the
 * CRL file when there is one. A missing file names the folder's variable.
 */
export function loadIdentity(dir: string, files: IdentityFileNames, variable: string): TlsIdentity {
  const read = (name: string, optional = false) => {
    const path = join(dir, name);
    try {
      return readFileSync(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (optional && code === 'ENOENT') return undefined;
      throw new ConfigError(
        `${variable}="${dir}": cannot read ${path} (${code ?? (err as Error).message}); install an identity with restpipe-certs set-identity`,
        {
          cause: err,
        },
      );
    }
  };
  const crl = read(files.crl ?? CRL_FILE, true);
  return { key: read(files.key) as Buffer, cert: read(files.cert) as Buffer, ca: read(files.ca) as Buffer, ...(crl ? { crl } : {}) };
}

/** The lowest TLS version a node accepts, as `RP_TLS_MIN_VERSION` holds it. */
export type TlsMinVersion = 'tlsv1.3' | 'tlsv1.2';

/**
 * The TLS 1.2 suites allowed with `RP_TLS_MIN_VERSION=TLSv1.2`: ECDHE key
 * exchange (forward secrecy) and AEAD ciphers only, so no CBC suite (the
 * LUCKY13 family) and no static RSA key exchange is ever offered. TLS 1.3
 * suites are all AEAD and stay OpenSSL's defaults.
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** The `minVersion` and `ciphers` options of a secure context, for both nodes. */
export function tlsVersionOptions(min: TlsMinVersion): { minVersion: 'TLSv1.3' | 'TLSv1.2'; ciphers: string } {
  return { minVersion: min === 'tlsv1.2' ? 'TLSv1.2' : 'TLSv1.3', ciphers: TLS12_CIPHERS };
}

/**
 * OpenSSL verification codes that are about a revocation list, not about
 * the certificate: Node's `crl` option makes OpenSSL want a current CRL
 * from every CA on the chain, so a stale CRL (`CRL_HAS_EXPIRED`) or a CA
 * without one (`UNABLE_TO_GET_CRL`) would turn away every client of that
 * CA. For these the node decides with its own check instead.
 */
const CRL_VERIFY_CODES = new Set([
  'UNABLE_TO_GET_CRL',
  'CRL_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_SIGNATURE_FAILURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  'UNABLE_TO_GET_CRL_ISSUER',
  'DIFFERENT_CRL_SCOPE',
  'KEYUSAGE_NO_CRL_SIGN',
  'UNHANDLED_CRITICAL_CRL_EXTENSION',
]);

/** True for a verification code about a CRL rather than the certificate (see `CRL_VERIFY_CODES`). */
export function isCrlVerifyCode(code: string | null | undefined): boolean {
  return code != null && CRL_VERIFY_CODES.has(code);
}

const UNTRUSTED_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_CHAIN_TOO_LONG',
]);

/** OpenSSL's verification code of a peer certificate (`socket.authorizationError`) in words: "its certificate …". */
export function describeVerifyCode(code: string | null | undefined, usage: 'client' | 'server'): string {
  if (!code) return 'it sent no certificate';
  if (code === 'CERT_REVOKED') return 'its certificate is revoked';
  if (code === 'CERT_HAS_EXPIRED') return 'its certificate has expired';
  if (code === 'CERT_NOT_YET_VALID') return 'its certificate is not valid yet';
  if (code === 'INVALID_PURPOSE') return `its certificate does not allow ${usage} authentication`;
  if (UNTRUSTED_CODES.has(code)) return 'its certificate is not signed by a CA this node trusts';
  return `its certificate failed verification (${code})`;
}

/**
 * The CA certificates the peer sent with its own, as Node links them from
 * a full handshake (`issuerCertificate`); empty after a resumed one.
 */
export function peerChain(cert: X509Certificate): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let next = cert.issuerCertificate;
  while (next && chain.length < 8 && !chain.includes(next) && next !== cert) {
    chain.push(next);
    next = next.issuerCertificate;
  }
  return chain;
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
