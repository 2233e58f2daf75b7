/**
 * The node's own identity, checked before anything listens (at start and by
 * `--check-config`): the key, certificate and CA files in the node's
 * certificate folder are readable and parse, the key is the certificate's,
 * the certificate is valid now, allows the node's usage (serverAuth for the
 * server, clientAuth for the client) and chains to the CA, and an optional
 * CRL file parses and each of its CRLs is signed by a CA of the CA file. Each problem is one `IdentityFilesError` naming the
 * folder's variable and the file, so the operator knows what to replace;
 * a file that cannot be read is the `ConfigError` a start gives.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { showSetting } from './config.js';
import { IdentityFilesError } from './errors.js';
import { allowsUsage, CLIENT_AUTH_OID, type IdentityFileNames, loadIdentity, SERVER_AUTH_OID, subjectCommonName } from './tls.js';
import { TrustError, TrustStore } from './trust-store.js';

/** What a node's identity must be. */
export interface IdentityCheck {
  /** The file names in the folder. */
  readonly files: IdentityFileNames;
  /** The setting naming the folder (`RP_SERVER_CERT_PATH`), for messages. */
  readonly variable: string;
  /** The extended key usage the node's own certificate must allow. */
  readonly usage: 'serverAuth' | 'clientAuth';
  /** A CRL file that must parse when it is in the folder (the server's `crl.pem`). */
  readonly crlFile?: string;
}

/** What the check found, for `--check-config`'s line. */
export interface CheckedIdentity {
  /** The certificate's subject CN (the client's name on the server). */
  readonly commonName: string | undefined;
  /** The subject on one line: `CN=branch-01, O=Example`. */
  readonly subject: string;
  readonly validTo: Date;
  /** True when the CRL file was there (and parsed). */
  readonly crl: boolean;
}

const USAGE_OIDS: Record<IdentityCheck['usage'], string> = { serverAuth: SERVER_AUTH_OID, clientAuth: CLIENT_AUTH_OID };
const USAGE_NAMES: Record<string, string> = { [SERVER_AUTH_OID]: 'serverAuth', [CLIENT_AUTH_OID]: 'clientAuth' };

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** `CN=foo, O=bar` from `X509Certificate`'s one-name-per-line form. */
function oneLineName(name: string): string {
  return name.split('\n').filter(Boolean).join(', ');
}

/**
 * Checks the identity in `dir` as `check` says, at `now`; throws the first
 * problem found (`IdentityFilesError`, or `ConfigError` for a file that
 * cannot be read).
 */
export function checkIdentityFiles(dir: string, check: IdentityCheck, now: Date = new Date()): CheckedIdentity {
  const { files, variable } = check;
  const fail = (message: string, cause?: unknown) => new IdentityFilesError(`${showSetting(variable, dir)}: ${message}`, { cause });
  const identity = loadIdentity(dir, files, variable);

  let key: KeyObject;
  try {
    key = createPrivateKey(identity.key);
  } catch (err) {
    const encrypted = (err as NodeJS.ErrnoException).code === 'ERR_MISSING_PASSPHRASE';
    throw fail(
      encrypted
        ? `the key ${files.key} is encrypted; the node cannot ask for a passphrase: install the key unencrypted (mode 0600)`
        : `the key ${files.key} is not a PEM private key (${(err as Error).message})`,
      err,
    );
  }
  const certificates = (file: string, pem: string | Buffer): X509Certificate[] => {
    const blocks = String(pem).match(PEM_CERTIFICATE) ?? [];
    if (blocks.length === 0) throw fail(`${file} holds no PEM certificate`);
    return blocks.map((block) => {
      try {
        return new X509Certificate(block);
      } catch (err) {
        throw fail(`${file} holds a certificate that does not parse (${(err as Error).message})`, err);
      }
    });
  };
  const [leaf, ...intermediates] = certificates(files.cert, identity.cert) as [X509Certificate, ...X509Certificate[]];
  const cas = certificates(files.ca, identity.ca);
  const leafName = `the certificate ${files.cert} (${oneLineName(leaf.subject)})`;

  if (!leaf.checkPrivateKey(key)) throw fail(`the key ${files.key} does not match ${leafName}: install the key made with this certificate`);
  for (const ca of cas) {
    if (!ca.ca) throw fail(`${files.ca} holds a certificate that is not a CA (${oneLineName(ca.subject)}): install the CA's certificate there`);
  }

  // Up from the leaf, through intermediates that follow it in its file, to a CA of the CA file.
  const signedBy = (cert: X509Certificate, candidates: readonly X509Certificate[]) => candidates.find((c) => cert.checkIssued(c) && cert.verify(c.publicKey));
  const dated: Array<[X509Certificate, string]> = [[leaf, leafName]];
  const unused = [...intermediates];
  let current = leaf;
  for (;;) {
    const anchor = signedBy(current, cas);
    if (anchor) {
      dated.push([anchor, `the CA certificate in ${files.ca} (${oneLineName(anchor.subject)})`]);
      break;
    }
    const next = signedBy(current, unused);
    if (!next) {
      throw fail(
        `${leafName} is not signed by the CA in ${files.ca} (${cas.map((c) => oneLineName(c.subject)).join('; ')}); it was issued by ${oneLineName(current.issuer)}`,
      );
    }
    unused.splice(unused.indexOf(next), 1);
    dated.push([next, `the intermediate CA certificate in ${files.cert} (${oneLineName(next.subject)})`]);
    current = next;
  }

  for (const [cert, what] of dated) {
    const from = new Date(cert.validFrom);
    const to = new Date(cert.validTo);
    if (now < from) throw fail(`${what} is not valid yet: valid from ${from.toISOString()} (is this machine's clock right?)`);
    if (now > to) throw fail(`${what} expired on ${to.toISOString()}: install a new identity with restpipe-certs set-identity`);
  }

  if (!allowsUsage(leaf, USAGE_OIDS[check.usage])) {
    const has = (leaf.keyUsage ?? []).map((oid) => USAGE_NAMES[oid] ?? oid).join(', ') || 'none';
    const node = check.usage === 'serverAuth' ? 'server' : 'client';
    throw fail(`${leafName} is not a ${node} certificate: it needs the extended key usage ${check.usage}, it has ${has}`);
  }

  let crl = false;
  if (check.crlFile !== undefined) {
    const crlPath = join(dir, check.crlFile);
    let pem: Buffer | undefined;
    try {
      pem = readFileSync(crlPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw fail(`cannot read ${crlPath} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, err);
    }
    if (pem !== undefined) {
      try {
        // As the node reads it: every CRL parses and is signed by a CA of the CA file.
        TrustStore.from(String(identity.ca), String(pem), { ca: files.ca, crl: check.crlFile });
      } catch (err) {
        if (err instanceof TrustError) throw fail(err.message, err);
        throw err;
      }
      crl = true;
    }
  }

  return { commonName: subjectCommonName(leaf.subject), subject: oneLineName(leaf.subject), validTo: new Date(leaf.validTo), crl };
}
