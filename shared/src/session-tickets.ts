/**
 * TLS session resumption on the server, so that a reconnect storm (every
 * agent back at once after a restart or a network cut) costs a resumed
 * handshake per agent instead of a full one with a certificate chain and
 * an RSA signature.
 *
 * The ticket keys are derived (HKDF-SHA-256) from the server's private key
 * and the CA bundle, so tickets issued before a restart still open after
 * it, and nobody without the server's key can forge or read one. A new key
 * or a new CA bundle gives new ticket keys: tickets issued under the old
 * trust no longer resume. A new CRL alone keeps them, which is safe: a
 * resumed session skips OpenSSL's verification, so the server checks every
 * accepted socket against the current CAs and CRL itself (`TrustStore`).
 */
import { createHash, createPrivateKey, hkdfSync } from 'node:crypto';
import type { X509Certificate } from 'node:crypto';

/** How long a session may be resumed (seconds); TLS 1.3 allows tickets of up to 7 days (RFC 8446 §4.6.1). */
export const SESSION_TIMEOUT_S = 24 * 60 * 60;

/** Node's ticket keys are 48 bytes: a key name, an HMAC key and an AES key. */
const TICKET_KEYS_BYTES = 48;

function bundleDigest(cas: readonly X509Certificate[]): Buffer {
  const hash = createHash('sha256');
  for (const der of cas.map((c) => c.raw).sort(Buffer.compare)) hash.update(der);
  return hash.digest();
}

/** The server's ticket keys: HKDF-SHA-256 over its private key (PKCS#8 DER), bound to the CA bundle. */
export function deriveTicketKeys(key: string | Buffer, cas: readonly X509Certificate[]): Buffer {
  const ikm = createPrivateKey(key).export({ type: 'pkcs8', format: 'der' });
  const info = Buffer.concat([Buffer.from('restpipe session ticket keys v1 '), bundleDigest(cas)]);
  return Buffer.from(hkdfSync('sha256', ikm, 'restpipe', info, TICKET_KEYS_BYTES));
}

/**
 * The session id context (OpenSSL keeps it in each session and resumes
 * only a session of the same context): 32 hex digits of the CA bundle's
 * digest, the same across restarts (Node's default hashes the command line).
 */
export function sessionIdContext(cas: readonly X509Certificate[]): string {
  return bundleDigest(cas).toString('hex').slice(0, 32);
}
