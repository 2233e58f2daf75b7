// Small helpers shared by the bench scripts: ports, child processes, waiting,
// memory of a process from /proc, medians and formatting.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export { sleep };

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves when something accepts TCP connections on host:port. */
export async function waitForPort(port, host = '127.0.0.1', timeoutMs = 15_000, what = `port ${port}`) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ port, host });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`${what} did not open within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Polls `check` (sync or async) until truthy; returns its value. */
export async function waitUntil(check, { timeoutMs = 30_000, intervalMs = 50, what = 'condition' } = {}) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

const children = new Set();
/** Children that exited without the bench stopping them. */
export const unexpectedExits = [];

/**
 * Spawns a child and remembers it so `killAll()` can stop every child this
 * bench started (by pid, never by name). stdout/stderr go to a ring buffer
 * shown when the child dies unexpectedly.
 */
export function startChild(name, command, args, { env = process.env, ipc = false, cwd, quiet = true } = {}) {
  const child = spawn(command, args, {
    env,
    cwd,
    stdio: ['ignore', 'pipe', 'pipe', ...(ipc ? ['ipc'] : [])],
  });
  child.benchName = name;
  child.tail = [];
  const keep = (buf) => {
    const lines = buf.toString().split('\n').filter(Boolean);
    child.tail.push(...lines);
    if (child.tail.length > 40) child.tail.splice(0, child.tail.length - 40);
    if (!quiet) for (const l of lines) process.stderr.write(`  [${name}] ${l}\n`);
  };
  child.on('error', (err) => child.tail.push(`(child process error: ${err.message})`));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.on('exit', (code, signal) => {
    children.delete(child);
    if (!child.expectedExit) {
      const msg = `${name} exited unexpectedly (${signal ?? `code ${code}`})`;
      unexpectedExits.push(msg);
      process.stderr.write(`  ! ${msg}; last output:\n${child.tail.map((l) => `    ${l}`).join('\n')}\n`);
    }
  });
  children.add(child);
  return child;
}

/** Stops one child: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child, { signal = 'SIGTERM', graceMs = 5000 } = {}) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.expectedExit = true;
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await child.exited;
  clearTimeout(t);
}

export async function killAll() {
  await Promise.all([...children].map((c) => stopChild(c, { graceMs: 2000 })));
}

/** Sends an IPC request to a child speaking the {id, cmd} / {id, result|error} protocol. */
let nextId = 1;
export function ask(child, cmd, args = {}, timeoutMs = 120_000) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const onMsg = (m) => {
      if (!m || m.id !== id) return;
      cleanup();
      if (m.error) reject(new Error(`${child.benchName}: ${m.error}`));
      else resolve(m.result);
    };
    const onExit = () => {
      cleanup();
      reject(new Error(`${child.benchName} exited during "${cmd}"`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${child.benchName}: "${cmd}" timed out`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMsg);
      child.off('exit', onExit);
    };
    child.on('message', onMsg);
    child.once('exit', onExit);
    if (!child.connected) {
      cleanup();
      reject(new Error(`${child.benchName} is gone (asked "${cmd}")`));
      return;
    }
    child.send({ id, cmd, ...args }, (err) => {
      if (err) {
        cleanup();
        reject(new Error(`${child.benchName}: cannot send "${cmd}": ${err.message}`));
      }
    });
  });
}

/** VmRSS / VmHWM of a process, in bytes (undefined when gone). */
export function procMem(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

/** Samples the RSS of some pids every `everyMs` until `stop()`; returns peaks. */
export function rssSampler(pids, everyMs = 25) {
  const peak = Object.fromEntries(pids.map((p) => [p, 0]));
  const t = setInterval(() => {
    for (const p of pids) {
      const m = procMem(p);
      if (m && m.rss > peak[p]) peak[p] = m.rss;
    }
  }, everyMs);
  return {
    stop() {
      clearInterval(t);
      return peak;
    },
  };
}

export function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** Percentile of an ascending-sorted array (nearest rank). */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return '–';
  if (Math.abs(n) >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (Math.abs(n) >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (Math.abs(n) >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${Math.round(n)} B`;
}

/** Decimal megabytes (the unit of the idle-traffic target). */
export function fmtMB(n) {
  return Number.isFinite(n) ? `${(n / 1e6).toFixed(2)} MB` : '–';
}

export function fmtNum(n, digits = 0) {
  if (!Number.isFinite(n)) return '–';
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function fmtMs(n) {
  if (!Number.isFinite(n)) return '–';
  return n < 10 ? n.toFixed(3) : n < 100 ? n.toFixed(2) : n.toFixed(1);
}

export function fmtRatio(n) {
  return Number.isFinite(n) ? `${n.toFixed(2)}×` : '–';
}

/** Which executable is on PATH (or undefined). */
export function which(cmd) {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = `${dir}/${cmd}`;
    if (dir && existsSync(p)) return p;
  }
  for (const dir of ['/usr/sbin', '/sbin', '/usr/local/sbin']) {
    const p = `${dir}/${cmd}`;
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Output of a command (stdout, else stderr, as some tools print versions there), or undefined when it cannot run. */
export function tryExec(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 30 });
  if (r.error) return undefined;
  return r.stdout || r.stderr || '';
}

/** Simple markdown table. */
export function mdTable(header, rows) {
  const out = [`| ${header.join(' | ')} |`, `|${header.map((_h, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) out.push(`| ${r.join(' | ')} |`);
  return out.join('\n');
}

/** Same table, aligned for a terminal. */
export function textTable(header, rows) {
  const all = [header, ...rows].map((r) => r.map(String));
  const w = header.map((_, i) => Math.max(...all.map((r) => r[i]?.length ?? 0)));
  const line = (r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(all[0]), w.map((n) => '─'.repeat(n)).join('  '), ...all.slice(1).map(line)].join('\n');
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function procCpu(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}
const CLOCK_TICKS = Number(tryExec('getconf', ['CLK_TCK'])?.trim()) || 100;

// ------------------------------------------------------------------------
// Other load on the machine. The bench shares the box with whatever else
// runs (test suites of other checkouts, builds): it measures the CPU time the
// machine spent outside this bench's process tree, so a noisy measurement can
// be flagged, and it can wait for a quiet moment before each load.

function readStat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // state ppid ... utime(11) stime(12) cutime(13) cstime(14)
    return { ppid: Number(f[1]), own: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) };
  } catch {
    return undefined;
  }
}

/** CPU ticks used by this process tree so far (live descendants and reaped children). */
function treeTicks() {
  const all = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(d);
    if (st) all.set(Number(d), st);
  }
  const kids = new Map();
  for (const [pid, st] of all) {
    if (!kids.has(st.ppid)) kids.set(st.ppid, []);
    kids.get(st.ppid).push(pid);
  }
  let ticks = 0;
  const stack = [process.pid];
  while (stack.length) {
    const pid = stack.pop();
    const st = all.get(pid);
    if (!st) continue;
    ticks += st.own + (pid === process.pid ? st.children : 0);
    for (const k of kids.get(pid) ?? []) stack.push(k);
  }
  // Reaped grandchildren count in their parent's cutime; a live child's own
  // cutime is added too (e.g. nginx workers a master has reaped).
  for (const k of kids.get(process.pid) ?? []) ticks += all.get(k)?.children ?? 0;
  return ticks;
}

function machineTicks() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return line[0] + line[1] + line[2] + line[5] + line[6] + (line[7] ?? 0);
}

/** A snapshot to measure foreign CPU between now and `.cores()`. */
export function foreignCpu() {
  const m0 = machineTicks();
  const t0 = treeTicks();
  const w0 = performance.now();
  return {
    /** Average cores used by processes outside the bench since the snapshot. */
    cores() {
      const secs = (performance.now() - w0) / 1000;
      if (secs <= 0) return 0;
      return Math.max(0, (machineTicks() - m0 - (treeTicks() - t0)) / CLOCK_TICKS / secs);
    },
  };
}

/**
 * Waits (up to `maxMs`) until processes outside the bench use less than
 * `threshold` cores over a `windowMs` window. Returns the last window's figure.
 */
export async function waitQuiet({ threshold = 0.15, maxMs = 30_000, windowMs = 500 } = {}) {
  const until = Date.now() + maxMs;
  for (;;) {
    const f = foreignCpu();
    await sleep(windowMs);
    const c = f.cores();
    if (c < threshold || Date.now() > until) return c;
  }
}
