/**
 * Installing identities where the nodes read them, and writing newly created identities.
 */
import { CERT_FILE_MODE, KEY_FILE_MODE, checkFileName, writeFilesAtomically } from './files.js';
import type { Identity } from './identities.js';
import { validateIdentity } from './validate.js';
import type { IdentityFiles, Role } from './validate.js';

/** The file names a node reads from its certificate directory. */
export const IDENTITY_FILES: Record<Role, { ca: string; key: string; cert: string }> = {
  server: { ca: 'ca.crt.pem', key: 'restpipe.server.key.pem', cert: 'restpipe.server.crt.pem' },
  client: { ca: 'ca.crt.pem', key: 'restpipe.client.key.pem', cert: 'restpipe.client.crt.pem' },
};

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
 * Validate an identity (see {@link validateIdentity}) and install it into `dir` under the
 * names in {@link IDENTITY_FILES}: key 0600, certificates 0644, directory created 0700.
 * Existing files are replaced only with `force`; on any error nothing is written.
 * @returns the absolute paths written.
 */
export async function installIdentity(
  role: Role,
  files: IdentityFiles,
  dir: string,
  opts: { force?: boolean } = {},
): Promise<{ ca: string; key: string; cert: string }> {
  validateIdentity(role, files);
  const names = IDENTITY_FILES[role];
  const [ca, key, cert] = (await writeFilesAtomically(
    dir,
    [
      { name: names.ca, content: files.caPem, mode: CERT_FILE_MODE },
      { name: names.key, content: files.keyPem, mode: KEY_FILE_MODE },
      { name: names.cert, content: files.certPem, mode: CERT_FILE_MODE },
    ],
    opts,
  )) as [string, string, string];
  return { ca, key, cert };
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
