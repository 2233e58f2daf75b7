// The other side of `npm run bench -- --against <git-ref>`: a build of <ref>,
// made in a temporary git worktree, whose RestPipe nodes the bench runs beside
// today's. The worktree is only for the checkout and the build: once built, the
// tree is moved to <tmpdir>/restpipe-bench-against/<key> and the worktree is
// removed from git, so the repository never keeps a worktree after a run and
// the next run against the same commit starts at once. The key is a hash of
// the commit's files minus bench/, docs/ and *.md (buildKey), so commits that
// differ only there share one build. The last KEEP builds are kept. With
// `cache: false` the tree is built under the run's own temporary directory and
// goes with it.
//
// The bench's own handlers and probe (bench/lib) are copied into the built tree
// (.bench-lib/) from today's tree, so both sides answer with the same handler
// code; only RestPipe itself differs. They resolve @restpipe/* from the built
// tree's node_modules.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';

export const CACHE_DIR = join(os.tmpdir(), 'restpipe-bench-against');
const KEEP = 3;
const MARK = '.restpipe-bench-built';

function git(root, ...args) {
  const r = spawnSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { ok: r.status === 0, out: (r.stdout ?? '').trim(), err: (r.stderr ?? '').trim() };
}

/**
 * What the build of a commit depends on: its top-level tree entries (object
 * ids) except the bench, the docs and markdown files, hashed.
 */
function buildKey(root, sha) {
  const r = git(root, 'ls-tree', sha);
  if (!r.ok) throw new Error(`git ls-tree ${sha} failed: ${r.err}`);
  const kept = r.out.split('\n').filter((l) => {
    const name = l.split('\t')[1] ?? '';
    return name !== 'bench' && name !== 'docs' && !name.endsWith('.md');
  });
  return createHash('sha1').update(kept.join('\n')).digest('hex');
}

/**
 * The environment for npm in the other tree: without the npm_* variables and
 * node_modules/.bin entries `npm run bench` put there for today's tree.
 */
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && k !== 'INIT_CWD' && k !== 'NODE_OPTIONS') env[k] = v;
  env.PATH = (process.env.PATH ?? '')
    .split(':')
    .filter((d) => d && !d.endsWith('/node_modules/.bin') && !d.includes('node-gyp-bin'))
    .join(':');
  return env;
}

const running = new Set();
/** Runs a command in its own process group, output appended to logFile. */
function run(cmd, args, { cwd, logFile }) {
  return new Promise((resolve, reject) => {
    const fd = openSync(logFile, 'a');
    writeFileSync(fd, `\n$ ${cmd} ${args.join(' ')}   (in ${cwd})\n`);
    const child = spawn(cmd, args, { cwd, env: cleanEnv(), stdio: ['ignore', fd, fd], detached: true });
    running.add(child);
    child.once('error', (err) => {
      running.delete(child);
      closeSync(fd);
      reject(new Error(`${cmd}: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      running.delete(child);
      closeSync(fd);
      if (code === 0) resolve();
      else reject(new Error(`"${cmd} ${args.join(' ')}" failed (${signal ?? `exit code ${code}`}); its output is in ${logFile}`));
    });
  });
}

function tail(file, lines = 25) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

const isBuilt = (dir, sha) => {
  try {
    return readFileSync(join(dir, MARK), 'utf8').trim() === sha;
  } catch {
    return false;
  }
};

/** Worktrees being built by this process (removed by discardPending on failure or exit). */
const pending = new Map();

function removeWorktree(root, dir) {
  if (existsSync(dir) && git(root, 'worktree', 'remove', '--force', dir).ok) return;
  // The directory is gone or git refused: remove what is left, then let git
  // forget the worktree whose directory no longer exists.
  rmSync(dir, { recursive: true, force: true });
  git(root, 'worktree', 'prune');
}

/**
 * Stops a build under way and removes its worktree. Safe to call more than once;
 * run.js calls it when the bench ends, fails or is interrupted.
 */
export async function discardPending() {
  await Promise.all(
    [...running].map((c) => {
      try {
        process.kill(-c.pid, 'SIGTERM');
      } catch {}
      return new Promise((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', resolve)));
    }),
  );
  for (const [dir, root] of pending) {
    pending.delete(dir);
    removeWorktree(root, dir);
  }
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

/** Drops leftovers of builds whose process died, and built commits beyond the newest KEEP. */
function tidyCache(root, keep) {
  let names = [];
  try {
    names = readdirSync(CACHE_DIR);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /\.build-(\d+)$/.exec(n);
    if (m && !pidAlive(Number(m[1]))) removeWorktree(root, join(CACHE_DIR, n));
  }
  const built = names
    .filter((n) => /^[0-9a-f]{40,64}$/.test(n) && n !== keep)
    .map((n) => {
      try {
        return { n, t: statSync(join(CACHE_DIR, n, MARK)).mtimeMs };
      } catch {
        return { n, t: 0 };
      }
    })
    .sort((a, b) => b.t - a.t);
  for (const { n } of built.slice(KEEP - 1)) rmSync(join(CACHE_DIR, n), { recursive: true, force: true });
}

/**
 * Checks `ref` out in a temporary worktree, installs and builds it, and returns
 * where its built tree is.
 * @returns {Promise<{ref: string, sha: string, short: string, subject: string, dir: string, lib: string, label: string, cached: boolean, install: string, buildSeconds: number}>}
 */
export async function prepareAgainst({ root, ref, work, cache = true, log = console.log }) {
  const r = git(root, 'rev-parse', '--verify', '--quiet', `${ref}^{commit}`);
  if (!r.ok || !r.out) throw new Error(`--against ${ref}: not a commit of the repository at ${root}`);
  const sha = r.out;
  const short = git(root, 'rev-parse', '--short', sha).out;
  const subject = git(root, 'log', '-1', '--format=%s', sha).out;
  const key = buildKey(root, sha);
  const dir = cache ? join(CACHE_DIR, key) : join(work, `against-${short}`);
  const side = { ref, sha, short, subject, dir, lib: join(dir, '.bench-lib'), label: `RestPipe@${ref}`, cached: false, install: '', buildSeconds: 0 };

  if (cache) tidyCache(root, key);
  if (cache && isBuilt(dir, key)) {
    side.cached = true;
    const now = new Date();
    utimesSync(join(dir, MARK), now, now);
    log(`  ${ref} = ${short} "${subject}": built before (the same files outside bench/ and docs/), in ${dir}`);
  } else {
    const t0 = performance.now();
    const tmp = `${dir}.build-${process.pid}`;
    const logFile = join(work, `against-${short}-build.log`);
    mkdirSync(dirname(tmp), { recursive: true });
    rmSync(tmp, { recursive: true, force: true });
    log(`  ${ref} = ${short} "${subject}": git worktree add --detach ${tmp}`);
    const add = git(root, 'worktree', 'add', '--detach', tmp, sha);
    if (!add.ok) throw new Error(`git worktree add failed: ${add.err}`);
    pending.set(tmp, root);
    try {
      // Optimisation commits rarely touch the lock file: then today's
      // node_modules is the same install, and copying it (workspace links are
      // relative, so they point into the copy) takes seconds, not minutes.
      const sameLock =
        existsSync(join(root, 'node_modules')) &&
        readFileSync(join(root, 'package-lock.json'), 'utf8') === readFileSync(join(tmp, 'package-lock.json'), 'utf8');
      if (sameLock) {
        side.install = "node_modules copied from today's tree, same package-lock.json";
        log(`  same package-lock.json as today's tree: copying its node_modules`);
        await run('cp', ['-a', '--reflink=auto', join(root, 'node_modules'), tmp], { cwd: tmp, logFile });
      } else {
        side.install = 'npm ci';
        log("  package-lock.json differs from today's: npm ci --prefer-offline --no-audit --no-fund");
        await run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: tmp, logFile });
      }
      log('  npm run build');
      await run('npm', ['run', 'build'], { cwd: tmp, logFile });
      for (const script of ['server/dist/cli.js', 'client/dist/cli.js'])
        if (!existsSync(join(tmp, script))) throw new Error(`${ref} has no ${script} after "npm run build"`);
      if (cache && isBuilt(dir, key)) {
        // Another run built the same commit meanwhile: use that one.
        removeWorktree(root, tmp);
        pending.delete(tmp);
        side.cached = true;
      } else {
        // Keep the built files, drop the worktree: the tree moves to its place,
        // and git removes the worktree, of which only its .git file is left.
        rmSync(dir, { recursive: true, force: true });
        renameSync(tmp, dir);
        mkdirSync(tmp);
        renameSync(join(dir, '.git'), join(tmp, '.git'));
        removeWorktree(root, tmp);
        pending.delete(tmp);
        writeFileSync(join(dir, MARK), `${key}\n`);
      }
    } catch (err) {
      const t = tail(logFile);
      if (t) log(`  last lines of ${logFile}:\n${t.replace(/^/gm, '    ')}`);
      await discardPending();
      throw err;
    }
    side.buildSeconds = (performance.now() - t0) / 1000;
    log(`  built in ${side.buildSeconds.toFixed(0)} s (${side.install}); worktree removed; the built tree is in ${dir}${cache ? '' : ' until the run ends'}`);
  }
  // Today's bench handlers and probe, resolving @restpipe/* from that tree.
  rmSync(side.lib, { recursive: true, force: true });
  cpSync(join(root, 'bench/lib'), side.lib, { recursive: true });
  for (const script of ['server/dist/cli.js', 'client/dist/cli.js'])
    if (!existsSync(join(dir, script))) throw new Error(`${ref}: ${script} is missing in ${dir}`);
  return side;
}
