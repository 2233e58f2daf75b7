/**
 * PEM parsing with errors that say which input was wrong. Certificates and keys are parsed
 * with Node's native crypto so identities from other tools (EC keys, PKCS#1 or PKCS#8,
 * a corporate CA) validate too; only signing needs node-forge.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { EncryptedKeyError, NotPemError } from './errors.js';

/** One `-----BEGIN X-----` ... `-----END X-----` block. */
export interface PemBlock {
  type: string;
  text: string;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** All PEM blocks in `text`, in order. */
export function pemBlocks(text: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    blocks.push({ type: m[1] ?? '', text: `${m[0]}\n` });
  }
  return blocks;
}

function found(blocks: PemBlock[]): string {
  if (blocks.length === 0) return 'no PEM data found';
  return `found ${[...new Set(blocks.map((b) => b.type))].join(', ')}`;
}

/**
 * Every certificate in a PEM text (a single certificate, a chain, or a CA bundle).
 * @param label names the input in error messages, e.g. a file path.
 */
export function parseCertificates(pem: string, label: string): X509Certificate[] {
  const blocks = pemBlocks(pem);
  const certBlocks = blocks.filter((b) => b.type === 'CERTIFICATE');
  if (certBlocks.length === 0) {
    throw new NotPemError(`${label} is not a PEM certificate (${found(blocks)})`);
  }
  return certBlocks.map((b) => {
    try {
      return new X509Certificate(b.text);
    } catch (cause) {
      throw new NotPemError(`${label} contains a malformed PEM certificate`, { cause });
    }
  });
}

/** The first certificate in a PEM text. */
export function parseCertificate(pem: string, label: string): X509Certificate {
  // parseCertificates throws when there is none, so [0] is always defined here.
  return parseCertificates(pem, label)[0] as X509Certificate;
}

const KEY_TYPES = new Set(['PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY']);

/**
 * The private key in a PEM text. Passphrase-protected keys are refused: a node reads its key
 * unattended at start-up.
 */
export function parsePrivateKey(pem: string, label: string): KeyObject {
  const blocks = pemBlocks(pem);
  if (blocks.some((b) => b.type === 'ENCRYPTED PRIVATE KEY' || /Proc-Type:\s*4,ENCRYPTED/.test(b.text))) {
    throw new EncryptedKeyError(`${label} is passphrase-protected; decrypt it first (openssl pkey -in KEY -out KEY.plain)`);
  }
  const keyBlock = blocks.find((b) => KEY_TYPES.has(b.type));
  if (!keyBlock) {
    throw new NotPemError(`${label} is not a PEM private key (${found(blocks)})`);
  }
  try {
    return createPrivateKey(keyBlock.text);
  } catch (cause) {
    throw new NotPemError(`${label} contains a malformed PEM private key`, { cause });
  }
}
