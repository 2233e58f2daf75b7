/**
 * A node's identity, checked before use: its key and certificate (the key
 * must be the certificate's), the CA bundle and the CRLs (every CRL signed
 * by a CA of the bundle). A node starts only with an identity that passes,
 * and a reload that does not pass keeps the identity it has.
 */
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { IdentityFilesError } from './errors.js';
import { CRL_FILE, type IdentityFileNames, type TlsIdentity } from './tls.js';
import { TrustError, TrustStore, validity } from './trust-store.js';

/** An identity that passed `prepareIdentity`. */
export interface LoadedIdentity extends TlsIdentity {
  /** The node's own certificate (the first of `cert`). */
  readonly certificate: X509Certificate;
  /** When the node's own certificate expires. */
  readonly notAfter: Date;
  readonly trust: TrustStore;
  /** SHA-256 over key, certificate, CA bundle and CRL: equal digests, equal identities. */
  readonly digest: string;
  /** When it was loaded. */
  readonly loadedAt: Date;
}

/** What names each part in messages: the files' paths, or words for an identity given in code. */
export interface IdentityLabels {
  readonly key: string;
  readonly cert: string;
  readonly ca: string;
  readonly crl: string;
}

export const GIVEN_IDENTITY_LABELS: IdentityLabels = Object.freeze({ key: 'the key', cert: 'the certificate', ca: 'the CA bundle', crl: 'the CRLs' });

/** The labels of the files of a certificate folder: their names. */
export function fileLabels(files: IdentityFileNames): IdentityLabels {
  return { key: files.key, cert: files.cert, ca: files.ca, crl: files.crl ?? CRL_FILE };
}

/**
 * Checks an identity and parses what the node needs from it. Throws an
 * `IdentityFilesError` (one line, naming the file) when the key or a certificate
 * does not parse, the key is not the certificate's, or a CRL is not signed
 * by a CA of the bundle.
 */
export function prepareIdentity(identity: TlsIdentity, labels: IdentityLabels = GIVEN_IDENTITY_LABELS, prefix = ''): LoadedIdentity {
  const fail = (message: string, cause?: unknown): never => {
    throw new IdentityFilesError(`${prefix}${message}`, cause === undefined ? undefined : { cause });
  };
  let certificate: X509Certificate | undefined;
  try {
    certificate = new X509Certificate(identity.cert);
  } catch (err) {
    fail(`${labels.cert} is not a PEM certificate (${(err as Error).message})`, err);
  }
  const cert = certificate as X509Certificate;
  try {
    const key = createPrivateKey(identity.key);
    if (!cert.checkPrivateKey(key)) fail(`${labels.key} is not the key of ${labels.cert} (${cert.subject.replace(/\n/g, ', ')})`);
  } catch (err) {
    if (err instanceof IdentityFilesError) throw err;
    fail(`${labels.key} is not a usable private key (${(err as Error).message})`, err);
  }
  let trust: TrustStore | undefined;
  try {
    trust = TrustStore.from(String(identity.ca), identity.crl === undefined ? undefined : String(identity.crl), { ca: labels.ca, crl: labels.crl });
  } catch (err) {
    if (err instanceof TrustError) fail(err.message, err);
    throw err;
  }
  const digest = createHash('sha256');
  for (const part of [identity.key, identity.cert, identity.ca, identity.crl ?? '']) digest.update(String(part.length)).update(':').update(part);
  return {
    key: identity.key,
    cert: identity.cert,
    ca: identity.ca,
    ...(identity.crl === undefined ? {} : { crl: identity.crl }),
    certificate: cert,
    notAfter: new Date(validity(cert).to),
    trust: trust as TrustStore,
    digest: digest.digest('hex'),
    loadedAt: new Date(),
  };
}

/** Seconds until `date` from `now` (negative once past), whole. */
export function secondsUntil(date: Date, now = Date.now()): number {
  return Math.floor((date.getTime() - now) / 1000);
}

/** The identity part of `/_restpipe/status`. */
export interface IdentityStatus {
  subject: string;
  serial: string;
  notAfter: string;
  expiresInS: number;
  caNotAfter: string;
  caExpiresInS: number;
  cas: number;
  crl: { revoked: number; nextUpdate: string | null; stale: boolean } | null;
  loadedAt: string;
}

export function identityStatus(id: LoadedIdentity, now = Date.now()): IdentityStatus {
  const caNotAfter = id.trust.earliestCaNotAfter;
  const nextUpdate = id.trust.earliestCrlNextUpdate;
  return {
    subject: id.certificate.subject.replace(/\n/g, ', '),
    serial: id.certificate.serialNumber,
    notAfter: id.notAfter.toISOString(),
    expiresInS: secondsUntil(id.notAfter, now),
    caNotAfter: caNotAfter.toISOString(),
    caExpiresInS: secondsUntil(caNotAfter, now),
    cas: id.trust.cas.length,
    crl: id.trust.hasCrls ? { revoked: id.trust.revokedCount, nextUpdate: nextUpdate?.toISOString() ?? null, stale: id.trust.staleCrls(now).length > 0 } : null,
    loadedAt: id.loadedAt.toISOString(),
  };
}
