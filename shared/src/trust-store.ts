/**
 * What a node trusts: the CA bundle (`ca.crt.pem`, one CA or several
 * during a rotation) and the revocation lists of those CAs (`crl.pem`,
 * optional). Every CRL must be signed by a CA of the bundle, or the store
 * is not made. `check()` decides on a peer certificate by itself, without
 * OpenSSL: it chains to a CA of the bundle (signatures verified, through
 * intermediates the peer sent or earlier peers sent), is within its
 * validity, and is not on its CA's list. The nodes run it on every
 * accepted connection, because OpenSSL verifies nothing when a TLS
 * session is resumed, and on every live connection when the identity
 * reloads.
 */
import { X509Certificate } from 'node:crypto';
import { type Crl, CrlError, crlPemBlocks, crlSignedBy, nameText, parseCrl, serialKey, subjectDer } from './crl.js';

/** Why a certificate is not trusted; the codes are OpenSSL's where it has one. */
export interface TrustProblem {
  readonly code: 'CERT_REVOKED' | 'CERT_UNTRUSTED' | 'CERT_HAS_EXPIRED' | 'CERT_NOT_YET_VALID';
  /** What is wrong, e.g. `its certificate is revoked (serial 0A1B…, CRL of CN=RestPipe CA)`. */
  readonly message: string;
}

export interface TrustCheckOptions {
  /** CA certificates that may stand between the certificate and a CA of the bundle. */
  intermediates?: Iterable<X509Certificate>;
  /** Check validity periods (false: only the chain and revocation). @default true */
  checkTime?: boolean;
  /** @default Date.now() */
  now?: number;
}

/** A CA of the bundle and what its CRLs say. */
export interface TrustedCa {
  readonly cert: X509Certificate;
  readonly notAfter: Date;
  /** Revoked serials (`serialKey`), from the CA's newest CRL. */
  readonly revoked: ReadonlySet<string>;
  /** The newest CRL of this CA (by thisUpdate), if the file holds one: the one that counts, as for OpenSSL. */
  readonly crl: Crl | undefined;
}

/** A bundle or CRL that cannot be used; the message says which and why. */
export class TrustError extends Error {
  override readonly name = 'TrustError';
}

/** How deep a chain may be below a CA of the bundle. */
const MAX_INTERMEDIATES = 4;

const dates = new WeakMap<X509Certificate, { from: number; to: number }>();

/** The validity period in ms (parsed once per certificate). */
export function validity(cert: X509Certificate): { from: number; to: number } {
  let v = dates.get(cert);
  if (!v) {
    v = { from: Date.parse(cert.validFrom), to: Date.parse(cert.validTo) };
    dates.set(cert, v);
  }
  return v;
}

function crlPem(der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN X509 CRL-----\n${lines.join('\n')}\n-----END X509 CRL-----\n`;
}

function subjectLine(cert: X509Certificate): string {
  return cert.subject.replace(/\n/g, ', ');
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Every certificate of a PEM bundle. */
export function parseCertificates(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new TrustError(`${what} holds no PEM certificate`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new TrustError(`${what}: certificate ${i + 1} does not parse (${(err as Error).message})`);
    }
  });
}

export class TrustStore {
  readonly cas: readonly TrustedCa[];
  private readonly caCerts: readonly X509Certificate[];

  private constructor(cas: TrustedCa[]) {
    this.cas = cas;
    this.caCerts = cas.map((c) => c.cert);
  }

  /**
   * The store of a CA bundle and an optional CRL file (PEM; several CRLs
   * allowed, e.g. one per CA during a rotation). Throws `TrustError` when
   * the bundle holds no certificate, or a CRL does not parse or is not
   * signed by a CA of the bundle.
   */
  static from(caPem: string, crlText: string | undefined, names: { ca: string; crl: string } = { ca: 'the CA bundle', crl: 'the CRL file' }): TrustStore {
    const certs = parseCertificates(caPem, names.ca);
    const subjects = certs.map((c) => subjectDer(c));
    const newest: Array<Crl | undefined> = certs.map(() => undefined);
    if (crlText !== undefined) {
      const ders = crlPemBlocks(crlText);
      if (ders.length === 0) throw new TrustError(`${names.crl} is not a PEM certificate revocation list (no -----BEGIN X509 CRL----- block)`);
      ders.forEach((der, n) => {
        let crl: Crl;
        try {
          crl = parseCrl(der);
        } catch (err) {
          throw new TrustError(`${names.crl} is not a PEM certificate revocation list (CRL ${n + 1}: ${(err as Error).message})`);
        }
        const issuer = nameText(crl.issuerDer);
        const named = certs.map((_, i) => i).filter((i) => (subjects[i] as Buffer).equals(crl.issuerDer));
        if (named.length === 0) throw new TrustError(`the CRL of ${issuer} in ${names.crl} is from no CA in ${names.ca}`);
        let signer: number | undefined;
        try {
          signer = named.find((i) => crlSignedBy(crl, (certs[i] as X509Certificate).publicKey));
        } catch (err) {
          if (err instanceof CrlError) throw new TrustError(`the CRL of ${issuer} in ${names.crl}: ${err.message}`);
          throw err;
        }
        if (signer === undefined) throw new TrustError(`the CRL of ${issuer} in ${names.crl} is not signed by the CA of that name in ${names.ca}`);
        const held = newest[signer];
        if (!held || held.thisUpdate < crl.thisUpdate) newest[signer] = crl;
      });
    }
    return new TrustStore(
      certs.map((cert, i) => ({ cert, notAfter: new Date(validity(cert).to), revoked: newest[i]?.revoked ?? new Set<string>(), crl: newest[i] })),
    );
  }

  /** The CRLs that count (each CA's newest), PEM, one per entry: Node's `crl` option reads one CRL per string. */
  crlPems(): string[] {
    return this.cas.flatMap((c) => (c.crl ? [crlPem(c.crl.der)] : []));
  }

  /** True when a CRL file was given. */
  get hasCrls(): boolean {
    return this.cas.some((c) => c.crl !== undefined);
  }

  /** The revoked serials of every CA. */
  get revokedCount(): number {
    return this.cas.reduce((n, c) => n + c.revoked.size, 0);
  }

  /** When the first CA of the bundle expires. */
  get earliestCaNotAfter(): Date {
    return new Date(Math.min(...this.cas.map((c) => c.notAfter.getTime())));
  }

  /** The earliest next update of the CAs' newest CRLs, if any. */
  get earliestCrlNextUpdate(): Date | undefined {
    const times = this.cas.flatMap((c) => (c.crl?.nextUpdate ? [c.crl.nextUpdate.getTime()] : []));
    return times.length > 0 ? new Date(Math.min(...times)) : undefined;
  }

  /** The CAs whose newest CRL is past its next update at `now`. */
  staleCrls(now = Date.now()): TrustedCa[] {
    return this.cas.filter((c) => c.crl?.nextUpdate !== undefined && c.crl.nextUpdate.getTime() < now);
  }

  /**
   * Why `cert` is not to be trusted now, or undefined when it is: it must
   * chain to a CA of the bundle (each signature verified; through at most
   * a few CA certificates of `intermediates`), every certificate on the
   * way must be within its validity (unless `checkTime` is false), and
   * neither it nor an intermediate may be revoked by its CA's CRL.
   */
  check(cert: X509Certificate, opts: TrustCheckOptions = {}): TrustProblem | undefined {
    const now = opts.now ?? Date.now();
    const checkTime = opts.checkTime !== false;
    // A self-signed certificate is a root: it can be trusted as a CA of the bundle, never on the way to one.
    const intermediates = opts.intermediates ? [...opts.intermediates].filter((c) => c.ca && !c.checkIssued(c)) : [];
    let current = cert;
    for (let depth = 0; depth <= MAX_INTERMEDIATES; depth++) {
      const which = current === cert ? 'its certificate' : `its issuing CA (${subjectLine(current)})`;
      if (checkTime) {
        const { from, to } = validity(current);
        if (now > to) return { code: 'CERT_HAS_EXPIRED', message: `${which} expired on ${new Date(to).toISOString()}` };
        if (now < from) return { code: 'CERT_NOT_YET_VALID', message: `${which} is not valid before ${new Date(from).toISOString()}` };
      }
      const anchor = this.cas.find((ca) => issuedBy(current, ca.cert));
      if (anchor) {
        if (anchor.revoked.has(serialKey(current.serialNumber))) {
          return { code: 'CERT_REVOKED', message: `${which} is revoked (serial ${current.serialNumber}, CRL of ${subjectLine(anchor.cert)})` };
        }
        if (checkTime && now > anchor.notAfter.getTime()) {
          return { code: 'CERT_HAS_EXPIRED', message: `its CA (${subjectLine(anchor.cert)}) expired on ${anchor.notAfter.toISOString()}` };
        }
        return undefined;
      }
      const next = intermediates.find((c) => c !== current && issuedBy(current, c));
      if (!next) break;
      current = next;
    }
    return {
      code: 'CERT_UNTRUSTED',
      message: `${cert === current ? 'its certificate' : `its issuing CA (${subjectLine(current)})`} is not signed by a CA this node trusts`,
    };
  }

  /** True when `cert` is one of the bundle's CAs. */
  isCa(cert: X509Certificate): boolean {
    return this.caCerts.some((ca) => ca === cert || ca.fingerprint256 === cert.fingerprint256);
  }
}

/** True when `issuer` issued `cert`: names and key identifiers match (OpenSSL's check) and the signature verifies. */
function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}
