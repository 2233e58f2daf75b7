/**
 * Installing identities (and the server's CRL) where the nodes read them, and writing newly
 * created identities.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { findRevocation, parseCrls, verifyCrl } from './crl.js';
import type { VerifiedCrl } from './crl.js';
import { FileExistsError, MissingFileError, RevokedError, WrongCaError } from './errors.js';
import { CERT_FILE_MODE, KEY_FILE_MODE, checkFileName, writeFilesAtomically } from './files.js';
import type { FileSpec } from './files.js';
import type { Identity } from './identities.js';
import { parseCertificates } from './pem.js';
import { oneLineName, validateIdentity } from './validate.js';
import type { IdentityFiles, Role } from './validate.js';

/** The file names a node reads from its certificate directory. */
export const IDENTITY_FILES: Record<Role, { ca: string; key: string; cert: string }> = {
  server: { ca: 'ca.crt.pem', key: 'restpipe.server.key.pem', cert: 'restpipe.server.crt.pem' },
  client: { ca: 'ca.crt.pem', key: 'restpipe.client.key.pem', cert: 'restpipe.client.crt.pem' },
};

/**
 * The server's certificate revocation list, beside its identity: one CRL per CA in
 * `ca.crt.pem` (several during a CA rotation), concatenated.
 */
export const SERVER_CRL_FILE = 'crl.pem';

/** The environment variable naming each node's certificate directory. */
export const CERT_PATH_ENV: Record<Role, 'RP_SERVER_CERT_PATH' | 'RP_CLIENT_CERT_PATH'> = {
  server: 'RP_SERVER_CERT_PATH',
  client: 'RP_CLIENT_CERT_PATH',
};

/** Where a node reads its identity when the environment variable is not set. */
export const DEFAULT_IDENTITY_DIR: Record<Role, string> = {
  server: '/etc/restpipe/server',
  client: '/etc/restpipe/client',
};

/**
 * A node's certificate directory: `dir` if given, else RP_SERVER_CERT_PATH /
 * RP_CLIENT_CERT_PATH from `env` (when non-empty), else /etc/restpipe/server or /client.
 */
export function resolveIdentityDir(role: Role, dir?: string, env: Record<string, string | undefined> = process.env): string {
  if (dir) return dir;
  const fromEnv = env[CERT_PATH_ENV[role]];
  return fromEnv ? fromEnv : DEFAULT_IDENTITY_DIR[role];
}

/**
 * Check a CRL file for a server whose CA file is `caPem`: every CRL is signed by one of the
 * CAs (stale ones are returned, marked, for the caller to warn about), every CA has a CRL
 * (node:tls refuses every client of a CA it has no CRL for), and `certPem`, the server's own
 * certificate, is not on it.
 */
async function checkServerCrl(crlPem: string, caPem: string, certPem: string | undefined, label: string, now: Date): Promise<VerifiedCrl[]> {
  const crls = await verifyCrl(crlPem, caPem, { allowStale: true, label, now });
  for (const ca of parseCertificates(caPem, 'the CA certificate')) {
    const subject = oneLineName(ca.subject);
    if (!crls.some((c) => c.signedBy === subject)) {
      throw new WrongCaError(
        `${label} has no CRL from the CA ${subject}: node:tls would refuse every client of that CA (UNABLE_TO_GET_CRL); ` +
          'give one CRL per CA in the CA file, concatenated',
      );
    }
  }
  if (certPem !== undefined) {
    const entry = findRevocation(crls, certPem);
    if (entry) {
      throw new RevokedError(
        `the server certificate (serial ${entry.serialHex}) is revoked by ${label} since ${entry.revokedAt.toISOString()} (${entry.reason}); renew it`,
      );
    }
  }
  return crls;
}

/**
 * Validate an identity (see {@link validateIdentity}) and install it into `dir` under the
 * names in {@link IDENTITY_FILES}: key 0600, certificates 0644, directory created 0700.
 * With `crlPem` (server only), the CRL is checked against the CA file (see {@link installCrl})
 * and installed as {@link SERVER_CRL_FILE} too.
 * Existing files are replaced only with `force`; on any error nothing is written.
 * @returns the absolute paths written, and the CRLs checked (with their `stale` flag).
 */
export async function installIdentity(
  role: Role,
  files: IdentityFiles & { crlPem?: string },
  dir: string,
  opts: { force?: boolean; now?: Date } = {},
): Promise<{ ca: string; key: string; cert: string; crl?: string; crls?: VerifiedCrl[] }> {
  const now = opts.now ?? new Date();
  validateIdentity(role, files, now);
  const names = IDENTITY_FILES[role];
  const specs: FileSpec[] = [
    { name: names.ca, content: files.caPem, mode: CERT_FILE_MODE },
    { name: names.key, content: files.keyPem, mode: KEY_FILE_MODE },
    { name: names.cert, content: files.certPem, mode: CERT_FILE_MODE },
  ];
  let crls: VerifiedCrl[] | undefined;
  if (files.crlPem !== undefined) {
    if (role !== 'server') throw new WrongCaError('a CRL is for the server, which checks client certificates against it');
    crls = await checkServerCrl(files.crlPem, files.caPem, files.certPem, 'the CRL', now);
    specs.push({ name: SERVER_CRL_FILE, content: files.crlPem, mode: CERT_FILE_MODE });
  }
  const [ca, key, cert, crl] = (await writeFilesAtomically(dir, specs, opts)) as [string, string, string, string | undefined];
  return crl === undefined ? { ca, key, cert } : { ca, key, cert, crl, crls };
}

async function readInstalled(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MissingFileError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Install a CRL for an already installed server identity in `dir`: checks that every CRL in
 * it is signed by a CA of the installed `ca.crt.pem`, that every one of those CAs has a CRL,
 * that the installed server certificate is not revoked, and that it does not replace a newer
 * CRL (a higher CRL number from the same CA) unless `force`. Then writes `crl.pem` (0644).
 * The server reads it at start and on SIGHUP.
 *
 * @throws MissingFileError when no CA is installed in `dir`
 * @throws WrongCaError, NotYetValidError, NotPemError as {@link verifyCrl}; RevokedError;
 *   FileExistsError for an older CRL than the installed one
 * @returns the path written and the CRLs (a `stale` one is installed: warn about it)
 */
export async function installCrl(crlPem: string, dir: string, opts: { force?: boolean; now?: Date } = {}): Promise<{ crl: string; crls: VerifiedCrl[] }> {
  const absDir = resolve(dir);
  const caPath = join(absDir, IDENTITY_FILES.server.ca);
  const caPem = await readInstalled(caPath);
  if (caPem === undefined) {
    throw new MissingFileError(
      `no CA installed in ${absDir} (${IDENTITY_FILES.server.ca}); install the server identity first (set-identity server --key ... --cert ... --ca ...)`,
    );
  }
  const certPem = await readInstalled(join(absDir, IDENTITY_FILES.server.cert));
  const crls = await checkServerCrl(crlPem, caPem, certPem, 'the CRL', opts.now ?? new Date());
  const installedPath = join(absDir, SERVER_CRL_FILE);
  const installed = await readInstalled(installedPath);
  if (installed !== undefined && !opts.force) {
    let old: ReturnType<typeof parseCrls> = [];
    try {
      old = parseCrls(installed, installedPath);
    } catch {
      // An unreadable installed CRL is simply replaced.
    }
    for (const crl of crls) {
      const previous = old.find((o) => o.issuer === crl.issuer);
      if (previous?.crlNumber !== undefined && crl.crlNumber !== undefined && crl.crlNumber < previous.crlNumber) {
        throw new FileExistsError(
          `${installedPath} holds a newer CRL from ${crl.issuer} (number ${previous.crlNumber}) than the one given (number ${crl.crlNumber}); use --force to go back`,
        );
      }
    }
  }
  const [crl] = (await writeFilesAtomically(absDir, [{ name: SERVER_CRL_FILE, content: crlPem, mode: CERT_FILE_MODE }], { force: true })) as [string];
  return { crl, crls };
}

/**
 * Write a created identity as `<baseName>.key.pem` (0600) and `<baseName>.crt.pem` (0644)
 * into `dir` (created 0700 if missing), with the same all-or-nothing and `force` rules as
 * {@link installIdentity}.
 * @returns the absolute paths written.
 */
export async function writeIdentity(dir: string, baseName: string, id: Identity, opts: { force?: boolean } = {}): Promise<{ key: string; cert: string }> {
  checkFileName(baseName, 'base file name');
  const [key, cert] = (await writeFilesAtomically(
    dir,
    [
      { name: `${baseName}.key.pem`, content: id.keyPem, mode: KEY_FILE_MODE },
      { name: `${baseName}.crt.pem`, content: id.certPem, mode: CERT_FILE_MODE },
    ],
    opts,
  )) as [string, string];
  return { key, cert };
}
