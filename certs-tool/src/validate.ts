/**
 * Validation of an identity before a node uses it: the checks TLS would otherwise fail on at
 * connect time, with a message that says what is wrong.
 */
import type { X509Certificate } from 'node:crypto';
import { ExpiredError, KeyMismatchError, NotCaError, NotYetValidError, WrongCaError, WrongUsageError } from './errors.js';
import { readExtensions } from './extensions.js';
import { parseCertificates, parsePrivateKey } from './pem.js';

/** Which node an identity is for. */
export type Role = 'server' | 'client';

/** The PEM texts of an identity to validate or install. */
export interface IdentityFiles {
  keyPem: string;
  certPem: string;
  caPem: string;
}

/** The extended key usage each role's certificate must carry. */
export const REQUIRED_USAGE: Record<Role, 'serverAuth' | 'clientAuth'> = {
  server: 'serverAuth',
  client: 'clientAuth',
};

/** `CN=foo, O=bar` from Node's multi-line subject. */
export function oneLineName(name: string): string {
  return name.split('\n').filter(Boolean).join(', ');
}

function checkValidity(cert: X509Certificate, what: string, now: Date): void {
  const notBefore = new Date(cert.validFrom);
  const notAfter = new Date(cert.validTo);
  if (now.getTime() < notBefore.getTime()) {
    throw new NotYetValidError(`${what} is not valid yet: valid from ${notBefore.toISOString()}`);
  }
  if (now.getTime() > notAfter.getTime()) {
    throw new ExpiredError(`${what} expired on ${notAfter.toISOString()}`);
  }
}

/**
 * The first of `candidates` whose key signed `cert` (and whose subject is its issuer), if any.
 */
function findIssuer(cert: X509Certificate, candidates: readonly X509Certificate[]): X509Certificate | undefined {
  return candidates.find((c) => cert.checkIssued(c) && cert.verify(c.publicKey));
}

/**
 * Check that an identity is usable by a node in `role`, throwing a {@link CertsToolError}
 * that explains the first problem found:
 *
 * - the key and certificate parse (`RP_CERTS_NOT_PEM`, `RP_CERTS_ENCRYPTED_KEY`);
 * - the key belongs to the certificate (`RP_CERTS_MISMATCH`);
 * - the CA is a CA (`RP_CERTS_NOT_CA`) and signed the certificate, directly or through
 *   intermediates that follow it in the certificate file (`RP_CERTS_WRONG_CA`);
 * - the certificate and the CA are valid at `now` (`RP_CERTS_EXPIRED`, `RP_CERTS_NOT_YET_VALID`);
 * - the certificate carries extendedKeyUsage serverAuth for a server, clientAuth for a client
 *   (`RP_CERTS_WRONG_USAGE`).
 *
 * The CA file may be a bundle of several CA certificates.
 */
export function validateIdentity(role: Role, files: IdentityFiles, now: Date = new Date()): void {
  const key = parsePrivateKey(files.keyPem, `the ${role} key`);
  const chain = parseCertificates(files.certPem, `the ${role} certificate`);
  const cas = parseCertificates(files.caPem, 'the CA certificate');
  const leaf = chain[0] as X509Certificate;
  const leafName = `the ${role} certificate (${oneLineName(leaf.subject)})`;

  if (!leaf.checkPrivateKey(key)) {
    throw new KeyMismatchError(`the ${role} key does not match ${leafName}`);
  }

  for (const ca of cas) {
    if (!ca.ca) {
      throw new NotCaError(`the CA certificate (${oneLineName(ca.subject)}) is not a CA certificate (no basicConstraints CA:TRUE)`);
    }
  }

  // Walk up from the leaf through any intermediates in the certificate file to a given CA.
  let current = leaf;
  let anchor: X509Certificate | undefined;
  for (let i = 1; ; i++) {
    anchor = findIssuer(current, cas);
    if (anchor) break;
    const next = chain[i];
    if (!next || !findIssuer(current, [next])) {
      throw new WrongCaError(
        `${leafName} was not signed by the given CA (${cas.map((c) => oneLineName(c.subject)).join('; ')}); ` +
          `it was issued by ${oneLineName(current.issuer)}`,
      );
    }
    current = next;
  }

  checkValidity(leaf, leafName, now);
  for (const intermediate of chain.slice(1)) {
    checkValidity(intermediate, `the intermediate CA certificate (${oneLineName(intermediate.subject)})`, now);
  }
  checkValidity(anchor, `the CA certificate (${oneLineName(anchor.subject)})`, now);

  const required = REQUIRED_USAGE[role];
  const eku = readExtensions(leaf.raw).extKeyUsage;
  if (!eku.includes(required) && !eku.includes('anyExtendedKeyUsage')) {
    const has = eku.length > 0 ? eku.join(', ') : 'none';
    throw new WrongUsageError(`${leafName} is not a ${role} certificate: it needs extended key usage ${required}, it has ${has}`);
  }
}
