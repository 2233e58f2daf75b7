/**
 * Certificate revocation lists (RFC 5280 §5), read exactly: node:crypto
 * has no CRL parser, so this reads the DER itself (definite lengths only,
 * as DER requires) and verifies the signature with node:crypto over the
 * very bytes of `tbsCertList`, never a re-encoding. What is read: the
 * issuer (its DER, to compare with a CA's subject), thisUpdate,
 * nextUpdate, the revoked serial numbers, the signature algorithm and the
 * signature. Extensions are skipped; a CRL marked as a delta CRL or
 * holding an unknown critical extension is refused (RFC 5280 §5.2: such a
 * CRL must not be used by one that does not understand it).
 */
import { type KeyObject, type X509Certificate, verify } from 'node:crypto';

/** One CRL, as read from its DER. */
export interface Crl {
  /** The DER of the issuer Name. */
  readonly issuerDer: Buffer;
  readonly thisUpdate: Date;
  /** Absent in a CRL that promises no next update. */
  readonly nextUpdate: Date | undefined;
  /** Revoked serial numbers as normalized upper-case hex (`serialKey`). */
  readonly revoked: ReadonlySet<string>;
  /** The signed part, as it appears in the DER. */
  readonly tbs: Buffer;
  readonly signatureAlgorithm: string;
  readonly signature: Buffer;
  /** The whole DER. */
  readonly der: Buffer;
}

/** A CRL that does not parse, or whose signature is not its issuer's. */
export class CrlError extends Error {
  override readonly name = 'CrlError';
}

/** One DER element: its tag, where its content lies, and where it ends. */
interface Tlv {
  readonly tag: number;
  readonly start: number;
  readonly contentStart: number;
  readonly end: number;
}

const TAG_INTEGER = 0x02;
const TAG_BIT_STRING = 0x03;
const TAG_OID = 0x06;
const TAG_UTC_TIME = 0x17;
const TAG_GENERALIZED_TIME = 0x18;
const TAG_SEQUENCE = 0x30;
/** `[0]`, constructed: a CRL's extensions, a certificate's version. */
const TAG_CONTEXT_0 = 0xa0;
const TAG_BOOLEAN = 0x01;

function readTlv(buf: Buffer, at: number, limit: number): Tlv {
  if (at + 2 > limit) throw new CrlError('truncated DER');
  const tag = buf[at] as number;
  if ((tag & 0x1f) === 0x1f) throw new CrlError('unsupported DER tag');
  let length = buf[at + 1] as number;
  let contentStart = at + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw new CrlError('unsupported DER length');
    if (contentStart + count > limit) throw new CrlError('truncated DER');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (buf[contentStart + i] as number);
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) throw new CrlError('truncated DER');
  return { tag, start: at, contentStart, end };
}

/** The elements inside a constructed element, in order. */
function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let at = parent.contentStart;
  while (at < parent.end) {
    const tlv = readTlv(buf, at, parent.end);
    out.push(tlv);
    at = tlv.end;
  }
  return out;
}

function expect(tlv: Tlv | undefined, tag: number, what: string): Tlv {
  if (tlv?.tag !== tag) throw new CrlError(`malformed CRL: ${what}`);
  return tlv;
}

function content(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.contentStart, tlv.end);
}

/** Dotted OID text from its DER content. */
function oidText(bytes: Buffer): string {
  const values: number[] = [];
  let value = 0;
  for (const b of bytes) {
    value = value * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      values.push(value);
      value = 0;
    }
  }
  const first = values[0];
  if (first === undefined || bytes[bytes.length - 1] === undefined || (bytes[bytes.length - 1] as number) & 0x80) throw new CrlError('malformed OID');
  const top = Math.min(2, Math.floor(first / 40));
  return [top, first - top * 40, ...values.slice(1)].join('.');
}

/** A UTCTime or GeneralizedTime as RFC 5280 §4.1.2.5 allows it (UTC, `Z`, seconds). */
function readTime(buf: Buffer, tlv: Tlv): Date {
  const text = content(buf, tlv).toString('latin1');
  let m: RegExpMatchArray | null;
  let year: number;
  if (tlv.tag === TAG_UTC_TIME) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (!m) throw new CrlError(`malformed time ${JSON.stringify(text)}`);
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (!m) throw new CrlError(`malformed time ${JSON.stringify(text)}`);
    year = Number(m[1]);
  }
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

function isTime(tlv: Tlv | undefined): tlv is Tlv {
  return tlv?.tag === TAG_UTC_TIME || tlv?.tag === TAG_GENERALIZED_TIME;
}

/**
 * A serial number as one key for both sources: upper-case hex without
 * leading zeros (`X509Certificate.serialNumber` prints whole bytes, `0A`;
 * a DER INTEGER may carry a `00` sign byte).
 */
export function serialKey(hex: string): string {
  return hex.toUpperCase().replace(/^0+(?=.)/, '');
}

/** Extensions RestPipe understands in a CRL or an entry; any other critical one refuses the CRL. */
const KNOWN_CRL_EXTENSIONS = new Set([
  '2.5.29.20', // cRLNumber
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.18', // issuerAltName
  '2.5.29.21', // reasonCode (entry)
  '2.5.29.24', // invalidityDate (entry)
]);
const DELTA_CRL_INDICATOR = '2.5.29.27';
const ISSUING_DISTRIBUTION_POINT = '2.5.29.28';

/** Throws on a critical extension this reader does not honour. */
function checkExtensions(buf: Buffer, list: Tlv): void {
  for (const ext of children(buf, expect(list, TAG_SEQUENCE, 'extensions'))) {
    const [id, maybeCritical] = children(buf, expect(ext, TAG_SEQUENCE, 'extension'));
    const oid = oidText(content(buf, expect(id, TAG_OID, 'extension id')));
    if (oid === DELTA_CRL_INDICATOR) throw new CrlError('a delta CRL is not supported; give the full CRL');
    const critical = maybeCritical?.tag === TAG_BOOLEAN && content(buf, maybeCritical)[0] !== 0;
    // An issuing distribution point narrows the CRL's scope (only some certificates): a node must not read it as complete.
    if (oid === ISSUING_DISTRIBUTION_POINT || (critical && !KNOWN_CRL_EXTENSIONS.has(oid))) {
      throw new CrlError(`the CRL has a critical extension RestPipe does not support (${oid})`);
    }
  }
}

/** Reads one CRL from its DER. */
export function parseCrl(der: Buffer): Crl {
  const top = readTlv(der, 0, der.length);
  if (top.tag !== TAG_SEQUENCE || top.end !== der.length) throw new CrlError('not a DER CRL');
  const [tbsTlv, algTlv, sigTlv] = children(der, top);
  const tbsSeq = expect(tbsTlv, TAG_SEQUENCE, 'tbsCertList');
  const tbsParts = children(der, tbsSeq);
  let i = 0;
  if (tbsParts[i]?.tag === TAG_INTEGER) i++; // version v2
  expect(tbsParts[i++], TAG_SEQUENCE, 'signature algorithm');
  const issuer = expect(tbsParts[i++], TAG_SEQUENCE, 'issuer');
  const thisUpdateTlv = tbsParts[i++];
  if (!isTime(thisUpdateTlv)) throw new CrlError('malformed CRL: thisUpdate');
  const thisUpdate = readTime(der, thisUpdateTlv);
  let nextUpdate: Date | undefined;
  const maybeNext = tbsParts[i];
  if (isTime(maybeNext)) {
    nextUpdate = readTime(der, maybeNext);
    i++;
  }
  const revoked = new Set<string>();
  if (tbsParts[i]?.tag === TAG_SEQUENCE) {
    for (const entry of children(der, tbsParts[i++] as Tlv)) {
      const [serial, date, entryExtensions] = children(der, expect(entry, TAG_SEQUENCE, 'revoked entry'));
      revoked.add(serialKey(content(der, expect(serial, TAG_INTEGER, 'revoked serial')).toString('hex')));
      if (!isTime(date)) throw new CrlError('malformed CRL: revocationDate');
      if (entryExtensions) checkExtensions(der, entryExtensions);
    }
  }
  if (tbsParts[i]?.tag === TAG_CONTEXT_0) {
    const wrapper = tbsParts[i++] as Tlv;
    const [list] = children(der, wrapper);
    if (list) checkExtensions(der, list);
  }
  if (i !== tbsParts.length) throw new CrlError('malformed CRL: unexpected field in tbsCertList');
  const [algOid] = children(der, expect(algTlv, TAG_SEQUENCE, 'signatureAlgorithm'));
  const signatureAlgorithm = oidText(content(der, expect(algOid, TAG_OID, 'signatureAlgorithm')));
  const bits = content(der, expect(sigTlv, TAG_BIT_STRING, 'signatureValue'));
  if (bits.length < 1 || bits[0] !== 0) throw new CrlError('malformed CRL: signatureValue');
  return {
    issuerDer: der.subarray(issuer.start, issuer.end),
    thisUpdate,
    nextUpdate,
    revoked,
    tbs: der.subarray(tbsSeq.start, tbsSeq.end),
    signatureAlgorithm,
    signature: bits.subarray(1),
    der,
  };
}

/** The digest node:crypto's `verify` takes for a signature algorithm OID, `null` for Ed25519/Ed448. */
const SIGNATURE_DIGESTS: Readonly<Record<string, string | null>> = {
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.3.101.112': null, // Ed25519
  '1.3.101.113': null, // Ed448
};

/** True when `issuer`'s key signed the CRL (the algorithm must be one of `SIGNATURE_DIGESTS`). */
export function crlSignedBy(crl: Crl, issuerKey: KeyObject): boolean {
  const digest = SIGNATURE_DIGESTS[crl.signatureAlgorithm];
  if (digest === undefined)
    throw new CrlError(`the CRL's signature algorithm ${crl.signatureAlgorithm} is not supported (RSA or ECDSA with SHA-256/384/512, Ed25519, Ed448)`);
  try {
    return verify(digest, crl.tbs, issuerKey, crl.signature);
  } catch {
    return false; // a key of another type than the signature's
  }
}

/** The DER of a certificate's subject Name, to compare with a CRL's issuer. */
export function subjectDer(cert: X509Certificate): Buffer {
  const der = cert.raw;
  const top = readTlv(der, 0, der.length);
  const [tbs] = children(der, top);
  const parts = children(der, expect(tbs, TAG_SEQUENCE, 'tbsCertificate'));
  // [0] version? serialNumber, signature, issuer, validity, subject
  const first = parts[0]?.tag === TAG_CONTEXT_0 ? 1 : 0;
  const subject = expect(parts[first + 4], TAG_SEQUENCE, 'subject');
  return der.subarray(subject.start, subject.end);
}

const PEM_CRL = /-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/g;

/** Every CRL in a PEM text, as DER; any other PEM block or text around them is ignored. */
export function crlPemBlocks(text: string): Buffer[] {
  return [...text.matchAll(PEM_CRL)].map((m) => Buffer.from((m[1] ?? '').replace(/\s+/g, ''), 'base64'));
}

/** Short names of the attributes a distinguished name usually holds. */
const NAME_ATTRIBUTES: Readonly<Record<string, string>> = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
};

/** A Name's DER as text for messages (`CN=RestPipe CA, O=Example`); never throws. */
export function nameText(der: Buffer): string {
  try {
    const parts: string[] = [];
    for (const rdn of children(der, readTlv(der, 0, der.length))) {
      for (const attr of children(der, rdn)) {
        const [type, value] = children(der, attr);
        if (!type || !value) continue;
        const oid = oidText(content(der, type));
        const bytes = content(der, value);
        // BMPString is UTF-16BE; the other string types are UTF-8 or a subset of it.
        const text = value.tag === 0x1e ? Buffer.from(bytes).swap16().toString('utf16le') : bytes.toString('utf8');
        parts.push(`${NAME_ATTRIBUTES[oid] ?? oid}=${text}`);
      }
    }
    return parts.join(', ') || '(empty name)';
  } catch {
    return '(unreadable name)';
  }
}
