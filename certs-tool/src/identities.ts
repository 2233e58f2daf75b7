/**
 * Creating the pipe's identities: a CA, server identities and client identities (SHA-256
 * signatures). Key usages follow RFC 5280 and what OpenSSL checks for TLS: the CA signs
 * certificates and CRLs only; a server certificate is for serverAuth and carries the names
 * clients dial in its subjectAltName; a client certificate is for clientAuth and its CN is
 * the name the server routes to.
 *
 * RSA keys signed by an RSA CA (the default) are signed with node-forge; anything with an EC
 * key (`keyType: 'ec'`, or an EC CA) with @peculiar/x509 (x509-signer.ts), since node-forge
 * handles RSA only. Both write the same profile from one {@link CertSpec}.
 */
import { createPublicKey, randomBytes } from 'node:crypto';
import type { KeyObject, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { ExpiredError, InvalidArgumentError, KeyMismatchError, NotCaError, WrongUsageError } from './errors.js';
import { readExtensions } from './extensions.js';
import { DEFAULT_KEY_BITS, DEFAULT_KEY_TYPE, MAX_KEY_BITS, MIN_KEY_BITS, checkKeyBitsFor, checkKeyType, generateKey } from './keys.js';
import type { KeyType } from './keys.js';
import { parseCertificate, parsePrivateKey } from './pem.js';
import type { Role } from './validate.js';
import { oneLineName } from './validate.js';
import { signWithX509 } from './x509-signer.js';
import type { CertSpec, KeyUsageName } from './x509-signer.js';

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
  /** RSA modulus length; not for EC keys. @default 2048 */
  keyBits?: number;
  /** `'rsa'`, or `'ec'` for a P-256 key (a full TLS handshake costs the server less CPU). @default 'rsa' */
  keyType?: KeyType;
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

/** The key options, checked before anything slow: type, and a size only for RSA. */
function resolveKeyOptions(opts: CommonOptions): { keyType: KeyType; keyBits: number | undefined } {
  const keyType = checkKeyType(opts.keyType ?? DEFAULT_KEY_TYPE);
  checkKeyBitsFor(keyType, opts.keyBits);
  return { keyType, keyBits: keyType === 'rsa' ? (opts.keyBits ?? DEFAULT_KEY_BITS) : undefined };
}

/** A forge RSA private key from a KeyObject (forge reads PKCS#8 PEM). */
function forgePrivateKey(key: KeyObject): forge.pki.rsa.PrivateKey {
  return forge.pki.privateKeyFromPem(key.export({ type: 'pkcs8', format: 'pem' }).toString());
}

function forgePublicKey(key: KeyObject): forge.pki.rsa.PublicKey {
  return forge.pki.publicKeyFromPem(createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString()) as forge.pki.rsa.PublicKey;
}

/** The parts of a CA identity needed to sign with it. */
interface Signer {
  certPem: string;
  key: KeyObject;
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
  if (nativeKey.asymmetricKeyType !== 'rsa' && nativeKey.asymmetricKeyType !== 'ec') {
    throw new InvalidArgumentError(`signing needs an RSA or EC CA key; this CA key is ${nativeKey.asymmetricKeyType ?? 'unknown'}`);
  }
  // Sign below the first certificate only: that is the CA certificate the key belongs to.
  return { certPem: native.toString(), key: nativeKey, notAfter: new Date(native.validTo) };
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

/** Sign `spec` for an RSA `subjectKey` with node-forge, by an RSA `issuer` or self-signed. */
function signWithForge(spec: CertSpec, subjectKey: KeyObject, issuer: Signer | undefined): string {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forgePublicKey(subjectKey);
  cert.serialNumber = spec.serialHex;
  cert.validity.notBefore = spec.notBefore;
  cert.validity.notAfter = spec.notAfter;
  cert.setSubject([cnAttribute(spec.commonName)]);
  const keyUsage: Record<string, unknown> = { name: 'keyUsage', critical: true };
  for (const u of spec.keyUsage) keyUsage[u] = true;
  const extensions: object[] = [
    spec.ca ? { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true } : { name: 'basicConstraints', cA: false, critical: true },
    keyUsage,
  ];
  if (spec.extKeyUsage.length > 0) {
    extensions.push({ name: 'extKeyUsage', ...Object.fromEntries(spec.extKeyUsage.map((u) => [u, true])) });
  }
  if (spec.dnsNames.length > 0 || spec.ipAddresses.length > 0) {
    const altNames = [...spec.dnsNames.map((value) => ({ type: 2, value })), ...spec.ipAddresses.map((ip) => ({ type: 7, ip }))];
    extensions.push({ name: 'subjectAltName', altNames });
  }
  extensions.push({ name: 'subjectKeyIdentifier' });
  let signingKey = forgePrivateKey(subjectKey);
  if (issuer) {
    const caCert = forge.pki.certificateFromPem(issuer.certPem);
    const skiExt = caCert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
    const keyIdentifier = skiExt?.subjectKeyIdentifier ? forge.util.hexToBytes(skiExt.subjectKeyIdentifier) : caCert.generateSubjectKeyIdentifier().getBytes();
    extensions.push({ name: 'authorityKeyIdentifier', keyIdentifier });
    cert.setIssuer(issuerAttributes(caCert));
    signingKey = forgePrivateKey(issuer.key);
  } else {
    cert.setIssuer([cnAttribute(spec.commonName)]);
  }
  cert.setExtensions(extensions);
  cert.sign(signingKey, forge.md.sha256.create());
  return forge.pki.certificateToPem(cert);
}

/** Sign with node-forge when every key involved is RSA, else with @peculiar/x509. */
async function sign(spec: CertSpec, subjectKey: KeyObject, issuer: Signer | undefined): Promise<string> {
  const allRsa = subjectKey.asymmetricKeyType === 'rsa' && (issuer === undefined || issuer.key.asymmetricKeyType === 'rsa');
  return allRsa ? signWithForge(spec, subjectKey, issuer) : signWithX509(spec, subjectKey, issuer);
}

/**
 * Create a self-signed CA: basicConstraints CA:TRUE (critical, pathlen 0: it signs leaf
 * identities only), keyUsage keyCertSign + cRLSign (critical), subjectKeyIdentifier.
 */
export async function createCa(opts: CommonOptions & { commonName?: string } = {}): Promise<Identity> {
  const commonName = checkCommonName(opts.commonName ?? DEFAULT_CA_NAME, 'CA common name');
  const validity = resolveValidity(opts, DEFAULT_CA_DAYS);
  const { keyType, keyBits } = resolveKeyOptions(opts);
  const key = await generateKey(keyType, keyBits);
  const spec: CertSpec = {
    commonName,
    serialHex: randomSerialHex(),
    ...validity,
    ca: true,
    keyUsage: ['keyCertSign', 'cRLSign'],
    extKeyUsage: [],
    dnsNames: [],
    ipAddresses: [],
  };
  return { keyPem: key.privateKeyPem, certPem: await sign(spec, key.privateKey, undefined) };
}

/** The keyUsage of a leaf: keyEncipherment only for an RSA server key (RSA key transport); EC keys sign only. */
function leafKeyUsage(role: Role, keyType: KeyType): KeyUsageName[] {
  return role === 'server' && keyType === 'rsa' ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature'];
}

async function createLeaf(
  ca: Identity,
  opts: CommonOptions,
  role: Role,
  commonName: string,
  names: { dnsNames: string[]; ipAddresses: string[] },
): Promise<Identity> {
  // Check the options before the CA, so a typo is reported as such.
  const { keyType, keyBits } = resolveKeyOptions(opts);
  const validity = resolveValidity(opts, DEFAULT_LEAF_DAYS);
  const signer = loadSigner(ca);
  if (validity.notBefore.getTime() >= signer.notAfter.getTime()) {
    throw new ExpiredError(`the CA expired on ${signer.notAfter.toISOString()}; create a new CA`);
  }
  if (validity.notAfter.getTime() > signer.notAfter.getTime()) {
    validity.notAfter = signer.notAfter;
  }
  const key = await generateKey(keyType, keyBits);
  const spec: CertSpec = {
    commonName,
    serialHex: randomSerialHex(),
    ...validity,
    ca: false,
    keyUsage: leafKeyUsage(role, keyType),
    extKeyUsage: [role === 'server' ? 'serverAuth' : 'clientAuth'],
    ...names,
  };
  return { keyPem: key.privateKeyPem, certPem: await sign(spec, key.privateKey, signer) };
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
 * Create and sign a server identity: keyUsage digitalSignature + keyEncipherment (critical;
 * digitalSignature only for an EC key), extKeyUsage serverAuth, basicConstraints CA:FALSE,
 * subjectKeyIdentifier, authorityKeyIdentifier, and a subjectAltName with every DNS name and
 * IP address clients may dial (RP_CLIENT_TARGET_HOSTNAME must be one of them).
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
  return createLeaf(ca, opts, 'server', commonName, { dnsNames, ipAddresses });
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
  return createLeaf(ca, opts, 'client', commonName, { dnsNames: [], ipAddresses: [] });
}

/** What {@link renewIdentity} read from the old certificate and made. */
export interface RenewedIdentity extends Identity {
  role: Role;
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  keyType: KeyType;
}

/** The key type and RSA size of a certificate's key, for a renewal that keeps them. */
function keyOf(cert: X509Certificate): { keyType: KeyType; keyBits: number | undefined } {
  const key = cert.publicKey;
  if (key.asymmetricKeyType === 'ec') return { keyType: 'ec', keyBits: undefined };
  const bits = key.asymmetricKeyDetails?.modulusLength;
  const keepBits = key.asymmetricKeyType === 'rsa' && bits !== undefined && bits >= MIN_KEY_BITS && bits <= MAX_KEY_BITS && bits % 8 === 0;
  return { keyType: 'rsa', keyBits: keepBits ? bits : undefined };
}

/**
 * Renew an identity from its certificate: the same CN, subject alternative names and role
 * (serverAuth or clientAuth), with a new key, a new serial and a new validity, signed by
 * `ca`. The key keeps the old one's type (and RSA size) unless `keyType`/`keyBits` say
 * otherwise. `ca` may be another CA than the old certificate's: that re-issues the identity
 * under a new CA (CA rotation). The old certificate stays valid until it expires or is
 * revoked.
 *
 * @throws WrongUsageError unless the certificate is for exactly one of serverAuth and clientAuth
 * @throws InvalidArgumentError for a CA certificate, or a subject or SAN the tool does not make
 */
export async function renewIdentity(ca: Identity, certPem: string, opts: CommonOptions = {}): Promise<RenewedIdentity> {
  const old = parseCertificate(certPem, 'the certificate to renew');
  const label = `the certificate to renew (${oneLineName(old.subject)})`;
  const ext = readExtensions(old.raw);
  if (old.ca || ext.isCa) {
    throw new InvalidArgumentError(`${label} is a CA certificate; renew identities only (rotate a CA with create-ca, see docs/identities.md)`);
  }
  const server = ext.extKeyUsage.includes('serverAuth');
  const client = ext.extKeyUsage.includes('clientAuth');
  if (server === client) {
    throw new WrongUsageError(
      `${label} has extended key usage ${ext.extKeyUsage.join(', ') || 'none'}; it must be serverAuth or clientAuth, not both or neither`,
    );
  }
  const role: Role = server ? 'server' : 'client';
  const subject = old.subject.split('\n').filter(Boolean);
  const cn = subject.length === 1 && subject[0]?.startsWith('CN=') ? subject[0].slice(3) : undefined;
  if (cn === undefined) {
    throw new InvalidArgumentError(`${label}: the tool renews certificates whose subject is one CN only`);
  }
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  for (const san of ext.sans) {
    if (san.startsWith('DNS:')) dnsNames.push(san.slice(4));
    else if (san.startsWith('IP:')) ipAddresses.push(san.slice(3));
    else throw new InvalidArgumentError(`${label} has a subject alternative name the tool does not make: ${san}`);
  }
  if (role === 'client' && (dnsNames.length > 0 || ipAddresses.length > 0)) {
    throw new InvalidArgumentError(`${label} is a client certificate with subject alternative names; the tool does not make those`);
  }
  const kept = keyOf(old);
  const keyType = opts.keyType ?? kept.keyType;
  const keyBits = opts.keyBits ?? (keyType === kept.keyType ? kept.keyBits : undefined);
  const leafOpts: CommonOptions = { ...opts, keyType, keyBits };
  const id =
    role === 'server'
      ? await createServerIdentity(ca, { ...leafOpts, commonName: cn, dnsNames, ipAddresses })
      : await createClientIdentity(ca, { ...leafOpts, commonName: cn });
  return { ...id, role, commonName: cn, dnsNames, ipAddresses, keyType };
}
