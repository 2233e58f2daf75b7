/**
 * The CA's revocation list: its state in `revoked.json` beside the CA certificate (what is
 * revoked, when, why, the CN for display, and the last CRL number) and the CRL made from it,
 * `crl.pem`, in the same folder. Both files are written together, all or nothing.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_NEXT_UPDATE_DAYS, checkRevocationReason, createCrl, normalizeSerial, parseCrls } from './crl.js';
import type { RevocationReason, RevokedCertificate } from './crl.js';
import { BadStateError, InvalidArgumentError, WrongCaError } from './errors.js';
import { CERT_FILE_MODE, writeFilesAtomically } from './files.js';
import type { Identity } from './identities.js';
import { parseCertificate } from './pem.js';
import { oneLineName } from './validate.js';

/** The files of a CA's revocation list, beside `ca.crt.pem`. */
export const REVOCATION_FILES = { state: 'revoked.json', crl: 'crl.pem' } as const;

/** One revoked certificate in the state file. */
export interface RevocationEntry extends RevokedCertificate {
  /** The certificate's CN when it was revoked from its file; for display only. */
  commonName?: string;
}

/** What `revoked.json` holds. */
export interface RevocationState {
  /** SHA-256 fingerprint of the CA certificate this list belongs to. */
  caFingerprint: string;
  /** The number of the last CRL issued (0 before the first). */
  crlNumber: number;
  revoked: RevocationEntry[];
}

interface StateFile {
  version: 1;
  ca: string;
  crlNumber: number;
  revoked: Array<{ serial: string; commonName?: string; revokedAt: string; reason: string }>;
}

function fingerprintOf(caPem: string): string {
  return parseCertificate(caPem, 'the CA certificate').fingerprint256;
}

function parseState(text: string, path: string): RevocationState {
  const bad = (why: string) => new BadStateError(`${path} is not a valid revocation list state: ${why}; restore it from a backup`);
  let data: StateFile;
  try {
    data = JSON.parse(text) as StateFile;
  } catch (cause) {
    throw new BadStateError(`${path} is not valid JSON; restore it from a backup`, { cause });
  }
  if (typeof data !== 'object' || data === null || data.version !== 1) throw bad('expected {"version": 1, ...}');
  if (typeof data.ca !== 'string') throw bad('no "ca" fingerprint');
  if (!Number.isSafeInteger(data.crlNumber) || data.crlNumber < 0) throw bad('"crlNumber" is not a whole number');
  if (!Array.isArray(data.revoked)) throw bad('"revoked" is not a list');
  const revoked = data.revoked.map((e, i): RevocationEntry => {
    const revokedAt = new Date(typeof e?.revokedAt === 'string' ? e.revokedAt : Number.NaN);
    if (Number.isNaN(revokedAt.getTime())) throw bad(`entry ${i + 1} has no valid "revokedAt"`);
    try {
      const entry: RevocationEntry = { serialHex: normalizeSerial(String(e.serial)), revokedAt, reason: checkRevocationReason(e.reason) };
      if (typeof e.commonName === 'string') entry.commonName = e.commonName;
      return entry;
    } catch (err) {
      throw bad(`entry ${i + 1}: ${(err as Error).message}`);
    }
  });
  return { caFingerprint: data.ca, crlNumber: data.crlNumber, revoked };
}

function serializeState(state: RevocationState): string {
  const file: StateFile = {
    version: 1,
    ca: state.caFingerprint,
    crlNumber: state.crlNumber,
    revoked: state.revoked.map((e) => ({
      serial: e.serialHex,
      ...(e.commonName !== undefined ? { commonName: e.commonName } : {}),
      revokedAt: e.revokedAt.toISOString(),
      reason: e.reason,
    })),
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new BadStateError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The revocation list state of the CA in `caDir`: `revoked.json`, or an empty list when
 * neither it nor `crl.pem` exists yet.
 * @throws BadStateError when revoked.json is malformed, or missing while crl.pem exists
 *   (starting over would silently un-revoke what the CRL lists)
 * @throws WrongCaError when revoked.json belongs to another CA certificate
 */
export async function readRevocationState(caDir: string, caCertPem: string): Promise<RevocationState> {
  const statePath = join(caDir, REVOCATION_FILES.state);
  const fingerprint = fingerprintOf(caCertPem);
  const text = await readOptional(statePath);
  if (text === undefined) {
    const crlPath = join(caDir, REVOCATION_FILES.crl);
    if ((await readOptional(crlPath)) !== undefined) {
      throw new BadStateError(
        `${crlPath} exists but ${statePath} does not; restore ${REVOCATION_FILES.state} from a backup (or move ${REVOCATION_FILES.crl} away to start an empty list)`,
      );
    }
    return { caFingerprint: fingerprint, crlNumber: 0, revoked: [] };
  }
  const state = parseState(text, statePath);
  if (state.caFingerprint !== fingerprint) {
    throw new WrongCaError(`${statePath} belongs to another CA certificate (SHA-256 ${state.caFingerprint}), not this one (${fingerprint})`);
  }
  return state;
}

/** The result of {@link revokeCertificate} and {@link reissueCrl}. */
export interface CrlIssued {
  state: RevocationState;
  /** The new CRL, PEM; undefined when nothing was written (already revoked). */
  crlPem: string | undefined;
  crlPath: string;
  statePath: string;
  nextUpdate: Date | undefined;
}

/** Options of {@link revokeCertificate} and {@link reissueCrl}. */
export interface IssueOptions {
  /** @default 30 */
  nextUpdateDays?: number;
  /** @default new Date() */
  now?: Date;
}

async function issue(ca: Identity, caDir: string, state: RevocationState, opts: IssueOptions): Promise<CrlIssued> {
  const now = opts.now ?? new Date();
  const next: RevocationState = { ...state, crlNumber: state.crlNumber + 1 };
  const nextUpdateDays = opts.nextUpdateDays ?? DEFAULT_NEXT_UPDATE_DAYS;
  const crlPem = await createCrl(ca, next.revoked, { crlNumber: next.crlNumber, now, nextUpdateDays });
  const [statePath, crlPath] = (await writeFilesAtomically(
    caDir,
    [
      { name: REVOCATION_FILES.state, content: serializeState(next), mode: CERT_FILE_MODE },
      { name: REVOCATION_FILES.crl, content: crlPem, mode: CERT_FILE_MODE },
    ],
    { force: true },
  )) as [string, string];
  return { state: next, crlPem, crlPath, statePath, nextUpdate: parseCrls(crlPem)[0]?.nextUpdate };
}

/** What to revoke: a certificate (checked to be the CA's), or a bare serial number. */
export type RevocationTarget = { certPem: string } | { serialHex: string };

/** The result of {@link revokeCertificate}. */
export interface Revoked extends CrlIssued {
  entry: RevocationEntry;
  /** True when the certificate was already on the list: nothing was written. */
  alreadyRevoked: boolean;
}

/**
 * Add a certificate to the revocation list of the CA in `caDir` and write `revoked.json`
 * and a new `crl.pem` there (CRL number incremented). A certificate already on the list is
 * left as it is and nothing is written.
 *
 * @throws WrongCaError when the certificate was not issued by this CA
 * @throws InvalidArgumentError for the CA's own certificate, a malformed serial or reason
 */
export async function revokeCertificate(
  ca: Identity,
  caDir: string,
  target: RevocationTarget,
  opts: IssueOptions & { reason?: RevocationReason } = {},
): Promise<Revoked> {
  const reason = checkRevocationReason(opts.reason ?? 'unspecified');
  const caCert = parseCertificate(ca.certPem, 'the CA certificate');
  let serialHex: string;
  let commonName: string | undefined;
  if ('certPem' in target) {
    const cert = parseCertificate(target.certPem, 'the certificate to revoke');
    const label = `the certificate to revoke (${oneLineName(cert.subject)})`;
    if (cert.fingerprint256 === caCert.fingerprint256) {
      throw new InvalidArgumentError(`${label} is the CA certificate itself; to retire a CA, rotate it (docs/identities.md)`);
    }
    if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey)) {
      throw new WrongCaError(`${label} was not issued by this CA (${oneLineName(caCert.subject)}); it was issued by ${oneLineName(cert.issuer)}`);
    }
    serialHex = normalizeSerial(cert.serialNumber);
    commonName = cert.subject
      .split('\n')
      .find((l) => l.startsWith('CN='))
      ?.slice(3);
  } else {
    serialHex = normalizeSerial(target.serialHex);
  }
  const nextUpdateDays = opts.nextUpdateDays ?? DEFAULT_NEXT_UPDATE_DAYS;
  const state = await readRevocationState(caDir, ca.certPem);
  const existing = state.revoked.find((e) => e.serialHex === serialHex);
  if (existing) {
    return {
      state,
      entry: existing,
      alreadyRevoked: true,
      crlPem: undefined,
      crlPath: join(caDir, REVOCATION_FILES.crl),
      statePath: join(caDir, REVOCATION_FILES.state),
      nextUpdate: undefined,
    };
  }
  // X.509 times have one-second resolution: keep the date the CRL shows.
  const revokedAt = new Date(Math.floor((opts.now ?? new Date()).getTime() / 1000) * 1000);
  const entry: RevocationEntry = { serialHex, revokedAt, reason };
  if (commonName !== undefined) entry.commonName = commonName;
  const issued = await issue(ca, caDir, { ...state, revoked: [...state.revoked, entry] }, { ...opts, nextUpdateDays });
  return { ...issued, entry, alreadyRevoked: false };
}

/**
 * Re-issue the CRL of the CA in `caDir` with the same entries, a new thisUpdate/nextUpdate
 * and the next CRL number; writes `revoked.json` and `crl.pem` (an empty list the first time).
 * Run it well before the current CRL's nextUpdate: a stale CRL makes TLS refuse every client.
 */
export async function reissueCrl(ca: Identity, caDir: string, opts: IssueOptions = {}): Promise<CrlIssued> {
  const state = await readRevocationState(caDir, ca.certPem);
  return issue(ca, caDir, state, opts);
}
