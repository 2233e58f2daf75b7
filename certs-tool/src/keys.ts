/**
 * RSA key generation. Generating in pure JavaScript (forge.pki.rsa.generateKeyPair) takes
 * seconds for 2048 bits and minutes for 4096; Node's native crypto does it in milliseconds
 * off the main thread, so we generate natively and hand the PEM to node-forge for signing.
 */
import { generateKeyPair } from 'node:crypto';
import forge from 'node-forge';
import { InvalidArgumentError } from './errors.js';

/** @default 2048 */
export const DEFAULT_KEY_BITS = 2048;
/** Smaller RSA keys are refused by OpenSSL's default security level. */
export const MIN_KEY_BITS = 2048;
export const MAX_KEY_BITS = 16384;

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
