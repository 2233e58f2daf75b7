/**
 * Creating the pipe's identities: a CA, server identities and client identities, signed with
 * node-forge (SHA-256). Key usages follow RFC 5280 and what OpenSSL checks for TLS:
 * the CA signs certificates only; a server certificate is for serverAuth and carries the
 * names clients dial in its subjectAltName; a client certificate is for clientAuth and its
 * CN is the name the server routes to.
 */
import { createPrivateKey, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { ExpiredError, InvalidArgumentError, KeyMismatchError, NotCaError } from './errors.js';
import { DEFAULT_KEY_BITS, checkKeyBits, generateRsaKey } from './keys.js';
import { parseCertificate, parsePrivateKey } from './pem.js';

/** A private key and its certificate, both PEM. */
export interface Identity {
  /** PKCS#8 PEM private key (unencrypted). */
  keyPem: string;
  certPem: string;
}

/** Options shared by every create function. */
export interface CommonOptions {
  /**
   * Validity in days, counted from `validFrom`. A leaf never outlives its CA: its notAfter is
   * capped at the CA's.
   * @default 825 for server/client identities, 3650 for a CA
   */
  days?: number;
  /** RSA modulus length. @default 2048 */
  keyBits?: number;
  /** notBefore. Back-dated by default so a peer whose clock runs a little slow accepts it. @default now minus 5 minutes */
  validFrom?: Date;
}

/** @default 3650 */
export const DEFAULT_CA_DAYS = 3650;
/** 825 days is the longest lifetime Apple platforms accept for TLS server certificates. @default 825 */
export const DEFAULT_LEAF_DAYS = 825;
/** @default 'RestPipe CA' */
export const DEFAULT_CA_NAME = 'RestPipe CA';
const BACKDATE_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
const MAX_DAYS = 100 * 365;

/** CN upper bound from RFC 5280 (ub-common-name). */
const MAX_CN_LENGTH = 64;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
const DNS_LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?';
const DNS_NAME = new RegExp(`^(?:\\*\\.)?${DNS_LABEL}(?:\\.${DNS_LABEL})*\\.?$`);

/**
 * A random positive 128-bit serial number as hex. RFC 5280 wants serials unique per CA and
 * CA/B Forum wants at least 64 random bits; the top bit is cleared so the DER INTEGER is
 * positive, and a zero first byte is avoided so the encoding stays minimal.
 */
export function randomSerialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f || 0x01;
  return bytes.toString('hex');
}

function checkCommonName(cn: unknown, what: string): string {
  if (typeof cn !== 'string' || cn.trim() === '') {
    throw new InvalidArgumentError(`${what} must be a non-empty string`);
  }
  if (cn.length > MAX_CN_LENGTH) {
    throw new InvalidArgumentError(`${what} is longer than ${MAX_CN_LENGTH} characters: ${cn.slice(0, 20)}...`);
  }
  if (CONTROL_CHARS.test(cn)) {
    throw new InvalidArgumentError(`${what} contains control characters`);
  }
  return cn;
}

function resolveValidity(opts: CommonOptions, defaultDays: number): { notBefore: Date; notAfter: Date } {
  const days = opts.days ?? defaultDays;
  if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS) {
    throw new InvalidArgumentError(`days must be a whole number between 1 and ${MAX_DAYS}, got ${String(days)}`);
  }
  const notBefore = opts.validFrom ?? new Date(Date.now() - BACKDATE_MS);
  if (!(notBefore instanceof Date) || Number.isNaN(notBefore.getTime())) {
    throw new InvalidArgumentError('validFrom must be a valid Date');
  }
  // X.509 times have one-second resolution.
  const nb = new Date(Math.floor(notBefore.getTime() / 1000) * 1000);
  return { notBefore: nb, notAfter: new Date(nb.getTime() + days * DAY_MS) };
}

/** A UTF8String attribute, so names with any characters encode correctly. */
function cnAttribute(cn: string): forge.pki.CertificateField {
  // @types/node-forge types valueTagClass as an asn1.Class; forge actually wants an asn1.Type.
  return { name: 'commonName', value: cn, valueTagClass: forge.asn1.Type.UTF8 } as unknown as forge.pki.CertificateField;
}

function newCertificate(publicKey: forge.pki.PublicKey, commonName: string, validity: { notBefore: Date; notAfter: Date }): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = validity.notBefore;
  cert.validity.notAfter = validity.notAfter;
  cert.setSubject([cnAttribute(commonName)]);
  return cert;
}

/**
 * Create a self-signed CA: basicConstraints CA:TRUE (critical, pathlen 0: it signs leaf
 * identities only), keyUsage keyCertSign + cRLSign (critical), subjectKeyIdentifier.
 */
export async function createCa(opts: CommonOptions & { commonName?: string } = {}): Promise<Identity> {
  const commonName = checkCommonName(opts.commonName ?? DEFAULT_CA_NAME, 'CA common name');
  const validity = resolveValidity(opts, DEFAULT_CA_DAYS);
  const key = await generateRsaKey(opts.keyBits ?? DEFAULT_KEY_BITS);
  const cert = newCertificate(key.publicKey, commonName, validity);
  cert.setIssuer([cnAttribute(commonName)]);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key.privateKey, forge.md.sha256.create());
  return { keyPem: key.privateKeyPem, certPem: forge.pki.certificateToPem(cert) };
}

/** The parts of a CA identity needed to sign with it. */
interface Signer {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  keyIdentifier: string;
  notAfter: Date;
}

function loadSigner(ca: Identity): Signer {
  const native = parseCertificate(ca.certPem, 'the CA certificate');
  const nativeKey = parsePrivateKey(ca.keyPem, 'the CA key');
  if (!native.ca) {
    throw new NotCaError(`the CA certificate (${native.subject.replace(/\n/g, ', ')}) is not a CA certificate`);
  }
  if (!native.checkPrivateKey(nativeKey)) {
    throw new KeyMismatchError('the CA key does not match the CA certificate');
  }
  if (nativeKey.asymmetricKeyType !== 'rsa') {
    throw new InvalidArgumentError(`signing needs an RSA CA key; this CA key is ${nativeKey.asymmetricKeyType ?? 'unknown'}`);
  }
  const cert = forge.pki.certificateFromPem(native.toString());
  // forge wants the PKCS#1 or PKCS#8 PEM of an RSA key; re-export so any RSA encoding works.
  const key = forge.pki.privateKeyFromPem(createPrivateKey(ca.keyPem).export({ type: 'pkcs8', format: 'pem' }).toString());
  const skiExt = cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  const keyIdentifier = skiExt?.subjectKeyIdentifier ? forge.util.hexToBytes(skiExt.subjectKeyIdentifier) : cert.generateSubjectKeyIdentifier().getBytes();
  return { cert, key, keyIdentifier, notAfter: new Date(native.validTo) };
}

/**
 * forge parses name attributes as raw bytes but UTF-8-encodes UTF8String values when writing,
 * so decode them first or a non-ASCII issuer name would be encoded twice and no longer match
 * the CA's subject.
 */
function issuerAttributes(ca: forge.pki.Certificate): forge.pki.CertificateField[] {
  return ca.subject.attributes.map((a) => {
    const attr = { ...a } as { value?: unknown; valueTagClass?: number };
    if (attr.valueTagClass === forge.asn1.Type.UTF8 && typeof attr.value === 'string') {
      attr.value = forge.util.decodeUtf8(attr.value);
    }
    return attr as forge.pki.CertificateField;
  });
}

async function createLeaf(ca: Identity, opts: CommonOptions & { commonName: string }, commonName: string, extensions: object[]): Promise<Identity> {
  // Check the options before the CA, so a typo is reported as such.
  checkKeyBits(opts.keyBits ?? DEFAULT_KEY_BITS);
  const validity = resolveValidity(opts, DEFAULT_LEAF_DAYS);
  const signer = loadSigner(ca);
  if (validity.notBefore.getTime() >= signer.notAfter.getTime()) {
    throw new ExpiredError(`the CA expired on ${signer.notAfter.toISOString()}; create a new CA`);
  }
  if (validity.notAfter.getTime() > signer.notAfter.getTime()) {
    validity.notAfter = signer.notAfter;
  }
  const key = await generateRsaKey(opts.keyBits ?? DEFAULT_KEY_BITS);
  const cert = newCertificate(key.publicKey, commonName, validity);
  cert.setIssuer(issuerAttributes(signer.cert));
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    ...extensions,
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: signer.keyIdentifier },
  ]);
  cert.sign(signer.key, forge.md.sha256.create());
  return { keyPem: key.privateKeyPem, certPem: forge.pki.certificateToPem(cert) };
}

/** Throws unless every entry is a DNS name (a leading `*.` wildcard is allowed). */
function checkDnsNames(names: readonly string[]): void {
  for (const name of names) {
    if (typeof name !== 'string' || name.length > 253 || !DNS_NAME.test(name) || isIP(name) !== 0) {
      throw new InvalidArgumentError(`not a valid DNS name: ${JSON.stringify(name)}${isIP(String(name)) ? ' (use an IP address entry)' : ''}`);
    }
  }
}

function checkIpAddresses(addrs: readonly string[]): void {
  for (const addr of addrs) {
    if (typeof addr !== 'string' || isIP(addr) === 0) {
      throw new InvalidArgumentError(`not a valid IPv4 or IPv6 address: ${JSON.stringify(addr)}`);
    }
  }
}

/**
 * Create and sign a server identity: keyUsage digitalSignature + keyEncipherment (critical),
 * extKeyUsage serverAuth, basicConstraints CA:FALSE, subjectKeyIdentifier,
 * authorityKeyIdentifier, and a subjectAltName with every DNS name and IP address clients
 * may dial (RP_CLIENT_TARGET_HOSTNAME must be one of them).
 *
 * With no `dnsNames` and no `ipAddresses`, the SAN is the common name: `DNS:<commonName>`,
 * or `IP:<commonName>` when the common name is an IP address.
 */
export async function createServerIdentity(
  ca: Identity,
  opts: CommonOptions & { commonName: string; dnsNames?: string[]; ipAddresses?: string[] },
): Promise<Identity> {
  const commonName = checkCommonName(opts?.commonName, 'server common name');
  let dnsNames = [...(opts.dnsNames ?? [])];
  let ipAddresses = [...(opts.ipAddresses ?? [])];
  if (dnsNames.length === 0 && ipAddresses.length === 0) {
    if (isIP(commonName) !== 0) ipAddresses = [commonName];
    else dnsNames = [commonName];
  }
  checkDnsNames(dnsNames);
  checkIpAddresses(ipAddresses);
  const altNames = [...dnsNames.map((value) => ({ type: 2, value })), ...ipAddresses.map((ip) => ({ type: 7, ip }))];
  return createLeaf(ca, opts, commonName, [
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
  ]);
}

/**
 * Create and sign a client identity: CN is the client's name, the name the server routes to
 * (`/client/<name>/...`), so it must not contain `/`. keyUsage digitalSignature (critical),
 * extKeyUsage clientAuth only, basicConstraints CA:FALSE.
 */
export async function createClientIdentity(ca: Identity, opts: CommonOptions & { commonName: string }): Promise<Identity> {
  const commonName = checkCommonName(opts?.commonName, 'client name');
  if (commonName.includes('/')) {
    throw new InvalidArgumentError(`client name must not contain "/": ${JSON.stringify(commonName)}`);
  }
  return createLeaf(ca, opts, commonName, [
    { name: 'keyUsage', digitalSignature: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true },
  ]);
}
