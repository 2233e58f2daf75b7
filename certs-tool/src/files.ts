/**
 * All-or-nothing writes of a set of files into one directory. Every destination is checked
 * before anything is written; contents go to temporary names in the destination directory
 * (same filesystem, so rename is atomic) and are renamed into place only once all of them
 * are on disk. A failure leaves no new file behind.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, rename, rmdir, stat, unlink, chmod } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { FileExistsError, InvalidArgumentError, WriteFailedError } from './errors.js';

/** File mode of private keys: owner read/write only. */
export const KEY_FILE_MODE = 0o600;
/** File mode of certificates: world-readable, they are public. */
export const CERT_FILE_MODE = 0o644;
/** Mode of a directory we create: it holds private keys. */
export const DIR_MODE = 0o700;

/** One file to write. */
export interface FileSpec {
  /** File name inside the directory (no path separators). */
  name: string;
  content: string;
  mode: number;
}

function describeIoError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (!e.code) return err instanceof Error ? err.message : String(err);
  // Node's fs messages already start with the code: "ENOTDIR: not a directory, stat '/x'".
  return e.message.startsWith(`${e.code}:`) ? e.message : `${e.code}: ${e.message}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // ENOTDIR: a parent is not a directory, so nothing is there (the write reports the parent).
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw new WriteFailedError(`cannot check ${path}: ${describeIoError(err)}`, { cause: err });
  }
}

/** Throws FileExistsError naming every path in `paths` that exists, unless `force`. */
async function assertNoneExist(paths: readonly string[], force = false): Promise<void> {
  if (force) return;
  const existing: string[] = [];
  for (const p of paths) {
    if (await exists(p)) existing.push(p);
  }
  if (existing.length > 0) {
    throw new FileExistsError(`${existing.join(', ')} already exist${existing.length === 1 ? 's' : ''}; use --force to replace`);
  }
}

/** Throws unless `name` is a plain file name. */
export function checkFileName(name: string, what: string): void {
  if (!name || name === '.' || name === '..' || basename(name) !== name || name.includes('\\') || name.includes('\0')) {
    throw new InvalidArgumentError(`${what} must be a plain file name, got ${JSON.stringify(name)}`);
  }
}

/**
 * Check, writing nothing, that files named `names` can be written into `dir`: `dir` is a
 * directory or does not exist yet (else WriteFailedError), and none of the files exists unless
 * `force` (else FileExistsError). Lets a caller fail before slow work (key generation).
 * @returns the absolute path of each file, in the order given.
 */
export async function checkDestination(dir: string, names: readonly string[], force = false): Promise<string[]> {
  const absDir = resolve(dir);
  for (const name of names) checkFileName(name, 'output file name');
  try {
    const dirStat = await stat(absDir);
    if (!dirStat.isDirectory()) throw new WriteFailedError(`${absDir} exists and is not a directory`);
  } catch (err) {
    if (err instanceof WriteFailedError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new WriteFailedError(`cannot use directory ${absDir}: ${describeIoError(err)}`, { cause: err });
    }
  }
  const targets = names.map((name) => join(absDir, name));
  await assertNoneExist(targets, force);
  return targets;
}

/**
 * Write `files` into `dir` atomically as a set.
 * @returns the absolute path of each file, in the order given.
 * @throws FileExistsError if a destination exists and `force` is not set (nothing written)
 * @throws WriteFailedError if `dir` cannot hold them, or on an I/O failure (temporary files
 *   removed)
 */
export async function writeFilesAtomically(dir: string, files: readonly FileSpec[], opts: { force?: boolean } = {}): Promise<string[]> {
  const absDir = resolve(dir);
  // 1. Check every destination before touching anything.
  const targets = await checkDestination(
    absDir,
    files.map((f) => f.name),
    opts.force,
  );

  // 2. Create the directory (0700: it holds private keys) if missing.
  let createdDir: string | undefined;
  try {
    createdDir = await mkdir(absDir, { recursive: true, mode: DIR_MODE });
    if (createdDir !== undefined) await chmod(absDir, DIR_MODE); // the umask may have cleared bits
  } catch (err) {
    throw new WriteFailedError(`cannot create directory ${absDir}: ${describeIoError(err)}`, { cause: err });
  }

  // 3. Write everything to temporary names, then 4. rename into place.
  const suffix = randomBytes(6).toString('hex');
  const temps: string[] = [];
  let renamed = 0;
  try {
    for (const f of files) {
      const tmp = join(absDir, `.${f.name}.${suffix}.tmp`);
      const handle = await open(tmp, 'wx', f.mode);
      temps.push(tmp);
      try {
        await handle.writeFile(f.content, 'utf8');
        await handle.chmod(f.mode); // exact mode whatever the umask
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    for (const [i, tmp] of temps.entries()) {
      await rename(tmp, targets[i] as string);
      renamed++;
    }
  } catch (err) {
    await Promise.all(temps.slice(renamed).map((t) => unlink(t).catch(() => undefined)));
    if (createdDir !== undefined && renamed === 0) {
      await rmdir(absDir).catch(() => undefined);
    }
    throw new WriteFailedError(`writing into ${absDir} failed: ${describeIoError(err)}`, { cause: err });
  }
  return targets;
}
