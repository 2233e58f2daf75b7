/**
 * Reads the X.509 v3 extensions RestPipe cares about (key usage, extended key usage, subject
 * alternative names, basic constraints) from a DER certificate.
 *
 * Node's X509Certificate does not expose the keyUsage bits, and its extended-usage accessor
 * changed across Node versions, so we walk the ASN.1 with node-forge. We do not use
 * `forge.pki.certificateFromAsn1`, which refuses certificates whose key is not RSA.
 */
import forge from 'node-forge';

/** The extensions of one certificate, in OpenSSL-like names. */
export interface CertExtensions {
  /** keyUsage bits set, e.g. `['digitalSignature', 'keyEncipherment']`. */
  keyUsage: string[];
  /** Extended key usages, e.g. `['serverAuth']`; unknown ones as dotted OIDs. */
  extKeyUsage: string[];
  /** Subject alternative names as `DNS:name`, `IP:addr`, `email:...`, `URI:...`. */
  sans: string[];
  /** basicConstraints cA flag; false when the extension is absent. */
  isCa: boolean;
}

interface ParsedExtension {
  id: string;
  name?: string;
  critical: boolean;
  altNames?: Array<{ type: number; value: string; ip?: string }>;
  cA?: boolean;
  [flag: string]: unknown;
}

// Present in node-forge but missing from @types/node-forge.
const pki = forge.pki as typeof forge.pki & {
  certificateExtensionsFromAsn1(exts: forge.asn1.Asn1): ParsedExtension[];
};

const KEY_USAGE_BITS = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
] as const;

const NOT_USAGE_KEYS = new Set(['id', 'name', 'critical', 'value']);

/** OIDs node-forge does not name. */
const EXTRA_EKU_NAMES: Record<string, string> = {
  '2.5.29.37.0': 'anyExtendedKeyUsage',
  '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
};

function sanToString(n: { type: number; value: string; ip?: string }): string {
  switch (n.type) {
    case 1:
      return `email:${n.value}`;
    case 2:
      return `DNS:${n.value}`;
    case 6:
      return `URI:${n.value}`;
    case 7:
      return `IP:${n.ip ?? '?'}`;
    default:
      return `othername(${n.type})`;
  }
}

/** Parse the extensions of a DER-encoded certificate. */
export function readExtensions(der: Uint8Array): CertExtensions {
  const out: CertExtensions = { keyUsage: [], extKeyUsage: [], sans: [], isCa: false };
  const cert = forge.asn1.fromDer(Buffer.from(der).toString('binary'));
  const tbs = (cert.value as forge.asn1.Asn1[])[0];
  if (!tbs || !Array.isArray(tbs.value)) return out;
  // Extensions are the [3] EXPLICIT element of TBSCertificate (RFC 5280 section 4.1).
  const extsTagged = tbs.value.find((v) => v.tagClass === forge.asn1.Class.CONTEXT_SPECIFIC && v.type === 3);
  if (!extsTagged) return out;
  for (const ext of pki.certificateExtensionsFromAsn1(extsTagged)) {
    switch (ext.name) {
      case 'keyUsage':
        out.keyUsage = KEY_USAGE_BITS.filter((bit) => ext[bit] === true);
        break;
      case 'extKeyUsage':
        out.extKeyUsage = Object.keys(ext)
          .filter((k) => !NOT_USAGE_KEYS.has(k) && ext[k] === true)
          .map((k) => EXTRA_EKU_NAMES[k] ?? k);
        break;
      case 'subjectAltName':
        out.sans = (ext.altNames ?? []).map(sanToString);
        break;
      case 'basicConstraints':
        out.isCa = ext.cA === true;
        break;
      default:
        break;
    }
  }
  return out;
}
