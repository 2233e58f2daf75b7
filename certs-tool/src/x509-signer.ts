/**
 * Certificates and CRLs signed with @peculiar/x509 over Node's WebCrypto. node-forge signs
 * RSA only and cannot build CRLs; @peculiar/x509 does both, for RSA and EC keys, so it signs
 * every certificate that involves an EC key (EC identities, EC CAs) and every CRL. RSA
 * identities of an RSA CA keep node-forge (identities.ts).
 */
// tsyringe (used inside @peculiar/x509) needs the Reflect metadata API; load it first.
import 'reflect-metadata';
import { createPublicKey, webcrypto } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { InvalidArgumentError } from './errors.js';

// @peculiar/x509 uses globalThis.crypto by default; give it Node's explicitly (Node 20 has both).
const crypto: webcrypto.Crypto = webcrypto;
x509.cryptoProvider.set(crypto);

export { x509, crypto as webCrypto };

/** The key usage bits RestPipe certificates use. */
export type KeyUsageName = 'digitalSignature' | 'keyEncipherment' | 'keyCertSign' | 'cRLSign';

/** What a certificate says, independent of the library that signs it. */
export interface CertSpec {
  commonName: string;
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
  /** basicConstraints CA:TRUE, pathlen 0 (critical); else CA:FALSE (critical). */
  ca: boolean;
  /** keyUsage bits (critical). */
  keyUsage: KeyUsageName[];
  /** extendedKeyUsage; empty for a CA (no extension). */
  extKeyUsage: Array<'serverAuth' | 'clientAuth'>;
  /** subjectAltName entries; no extension when both are empty. */
  dnsNames: string[];
  ipAddresses: string[];
}

/** A WebCrypto signing key with the algorithm to sign with: SHA-256 (SHA-384 for P-384). */
export interface WebSigningKey {
  key: webcrypto.CryptoKey;
  algorithm: webcrypto.Algorithm | webcrypto.EcdsaParams | webcrypto.RsaHashedImportParams;
}

/**
 * The WebCrypto import and signing parameters of an RSA or EC (P-256, P-384) key. Throws
 * InvalidArgumentError for any other kind of key.
 */
function algorithmsFor(
  key: KeyObject,
  what: string,
): { importAlg: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams; signAlg: webcrypto.Algorithm | webcrypto.EcdsaParams } {
  if (key.asymmetricKeyType === 'rsa') {
    const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    return { importAlg: alg, signAlg: alg };
  }
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1')
      return { importAlg: { name: 'ECDSA', namedCurve: 'P-256' }, signAlg: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams };
    if (curve === 'secp384r1')
      return { importAlg: { name: 'ECDSA', namedCurve: 'P-384' }, signAlg: { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams };
    throw new InvalidArgumentError(`${what} is an EC key on ${curve ?? 'an unknown curve'}; the tool signs with P-256 or P-384 keys only`);
  }
  throw new InvalidArgumentError(`${what} is a ${key.asymmetricKeyType ?? 'unknown'} key; the tool signs with RSA or EC keys only`);
}

/** A private KeyObject as a WebCrypto signing key. */
export async function webSigningKey(privateKey: KeyObject, what: string): Promise<WebSigningKey> {
  const { importAlg, signAlg } = algorithmsFor(privateKey, what);
  const der = privateKey.export({ type: 'pkcs8', format: 'der' });
  const key = await crypto.subtle.importKey('pkcs8', der, importAlg, false, ['sign']);
  return { key, algorithm: signAlg };
}

/** A public key (or the public half of a private key) as a WebCrypto key. */
async function webPublicKey(key: KeyObject, what: string): Promise<webcrypto.CryptoKey> {
  const { importAlg } = algorithmsFor(key, what);
  const der = createPublicKey(key).export({ type: 'spki', format: 'der' });
  return crypto.subtle.importKey('spki', der, importAlg, true, ['verify']);
}

/** A subject or issuer name: one CN, as a UTF8String like node-forge writes it. */
function cnName(commonName: string): x509.Name {
  return new x509.Name([{ '2.5.4.3': [{ utf8String: commonName }] }]);
}

const KEY_USAGE_FLAGS: Record<KeyUsageName, x509.KeyUsageFlags> = {
  digitalSignature: x509.KeyUsageFlags.digitalSignature,
  keyEncipherment: x509.KeyUsageFlags.keyEncipherment,
  keyCertSign: x509.KeyUsageFlags.keyCertSign,
  cRLSign: x509.KeyUsageFlags.cRLSign,
};

/** The issuer of a certificate to sign: a CA certificate and its key, or none (self-signed). */
export interface X509Issuer {
  certPem: string;
  key: KeyObject;
}

/**
 * Sign `spec` for `subjectKey` with @peculiar/x509: by `issuer`, or self-signed by
 * `subjectKey` when there is no issuer. Extensions in the same order and criticality as the
 * node-forge path: basicConstraints, keyUsage, extKeyUsage, subjectAltName,
 * subjectKeyIdentifier, authorityKeyIdentifier (leaves).
 * @returns the certificate as PEM.
 */
export async function signWithX509(spec: CertSpec, subjectKey: KeyObject, issuer: X509Issuer | undefined): Promise<string> {
  const publicKey = await webPublicKey(subjectKey, 'the new key');
  const signer = await webSigningKey(issuer?.key ?? subjectKey, issuer ? 'the CA key' : 'the new key');
  const extensions: x509.Extension[] = [
    spec.ca ? new x509.BasicConstraintsExtension(true, 0, true) : new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      spec.keyUsage.reduce((flags, u) => flags | KEY_USAGE_FLAGS[u], 0),
      true,
    ),
  ];
  if (spec.extKeyUsage.length > 0) {
    extensions.push(new x509.ExtendedKeyUsageExtension(spec.extKeyUsage.map((u) => x509.ExtendedKeyUsage[u])));
  }
  if (spec.dnsNames.length > 0 || spec.ipAddresses.length > 0) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension([
        ...spec.dnsNames.map((value) => ({ type: 'dns' as const, value })),
        ...spec.ipAddresses.map((value) => ({ type: 'ip' as const, value })),
      ]),
    );
  }
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(publicKey, false, crypto));
  let issuerName: x509.Name = cnName(spec.commonName);
  if (issuer) {
    const caCert = new x509.X509Certificate(issuer.certPem);
    issuerName = caCert.subjectName;
    extensions.push(new x509.AuthorityKeyIdentifierExtension(await keyIdentifierOf(caCert), false));
  }
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: spec.serialHex,
      subject: cnName(spec.commonName),
      issuer: issuerName,
      notBefore: spec.notBefore,
      notAfter: spec.notAfter,
      publicKey,
      signingKey: signer.key,
      signingAlgorithm: signer.algorithm,
      extensions,
    },
    crypto,
  );
  // End with a newline like node-forge's PEM, so certificate files concatenate into bundles.
  return `${cert.toString('pem').trimEnd()}\n`;
}

/**
 * The key identifier of a CA certificate, hex: its subjectKeyIdentifier, or (a CA from a tool
 * that wrote none) the SHA-1 of its public key, RFC 5280 section 4.2.1.2 method 1.
 */
export async function keyIdentifierOf(caCert: x509.X509Certificate): Promise<string> {
  const ski = caCert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski) return ski.keyId;
  return (await x509.SubjectKeyIdentifierExtension.create(caCert.publicKey, false, crypto)).keyId;
}
