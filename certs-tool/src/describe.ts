/**
 * A readable summary of a certificate, for `restpipe-certs inspect` and for logs.
 */
import type { CrlInfo } from './crl.js';
import { readExtensions } from './extensions.js';
import { parseCertificate } from './pem.js';
import { oneLineName } from './validate.js';

/** What `inspect` shows about a certificate. */
export interface CertificateInfo {
  /** Subject distinguished name, e.g. `CN=server.example`. */
  subject: string;
  /** The subject's common name, if any. */
  commonName: string | undefined;
  /** Issuer distinguished name. */
  issuer: string;
  /** Subject alternative names as `DNS:name` / `IP:addr`. */
  sans: string[];
  /** keyUsage bits, e.g. `['digitalSignature', 'keyEncipherment']`. */
  keyUsage: string[];
  /** Extended key usages, e.g. `['serverAuth']`. */
  extKeyUsage: string[];
  /** basicConstraints CA:TRUE. */
  isCa: boolean;
  notBefore: Date;
  notAfter: Date;
  /** Serial number, upper-case hex. */
  serialHex: string;
  /** SHA-256 fingerprint of the DER certificate, upper-case colon-hex (as `openssl x509 -fingerprint -sha256`). */
  fingerprintSha256: string;
  /** Public key, e.g. `RSA 2048 bits`, `EC prime256v1`. */
  publicKey: string;
}

function commonNameOf(subject: string): string | undefined {
  const line = subject.split('\n').find((l) => l.startsWith('CN='));
  return line?.slice(3);
}

/** Describe the first certificate in `certPem`. Throws NotPemError if there is none. */
export function describeCertificate(certPem: string): CertificateInfo {
  const cert = parseCertificate(certPem, 'the input');
  const ext = readExtensions(cert.raw);
  const key = cert.publicKey;
  const details = key.asymmetricKeyDetails;
  let publicKey = (key.asymmetricKeyType ?? 'unknown').toUpperCase();
  if (details?.modulusLength) publicKey += ` ${details.modulusLength} bits`;
  else if (details?.namedCurve) publicKey += ` ${details.namedCurve}`;
  return {
    subject: oneLineName(cert.subject),
    commonName: commonNameOf(cert.subject),
    issuer: oneLineName(cert.issuer),
    sans: ext.sans,
    keyUsage: ext.keyUsage,
    extKeyUsage: ext.extKeyUsage,
    isCa: ext.isCa,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    serialHex: cert.serialNumber.toUpperCase(),
    fingerprintSha256: cert.fingerprint256.toUpperCase(),
    publicKey,
  };
}

function aligned(rows: ReadonlyArray<readonly [string, string]>): string {
  const width = Math.max(...rows.map(([label]) => label.length)) + 1;
  return `${rows.map(([label, value]) => `${(`${label}:`).padEnd(width)} ${value}`).join('\n')}\n`;
}

/** `describeCertificate` as aligned `label: value` lines, plus `extra` rows (e.g. revocation status). */
export function formatCertificateInfo(info: CertificateInfo, now: Date = new Date(), extra: ReadonlyArray<readonly [string, string]> = []): string {
  const status = now < info.notBefore ? ' (NOT YET VALID)' : now > info.notAfter ? ' (EXPIRED)' : '';
  const rows: Array<readonly [string, string]> = [
    ['Subject', info.subject],
    ['Issuer', info.issuer],
    ['Subject alt names', info.sans.join(', ') || '(none)'],
    ['CA', info.isCa ? 'yes' : 'no'],
    ['Key usage', info.keyUsage.join(', ') || '(none)'],
    ['Extended key usage', info.extKeyUsage.join(', ') || '(none)'],
    ['Not before', info.notBefore.toISOString()],
    ['Not after', info.notAfter.toISOString() + status],
    ['Serial', info.serialHex],
    ['Public key', info.publicKey],
    ['SHA-256 fingerprint', info.fingerprintSha256],
    ...extra,
  ];
  return aligned(rows);
}

/** A CRL as aligned lines: issuer, dates (STALE once past the next update), number, entries. */
export function formatCrlInfo(crl: CrlInfo, now: Date = new Date()): string {
  const stale = crl.nextUpdate !== undefined && now > crl.nextUpdate ? ' (STALE: re-issue it)' : '';
  const head = aligned([
    ['CRL issuer', crl.issuer],
    ['This update', crl.thisUpdate.toISOString()],
    ['Next update', (crl.nextUpdate?.toISOString() ?? '(none)') + stale],
    ['CRL number', crl.crlNumber === undefined ? '(none)' : String(crl.crlNumber)],
    ['Revoked', String(crl.revoked.length)],
  ]);
  return head + crl.revoked.map((r) => `  ${r.serialHex}  ${r.revokedAt.toISOString()}  ${r.reason}\n`).join('');
}
