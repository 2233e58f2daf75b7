/**
 * Key generation. Generating in pure JavaScript (forge.pki.rsa.generateKeyPair) takes
 * seconds for 2048 bits and minutes for 4096; Node's native crypto does it in milliseconds
 * off the main thread, so we generate natively and hand the PEM to node-forge (RSA) or
 * @peculiar/x509 (EC) for signing.
 */
import { createPrivateKey, generateKeyPair } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { InvalidArgumentError } from './errors.js';

/** @default 2048 */
export const DEFAULT_KEY_BITS = 2048;
/** Smaller RSA keys are refused by OpenSSL's default security level. */
export const MIN_KEY_BITS = 2048;
export const MAX_KEY_BITS = 16384;

/** The kinds of key the tool generates: RSA (the default) or EC on the P-256 curve. */
export const KEY_TYPES = ['rsa', 'ec'] as const;
export type KeyType = (typeof KEY_TYPES)[number];
/** @default 'rsa' */
export const DEFAULT_KEY_TYPE: KeyType = 'rsa';
/** The curve of generated EC keys (OpenSSL's prime256v1). */
export const EC_CURVE = 'P-256';

/** Throws InvalidArgumentError unless `keyType` is one of {@link KEY_TYPES}. */
export function checkKeyType(keyType: unknown): KeyType {
  if (!KEY_TYPES.includes(keyType as KeyType)) {
    throw new InvalidArgumentError(`key type must be ${KEY_TYPES.join(' or ')}, got ${JSON.stringify(keyType)}`);
  }
  return keyType as KeyType;
}

/** A fresh key pair: the PKCS#8 PEM written to disk and the forge objects used for signing. */
export interface GeneratedKey {
  privateKeyPem: string;
  privateKey: forge.pki.rsa.PrivateKey;
  publicKey: forge.pki.rsa.PublicKey;
}

/** Throws InvalidArgumentError unless `bits` is a supported RSA modulus length. */
export function checkKeyBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < MIN_KEY_BITS || bits > MAX_KEY_BITS || bits % 8 !== 0) {
    throw new InvalidArgumentError(`key size must be a multiple of 8 between ${MIN_KEY_BITS} and ${MAX_KEY_BITS} bits, got ${String(bits)}`);
  }
}

/** Generate an RSA key pair with native crypto (async, off the event loop). */
export async function generateRsaKey(bits: number = DEFAULT_KEY_BITS): Promise<GeneratedKey> {
  checkKeyBits(bits);
  const privateKeyPem = await new Promise<string>((resolve, reject) => {
    generateKeyPair(
      'rsa',
      {
        modulusLength: bits,
        publicExponent: 0x10001,
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      },
      (err, _publicKey, privateKey) => (err ? reject(err) : resolve(privateKey)),
    );
  });
  const privateKey = forge.pki.privateKeyFromPem(privateKeyPem);
  const publicKey = forge.pki.setRsaPublicKey(privateKey.n, privateKey.e);
  return { privateKeyPem, privateKey, publicKey };
}

/** A fresh private key of either type, as PKCS#8 PEM and as a KeyObject. */
export interface NewKey {
  privateKeyPem: string;
  privateKey: KeyObject;
}

/**
 * Generate a key of `keyType` with native crypto: RSA of `bits` (checked), or EC P-256
 * (`bits` must then be undefined: an EC key's size is its curve's).
 */
export async function generateKey(keyType: KeyType, bits?: number): Promise<NewKey> {
  if (keyType === 'rsa') {
    const { privateKeyPem } = await generateRsaKey(bits ?? DEFAULT_KEY_BITS);
    return { privateKeyPem, privateKey: createPrivateKey(privateKeyPem) };
  }
  checkKeyBitsFor(keyType, bits);
  const privateKeyPem = await new Promise<string>((resolve, reject) => {
    generateKeyPair(
      'ec',
      { namedCurve: EC_CURVE, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } },
      (err, _publicKey, privateKey) => (err ? reject(err) : resolve(privateKey)),
    );
  });
  return { privateKeyPem, privateKey: createPrivateKey(privateKeyPem) };
}

/** Throws InvalidArgumentError when `bits` does not fit `keyType` (EC keys take no size). */
export function checkKeyBitsFor(keyType: KeyType, bits: number | undefined): void {
  if (keyType === 'rsa') checkKeyBits(bits ?? DEFAULT_KEY_BITS);
  else if (bits !== undefined) throw new InvalidArgumentError(`a key size (${bits} bits) applies to RSA keys only; EC keys are ${EC_CURVE}`);
}
