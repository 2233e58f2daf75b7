/**
 * Running the deploy/ files for real in tests: a temp folder, free ports,
 * the repo's nginx sites rendered for it, nginx and the nodes' start scripts
 * as child processes. Everything started registers its teardown with
 * `onClose` (test/helpers/pipe.ts) right away.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { onClose } from './pipe.js';

const run = promisify(execFile);

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Debian's nginx package installs it here (.ci/run installs it). */
export const NGINX_BIN = '/usr/sbin/nginx';

/** A temp folder removed at teardown. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onClose(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export { freePort } from './pipe.js';

/**
 * The repo's site file `deploy/nginx/<file>` with exact strings replaced.
 * Each string must occur exactly once outside comments, so a config that drifts from what the
 * test rewrites fails here with a clear message instead of testing the wrong thing.
 */
export function renderSite(file: string, replacements: Record<string, string>): string {
  let text = readFileSync(join(REPO_ROOT, 'deploy/nginx', file), 'utf8');
  for (const [from, to] of Object.entries(replacements)) {
    const count = text.replace(/#.*$/gm, '').split(from).length - 1;
    if (count !== 1) throw new Error(`deploy/nginx/${file} must contain "${from}" exactly once outside comments (found ${count}); the test rewrites it`);
    text = text.replaceAll(from, to);
  }
  return text;
}

/** A child process whose output is kept (the last lines) for failure messages. */
export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Its stdout and stderr so far (the last 300 lines). */
  output(): string;
  /** SIGTERM (or `signal`), then SIGKILL after `graceMs`; resolves with how it exited. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Spawns `command`; stops it at teardown. With `group`, the child leads its own
 * process group and the SIGKILL fallback goes to the whole group (nginx's
 * workers outlive a killed master otherwise).
 */
export function spawnChild(name: string, command: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string; group?: boolean }): Child {
  const proc = spawn(command, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: opts.group === true });
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    lines.push(
      ...chunk
        .toString('utf8')
        .split('\n')
        .filter((l) => l.length > 0),
    );
    if (lines.length > 300) lines.splice(0, lines.length - 300);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
    proc.once('error', (err) => {
      lines.push(`spawn error: ${err.message}`);
      resolve({ code: null, signal: null });
    });
  });
  const alive = () => proc.exitCode === null && proc.signalCode === null && proc.pid !== undefined;
  const kill = (signal: NodeJS.Signals, wholeGroup: boolean) => {
    try {
      if (wholeGroup && opts.group && proc.pid !== undefined) process.kill(-proc.pid, signal);
      else proc.kill(signal);
    } catch {
      // already gone
    }
  };
  const child: Child = {
    name,
    proc,
    exited,
    output: () => lines.join('\n'),
    async stop(signal = 'SIGTERM', graceMs = 5000) {
      if (alive()) {
        kill(signal, false);
        const timer = setTimeout(() => kill('SIGKILL', true), graceMs);
        await exited;
        clearTimeout(timer);
      }
      // Whatever is left of the group (nginx workers), in any case.
      if (opts.group && proc.pid !== undefined) {
        try {
          process.kill(-proc.pid, 'SIGKILL');
        } catch {
          // the group is empty
        }
      }
      return exited;
    },
  };
  onClose(() => child.stop());
  return child;
}

/** Polls `check` every 50 ms until it resolves true; throws with `what()` after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: () => string): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms: ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A CA, a server identity for localhost/127.0.0.1 and a client identity named
 * `clientName`, made and installed with the real restpipe-certs CLI, as
 * docs/production.md does. Returns the two installed identity folders.
 */
export async function installIdentities(dir: string, clientName: string): Promise<{ serverCertPath: string; clientCertPath: string }> {
  const cli = join(REPO_ROOT, 'certs-tool/dist/cli.js');
  const certs = (...args: string[]) => run(process.execPath, [cli, ...args]);
  const ids = join(dir, 'identities');
  const serverCertPath = join(dir, 'etc/restpipe/server');
  const clientCertPath = join(dir, 'etc/restpipe/client');
  await certs('create-ca', '--out', ids, '--name', 'RestPipe nginx test CA');
  await Promise.all([
    certs('create-server', '--out', ids, '--name', 'localhost', '--dns', 'localhost', '--ip', '127.0.0.1'),
    certs('create-client', '--out', ids, '--name', clientName),
  ]);
  await Promise.all([
    certs(
      'set-identity',
      'server',
      '--dir',
      serverCertPath,
      '--key',
      join(ids, 'server.key.pem'),
      '--cert',
      join(ids, 'server.crt.pem'),
      '--ca',
      join(ids, 'ca.crt.pem'),
    ),
    certs(
      'set-identity',
      'client',
      '--dir',
      clientCertPath,
      '--key',
      join(ids, `${clientName}.key.pem`),
      '--cert',
      join(ids, `${clientName}.crt.pem`),
      '--ca',
      join(ids, 'ca.crt.pem'),
    ),
  ]);
  return { serverCertPath, clientCertPath };
}

/** An environment file in the format of deploy/env/*.env.example. */
export function writeEnvFile(path: string, vars: Record<string, string>): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(
    path,
    `# written by test/nginx.test.ts\n${Object.entries(vars)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n')}\n`,
    { mode: 0o640 },
  );
  return path;
}

/** What a child node started by a script needs: a PATH that finds this node, and nothing else. */
export function minimalEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`, ...extra };
}

export interface RunningNginx {
  child: Child;
  dir: string;
  /** The error log so far (for failure messages). */
  errorLog(): string;
}

/**
 * Wraps `sites` (rendered site files) in a minimal main nginx.conf in `dir`,
 * checks it with `nginx -t`, starts nginx in the foreground and waits until
 * it answers on `readyPort`.
 */
export async function startNginx(dir: string, sites: Record<string, string>, readyPort: number): Promise<RunningNginx> {
  const siteDir = join(dir, 'sites');
  mkdirSync(siteDir, { recursive: true });
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, 'temp', sub), { recursive: true });
  const includes = Object.entries(sites).map(([name, text]) => {
    const path = join(siteDir, name);
    writeFileSync(path, text);
    return `    include ${path};`;
  });
  const errorLog = join(dir, 'nginx-error.log');
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    [
      '# Minimal main config around the repo site files (test/nginx.test.ts).',
      // nginx started by root switches its workers to `nobody`, which could neither
      // enter this 0700 temp folder nor connect to the root-owned gateway sockets
      // (connect needs write permission on the socket). So, as root, the workers stay
      // root. Unprivileged, nginx runs as the test's user and `user` is not needed.
      process.getuid?.() === 0 ? 'user root;' : '# not root: the workers run as the test user',
      'daemon off;',
      'master_process on;',
      'worker_processes 1;',
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${errorLog} info;`,
      'events { worker_connections 128; }',
      'http {',
      `    access_log ${join(dir, 'nginx-access.log')};`,
      `    client_body_temp_path ${join(dir, 'temp/client_body')};`,
      `    proxy_temp_path ${join(dir, 'temp/proxy')};`,
      `    fastcgi_temp_path ${join(dir, 'temp/fastcgi')};`,
      `    uwsgi_temp_path ${join(dir, 'temp/uwsgi')};`,
      `    scgi_temp_path ${join(dir, 'temp/scgi')};`,
      ...includes,
      '}',
      '',
    ].join('\n'),
  );
  const args = ['-c', conf, '-p', `${dir}/`, '-e', errorLog];
  try {
    await run(NGINX_BIN, ['-t', ...args]);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`nginx -t refused the config: ${e.stderr ?? e.message}`);
  }
  const child = spawnChild('nginx', NGINX_BIN, args, { env: minimalEnv(), group: true });
  const readErrorLog = () => (existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : '');
  const exited = () => child.proc.exitCode !== null || child.proc.signalCode !== null;
  await eventually(
    async () => {
      if (exited()) return true;
      const res = await fetch(`http://127.0.0.1:${readyPort}/favicon.ico`);
      await res.arrayBuffer();
      return res.status === 404;
    },
    10_000,
    () => `nginx did not answer on port ${readyPort}\n${child.output()}\n${readErrorLog()}`,
  );
  if (exited()) throw new Error(`nginx exited at start:\n${child.output()}\n${readErrorLog()}`);
  return { child, dir, errorLog: readErrorLog };
}
