/**
 * Shared test helpers for certs-tool: temporary directories removed after each test, a
 * real `openssl` runner, an in-memory CLI io, directory snapshots and identity fixtures.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach } from 'vitest';
import { createCa, createClientIdentity, createServerIdentity } from '@restpipe/certs-tool';
import type { Identity } from '@restpipe/certs-tool';
import type { CliIo } from '@restpipe/certs-tool/cli-main';

/** Timeout for tests that generate keys or run openssl. */
export const SLOW = 30_000;

/** The compiled CLI, for tests that spawn the real executable. */
export const CLI_PATH = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
/** docs/identities.md at the repository root. */
export const DOCS_PATH = fileURLToPath(new URL('../../docs/identities.md', import.meta.url));
/** README.md at the repository root. */
export const README_PATH = fileURLToPath(new URL('../../README.md', import.meta.url));

/**
 * Returns a function making temporary directories under os.tmpdir(); they are removed after
 * each test (scope 'each') or after the file (scope 'all').
 */
export function useTempDirs(scope: 'each' | 'all' = 'each'): () => string {
  const dirs: string[] = [];
  const cleanup = () => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  };
  if (scope === 'each') afterEach(cleanup);
  else afterAll(cleanup);
  return () => {
    const d = mkdtempSync(join(tmpdir(), 'restpipe-certs-test-'));
    dirs.push(d);
    return d;
  };
}

/** Run the real openssl binary. */
export function openssl(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8', input, timeout: 20_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** An in-memory CliIo plus what was written to it. */
export interface CapturedIo extends CliIo {
  out(): string;
  err(): string;
}

export function captureIo(cwd: string, env: Record<string, string | undefined> = {}): CapturedIo {
  let out = '';
  let err = '';
  return {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    env,
    cwd,
    out: () => out,
    err: () => err,
  };
}

/** Every entry under `dir` (dot files included) with its mode and content. */
export function snapshot(dir: string): Record<string, string> {
  const result: Record<string, string> = {};
  const walk = (d: string, prefix: string) => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const name of entries.sort()) {
      const p = join(d, name);
      const st = statSync(p);
      const rel = prefix + name;
      if (st.isDirectory()) {
        result[`${rel}/`] = (st.mode & 0o777).toString(8);
        walk(p, `${rel}/`);
      } else {
        result[rel] = `${(st.mode & 0o777).toString(8)}:${readFileSync(p, 'utf8')}`;
      }
    }
  };
  walk(dir, '');
  return result;
}

/** Permission bits of a path. */
export function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

/** Write PEM texts into `dir` and return their paths. */
export function writePems(dir: string, files: Record<string, string>): Record<string, string> {
  const paths: Record<string, string> = {};
  for (const [name, text] of Object.entries(files)) {
    paths[name] = join(dir, name);
    writeFileSync(paths[name], text);
  }
  return paths;
}

/** A CA with a server and a client identity, plus a second, unrelated CA and its client. */
export interface Fixtures {
  ca: Identity;
  server: Identity;
  client: Identity;
  otherCa: Identity;
  otherClient: Identity;
}

export const SERVER_NAME = 'pipe.test';
export const CLIENT_NAME = 'branch-01';

let fixtures: Promise<Fixtures> | undefined;

/** Identities shared by the tests of one file (created once, in parallel). */
export function getFixtures(): Promise<Fixtures> {
  fixtures ??= (async () => {
    const [ca, otherCa] = await Promise.all([createCa(), createCa({ commonName: 'Other CA' })]);
    const [server, client, otherClient] = await Promise.all([
      createServerIdentity(ca, { commonName: SERVER_NAME, dnsNames: [SERVER_NAME, 'localhost'], ipAddresses: ['127.0.0.1', '::1'] }),
      createClientIdentity(ca, { commonName: CLIENT_NAME }),
      createClientIdentity(otherCa, { commonName: CLIENT_NAME }),
    ]);
    return { ca, server, client, otherCa, otherClient };
  })();
  return fixtures;
}
