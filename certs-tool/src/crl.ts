/**
 * Certificate revocation lists (RFC 5280 section 5): building one signed by the CA, reading
 * and verifying one against a CA, and looking a certificate up in it. Built and parsed with
 * @peculiar/x509 (node-forge has no CRL support); signed with the CA's RSA or EC key.
 *
 * What node:tls does with a CRL (`tls.createSecureContext({ crl })`, tested in
 * test/crl-tls.test.ts): it refuses text that is not a CRL, but accepts a CRL with a bad
 * signature, from another CA, not yet valid or past its nextUpdate, and then refuses EVERY
 * client of that CA at the handshake (CRL_SIGNATURE_FAILURE, UNABLE_TO_GET_CRL,
 * CRL_NOT_YET_VALID, CRL_HAS_EXPIRED). Hence {@link verifyCrl}, for a node to check at start.
 */
import type { X509Certificate as NativeCertificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLNumber, id_ce_cRLNumber } from '@peculiar/asn1-x509';
import { CrlStaleError, InvalidArgumentError, KeyMismatchError, NotCaError, NotPemError, NotYetValidError, WrongCaError } from './errors.js';
import { readExtensions } from './extensions.js';
import type { Identity } from './identities.js';
import { parseCertificate, parseCertificates, parsePrivateKey, pemBlocks } from './pem.js';
import { oneLineName } from './validate.js';
import { keyIdentifierOf, webCrypto, webSigningKey, x509 } from './x509-signer.js';

/**
 * The CRL reason codes (RFC 5280 section 5.3.1) the tool writes. `unspecified` writes no
 * reasonCode extension, as the RFC asks; certificateHold/removeFromCRL (suspension) and the
 * CA/AA compromise codes do not apply to a pipe identity.
 */
export const REVOCATION_REASONS = ['unspecified', 'keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'privilegeWithdrawn'] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

const REASON_CODES: Record<RevocationReason, x509.X509CrlReason> = {
  unspecified: x509.X509CrlReason.unspecified,
  keyCompromise: x509.X509CrlReason.keyCompromise,
  affiliationChanged: x509.X509CrlReason.affiliationChanged,
  superseded: x509.X509CrlReason.superseded,
  cessationOfOperation: x509.X509CrlReason.cessationOfOperation,
  privilegeWithdrawn: x509.X509CrlReason.privilegeWithdrawn,
};

/** @default 30 */
export const DEFAULT_NEXT_UPDATE_DAYS = 30;
/** A CRL is re-issued at least this often: a year. */
export const MAX_NEXT_UPDATE_DAYS = 366;
const DAY_MS = 24 * 60 * 60 * 1000;
/** thisUpdate is back-dated like certificates' notBefore: OpenSSL refuses every client while a CRL is "not yet valid". */
const BACKDATE_MS = 5 * 60 * 1000;

/** One revoked certificate. */
export interface RevokedCertificate {
  /** Serial number, upper-case hex in whole bytes (as `openssl crl -text` and `inspect` show it). */
  serialHex: string;
  revokedAt: Date;
  reason: RevocationReason;
}

/** A CRL as read from PEM. */
export interface CrlInfo {
  /** The issuer's distinguished name, e.g. `CN=RestPipe CA`. */
  issuer: string;
  thisUpdate: Date;
  /** Absent only in CRLs from other tools; ours always have one. */
  nextUpdate: Date | undefined;
  /** The cRLNumber extension, if present. */
  crlNumber: number | undefined;
  revoked: RevokedCertificate[];
  /** This one CRL as PEM. */
  pem: string;
}

/** Throws InvalidArgumentError unless `reason` is one of {@link REVOCATION_REASONS}. */
export function checkRevocationReason(reason: unknown): RevocationReason {
  if (!REVOCATION_REASONS.includes(reason as RevocationReason)) {
    throw new InvalidArgumentError(`revocation reason must be one of ${REVOCATION_REASONS.join(', ')}; got ${JSON.stringify(reason)}`);
  }
  return reason as RevocationReason;
}

/**
 * A serial number as the tool writes it: upper-case hex in whole bytes, without leading zero
 * bytes (`0x000A1F` → `0A1F`). Throws InvalidArgumentError unless `hex` is hex digits (colons allowed, as
 * `openssl x509 -serial` and fingerprints print them).
 */
export function normalizeSerial(hex: string): string {
  const digits = hex.trim().replace(/^0x/i, '').replace(/:/g, '');
  if (!/^[0-9A-Fa-f]{1,40}$/.test(digits)) {
    throw new InvalidArgumentError(`a serial number is 1 to 40 hex digits (20 bytes), got ${JSON.stringify(hex)}`);
  }
  // Whole bytes, as OpenSSL and node:crypto print serials: 0x08395F..., not 0x8395F...
  const trimmed = digits.toUpperCase().replace(/^0+(?=.)/, '');
  return trimmed.length % 2 === 1 ? `0${trimmed}` : trimmed;
}

function checkNextUpdateDays(days: number): void {
  if (!Number.isInteger(days) || days < 1 || days > MAX_NEXT_UPDATE_DAYS) {
    throw new InvalidArgumentError(`next update must be a whole number of days between 1 and ${MAX_NEXT_UPDATE_DAYS}, got ${String(days)}`);
  }
}

/** Options of {@link createCrl}. */
export interface CreateCrlOptions {
  /** The cRLNumber: one more than the last CRL this CA issued (RFC 5280 5.2.3). */
  crlNumber: number;
  /** When the list was made. @default now */
  now?: Date;
  /** nextUpdate is this many days after `now`: re-issue (`restpipe-certs crl`) before then. @default 30 */
  nextUpdateDays?: number;
}

/** Throws NotCaError unless `cert` may sign CRLs (basicConstraints CA, and cRLSign if it has a keyUsage). */
function checkCrlSigner(cert: NativeCertificate): void {
  if (!cert.ca) throw new NotCaError(`the CA certificate (${oneLineName(cert.subject)}) is not a CA certificate`);
  const usage = readExtensions(cert.raw).keyUsage;
  if (usage.length > 0 && !usage.includes('cRLSign')) {
    throw new NotCaError(`the CA certificate (${oneLineName(cert.subject)}) may not sign CRLs: its key usage lacks cRLSign`);
  }
}

/**
 * Build and sign a version 2 CRL: the CA's name as issuer, thisUpdate (five minutes back,
 * for peers with a slow clock), nextUpdate, the authorityKeyIdentifier and cRLNumber
 * extensions, and one entry per revoked certificate with its revocation date and reason code.
 * @returns the CRL as PEM (`-----BEGIN X509 CRL-----`).
 */
export async function createCrl(ca: Identity, revoked: readonly RevokedCertificate[], opts: CreateCrlOptions): Promise<string> {
  const nextUpdateDays = opts.nextUpdateDays ?? DEFAULT_NEXT_UPDATE_DAYS;
  checkNextUpdateDays(nextUpdateDays);
  if (!Number.isSafeInteger(opts.crlNumber) || opts.crlNumber < 1) {
    throw new InvalidArgumentError(`the CRL number must be a positive whole number, got ${String(opts.crlNumber)}`);
  }
  const native = parseCertificate(ca.certPem, 'the CA certificate');
  const key = parsePrivateKey(ca.keyPem, 'the CA key');
  checkCrlSigner(native);
  if (!native.checkPrivateKey(key)) throw new KeyMismatchError('the CA key does not match the CA certificate');
  const now = opts.now ?? new Date();
  // X.509 times have one-second resolution.
  const thisUpdate = new Date(Math.floor((now.getTime() - BACKDATE_MS) / 1000) * 1000);
  const nextUpdate = new Date(Math.floor((now.getTime() + nextUpdateDays * DAY_MS) / 1000) * 1000);
  const caCert = new x509.X509Certificate(native.raw);
  const signer = await webSigningKey(key, 'the CA key');
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: caCert.subjectName,
      thisUpdate,
      nextUpdate,
      signingKey: signer.key,
      signingAlgorithm: signer.algorithm,
      extensions: [
        new x509.AuthorityKeyIdentifierExtension(await keyIdentifierOf(caCert), false),
        new x509.Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(opts.crlNumber))),
      ],
      entries: revoked.map((r) => ({
        serialNumber: normalizeSerial(r.serialHex),
        revocationDate: new Date(Math.floor(r.revokedAt.getTime() / 1000) * 1000),
        reason: REASON_CODES[checkRevocationReason(r.reason)],
      })),
    },
    webCrypto,
  );
  // End with a newline, so CRL files can be concatenated into a bundle (`cat a b`).
  return `${x509.PemConverter.encode(crl.rawData, 'X509 CRL').trimEnd()}\n`;
}

const REASON_NAMES = new Map<number, RevocationReason>(Object.entries(REASON_CODES).map(([name, code]) => [code, name as RevocationReason]));

function crlInfo(crl: x509.X509Crl, pem: string): CrlInfo {
  const numberExt = crl.getExtension(id_ce_cRLNumber);
  const crlNumber = numberExt ? AsnConvert.parse(numberExt.value, CRLNumber).value : undefined;
  return {
    issuer: crl.issuer,
    thisUpdate: crl.thisUpdate,
    nextUpdate: crl.nextUpdate,
    crlNumber,
    revoked: crl.entries.map((e) => ({
      serialHex: normalizeSerial(e.serialNumber),
      revokedAt: e.revocationDate,
      // Codes the tool does not write (e.g. certificateHold from another tool) read as unspecified.
      reason: REASON_NAMES.get(e.reason ?? 0) ?? 'unspecified',
    })),
    pem,
  };
}

function parseX509Crls(pem: string, label: string): Array<{ crl: x509.X509Crl; pem: string }> {
  const blocks = pemBlocks(pem);
  const crlBlocks = blocks.filter((b) => b.type === 'X509 CRL');
  if (crlBlocks.length === 0) {
    const found = blocks.length === 0 ? 'no PEM data found' : `found ${[...new Set(blocks.map((b) => b.type))].join(', ')}`;
    throw new NotPemError(`${label} is not a PEM CRL (${found})`);
  }
  return crlBlocks.map((b) => {
    try {
      return { crl: new x509.X509Crl(b.text), pem: b.text };
    } catch (cause) {
      throw new NotPemError(`${label} contains a malformed PEM CRL`, { cause });
    }
  });
}

/**
 * Every CRL in a PEM text (one, or a bundle of one per CA during a CA rotation), without
 * checking signatures. Throws NotPemError when there is none or one is malformed.
 * @param label names the input in error messages, e.g. a file path.
 */
export function parseCrls(pem: string, label = 'the CRL'): CrlInfo[] {
  return parseX509Crls(pem, label).map(({ crl, pem: one }) => crlInfo(crl, one));
}

/** A CRL checked against its CA. */
export interface VerifiedCrl extends CrlInfo {
  /** The subject of the CA certificate that signed it. */
  signedBy: string;
  /** True when `now` is past nextUpdate (only returned with `allowStale`). */
  stale: boolean;
}

/** Options of {@link verifyCrl}. */
export interface VerifyCrlOptions {
  /** @default new Date() */
  now?: Date;
  /** Return a stale CRL (with `stale: true`) instead of throwing CrlStaleError. @default false */
  allowStale?: boolean;
  /** The label of the CRL in messages, e.g. its path. @default 'the CRL' */
  label?: string;
}

/**
 * Read the CRL(s) in `crlPem` and check each one against the CA certificate(s) in `caPem`
 * (a bundle is fine): its issuer is one of the CAs and that CA's key signed it, the CA may
 * sign CRLs, it is valid now (thisUpdate passed) and not stale (nextUpdate not passed).
 * These are the checks OpenSSL makes at each handshake, where a failure refuses every client.
 *
 * @throws NotPemError when `crlPem` holds no CRL or a malformed one, or `caPem` no certificate
 * @throws WrongCaError when a CRL was not signed by any of the CAs
 * @throws NotCaError when the signing CA may not sign CRLs
 * @throws NotYetValidError when thisUpdate is in the future (check the clock)
 * @throws CrlStaleError when nextUpdate has passed (unless `allowStale`)
 */
export async function verifyCrl(crlPem: string, caPem: string, opts: VerifyCrlOptions = {}): Promise<VerifiedCrl[]> {
  const label = opts.label ?? 'the CRL';
  const now = opts.now ?? new Date();
  const crls = parseX509Crls(crlPem, label);
  const cas = parseCertificates(caPem, 'the CA certificate').map((native) => ({ native, cert: new x509.X509Certificate(native.raw) }));
  const out: VerifiedCrl[] = [];
  for (const { crl, pem } of crls) {
    let signer: NativeCertificate | undefined;
    for (const ca of cas) {
      if (ca.cert.subject === crl.issuer && (await crl.verify({ publicKey: ca.cert }, webCrypto).catch(() => false))) {
        signer = ca.native;
        break;
      }
    }
    const info = crlInfo(crl, pem);
    if (!signer) {
      throw new WrongCaError(`${label} (issuer ${info.issuer}) was not signed by the given CA (${cas.map((c) => oneLineName(c.native.subject)).join('; ')})`);
    }
    checkCrlSigner(signer);
    if (now.getTime() < info.thisUpdate.getTime()) {
      throw new NotYetValidError(`${label} (issuer ${info.issuer}) is not valid yet: issued for ${info.thisUpdate.toISOString()}; check the clock`);
    }
    const stale = info.nextUpdate !== undefined && now.getTime() > info.nextUpdate.getTime();
    if (stale && !opts.allowStale) {
      throw new CrlStaleError(
        `${label} (issuer ${info.issuer}) is stale: its next update was ${info.nextUpdate?.toISOString()}; ` +
          're-issue it with restpipe-certs crl (a stale CRL makes TLS refuse every client)',
      );
    }
    out.push({ ...info, signedBy: oneLineName(signer.subject), stale });
  }
  return out;
}

/**
 * The entry of `certPem` in `crls`, if any: a CRL by the certificate's issuer that lists its
 * serial number. (The CRLs' signatures are not checked here: see {@link verifyCrl}.)
 */
export function findRevocation(crls: readonly CrlInfo[], certPem: string): RevokedCertificate | undefined {
  const cert = parseCertificate(certPem, 'the certificate');
  const issuer = new x509.X509Certificate(cert.raw).issuer;
  const serial = normalizeSerial(cert.serialNumber);
  for (const crl of crls) {
    if (crl.issuer !== issuer) continue;
    const entry = crl.revoked.find((r) => r.serialHex === serial);
    if (entry) return entry;
  }
  return undefined;
}

/** True when some CRL in `crls` was issued by the certificate's issuer (so it can tell). */
export function crlCoversIssuer(crls: readonly CrlInfo[], certPem: string): boolean {
  const issuer = new x509.X509Certificate(parseCertificate(certPem, 'the certificate').raw).issuer;
  return crls.some((c) => c.issuer === issuer);
}
