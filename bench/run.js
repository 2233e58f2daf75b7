#!/usr/bin/env node
// RestPipe benchmarks, side by side on one machine in one run:
//   direct   autocannon → Fastify origin (/time)
//   nginx    autocannon → nginx (upstream keepalive) → origin
//   stunnel  autocannon → stunnel4 client ═mTLS═ stunnel4 server → origin
//   rp c→s   autocannon → client gateway ═pipe═ server handler (get_time)
//   rp s→c   autocannon → server gateway ═pipe═ client handler (get_time)
// plus transfers through the pipe vs stunnel, idle agents at scale vs a bare
// Node mutual-TLS server, and a CPU profile of both RestPipe nodes.
//
//   npm run bench                       the whole default run (~10 min)
//   npm run bench -- --agents 1000,5000,10000
//   npm run bench -- --quick            a short smoke run (bench/out/)
//   npm run bench -- --against HEAD~1   today's RestPipe paths against a build of HEAD~1
//   npm run bench -- --help
//
// It is a measuring script, not a test: targets are reported, never asserted.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBenchIdentities, signAgentCertificates, LOAD_CLIENT_NAME } from './lib/identities.js';
import { clusterSection } from './lib/cluster.js';
import { discardPending, prepareAgainst } from './lib/against.js';
import { startClient, startServer } from './lib/nodes.js';
import { summarizeProfile } from './lib/profile.js';
import { nginxBinary, nginxVersion, startNginx, startStunnel, stunnelBinary, stunnelVersion } from './lib/tunnels.js';
import {
  GiB,
  MiB,
  ask,
  fmtBytes,
  fmtMB,
  fmtMs,
  fmtNum,
  fmtRatio,
  freePort,
  killAll,
  mdTable,
  median,
  procCpu,
  procMem,
  rssSampler,
  sleep,
  startChild,
  stopChild,
  textTable,
  unexpectedExits,
  foreignCpu,
  waitQuiet,
  tryExec,
  waitForPort,
  waitUntil,
} from './lib/util.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);

// ---------------------------------------------------------------- options
const HELP = `usage: npm run bench -- [options]

  --rounds N             rounds of the closed-loop and fixed-rate loads (3); medians reported
  --duration S           seconds measured per closed-loop load (4), after --warmup S (1)
  --conns LIST           connection counts (1,16,64)
  --rate R               fixed rate for the added-latency test, req/s (1000)
  --rate-seconds S       seconds per fixed-rate load (5)
  --paths LIST           direct,nginx,stunnel,rp-c2s,rp-s2c
  --stream-total BYTES   bytes per direction through the pipe and stunnel (1GiB)
  --stream-request BYTES bytes per request while bodies are buffered (64MiB)
  --agents LIST          idle agent counts (1000,5000); "none" skips; 10000 is opt-in
  --agents-per-process N agents per fleet process (2500)
  --storms N             restart storms per agent count (1): the server killed and started
                         again N times with the same agents; the slowest is the target's figure
  --server-env LIST      RP_ settings for the agents section's RestPipe server, K=V,K=V
                         (to try a setting against the defaults; named in the section heading)
  --idle-window S        seconds of idle traffic measured per agent count (20)
  --profile-seconds S    seconds of CPU profile under load (8); 0 skips
  --quiet-wait S         before each load, wait up to S s for other processes to leave the CPU (20); 0 never waits
  --cluster-conns N      connections of the cluster section's closed-loop load (64)
  --cluster-agents N     agents on the instance the cluster section kills (1000); 0 skips
  --only LIST / --skip LIST   sections: throughput,latency,stream,agents,profile,cluster
  --retakes N            take a load again up to N times when other processes disturbed it (1)
  --quick                1 round, short loads, 300 agents, 256 MiB streams (smoke run)
  --against REF          also run the RestPipe paths of REF (a git ref, built in a temporary
                         worktree) interleaved with today's, and report new/old ratios; defaults
                         then to --paths rp-c2s,rp-s2c and --only throughput,latency,stream
                         (--quick with it: 2 rounds, --quiet-wait 1, --retakes 0, 128 MiB streams)
  --no-cache             with --against: build REF afresh, keep no built tree
  --out FILE             report file (docs/benchmarks.md for a full run, else bench/out/benchmarks.md)
  --no-write             print only`;
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(HELP);
  process.exit(0);
}

function opt(name, fallback) {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
  return v;
}
function parseBytes(s) {
  const m = /^(\d+(?:\.\d+)?)\s*(|b|k|kib|m|mib|g|gib)$/i.exec(String(s).trim());
  if (!m) throw new Error(`not a size: ${s}`);
  const mult = { '': 1, b: 1, k: 1024, kib: 1024, m: MiB, mib: MiB, g: GiB, gib: GiB }[m[2].toLowerCase()];
  return Math.round(Number(m[1]) * mult);
}
const list = (s) =>
  String(s)
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
const quick = argv.includes('--quick');
const againstRef = opt('against', undefined);
const quickAgainst = quick && againstRef !== undefined;
const o = {
  rounds: Number(opt('rounds', quickAgainst ? 2 : quick ? 1 : 3)),
  duration: Number(opt('duration', quick ? 2 : 4)),
  warmup: Number(opt('warmup', 1)),
  conns: list(opt('conns', quick ? '1,16' : '1,16,64')).map(Number),
  rate: Number(opt('rate', 1000)),
  rateSeconds: Number(opt('rate-seconds', quick ? 2 : 5)),
  paths: list(opt('paths', againstRef !== undefined ? 'rp-c2s,rp-s2c' : 'direct,nginx,stunnel,rp-c2s,rp-s2c')),
  streamTotal: parseBytes(opt('stream-total', quickAgainst ? '128MiB' : quick ? '256MiB' : '1GiB')),
  streamRequest: parseBytes(opt('stream-request', '64MiB')),
  agents: opt('agents', quick ? '300' : '1000,5000') === 'none' ? [] : list(opt('agents', quick ? '300' : '1000,5000')).map(Number),
  perProcess: Number(opt('agents-per-process', 2500)),
  serverEnv: Object.fromEntries(
    list(opt('server-env', '')).map((kv) => {
      const i = kv.indexOf('=');
      if (i < 1 || !kv.startsWith('RP_')) throw new Error(`--server-env wants NAME=value pairs, each NAME an RP_ setting: ${kv}`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
  ),
  storms: Math.max(1, Number(opt('storms', 1))),
  idleWindow: Number(opt('idle-window', quick ? 6 : 20)),
  profileSeconds: Number(opt('profile-seconds', quick ? 3 : 8)),
  quietWait: Number(opt('quiet-wait', quickAgainst ? 1 : 20)),
  retakes: Number(opt('retakes', quickAgainst ? 0 : 1)),
  clusterConns: Number(opt('cluster-conns', 64)),
  clusterAgents: Number(opt('cluster-agents', quick ? 200 : 1000)),
};
const ALL_SECTIONS = ['throughput', 'latency', 'stream', 'agents', 'profile', 'cluster'];
const only = opt('only', againstRef !== undefined ? 'throughput,latency,stream' : undefined);
const skip = list(opt('skip', ''));
const sections = new Set((only ? list(only) : ALL_SECTIONS).filter((s) => !skip.includes(s)));
const fullRun = !quick && !only && skip.length === 0 && !argv.includes('--paths') && againstRef === undefined;
const outFile = argv.includes('--no-write') ? undefined : opt('out', fullRun ? join(root, 'docs/benchmarks.md') : join(root, 'bench/out/benchmarks.md'));
const command = `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`;

// ------------------------------------------------- file descriptors (ulimit)
const maxAgents = Math.max(0, ...o.agents);
const needFds = maxAgents + 4096;
if (sections.has('agents') && maxAgents > 0 && !process.env.RESTPIPE_BENCH_ULIMIT) {
  const soft = Number(tryExec('/bin/sh', ['-c', 'ulimit -n'])?.trim());
  if (Number.isFinite(soft) && soft < needFds) {
    // Node cannot setrlimit: re-run under a shell that raises it (root may raise the hard limit too).
    const want = Math.max(needFds, 65536);
    const r = spawnSync(
      '/bin/sh',
      [
        '-c',
        `ulimit -n ${want} 2>/dev/null || ulimit -n $(ulimit -Hn); exec "$0" "$@"`,
        process.execPath,
        ...process.execArgv,
        fileURLToPath(import.meta.url),
        ...argv,
      ],
      {
        stdio: 'inherit',
        env: { ...process.env, RESTPIPE_BENCH_ULIMIT: '1' },
      },
    );
    process.exit(r.status ?? 1);
  }
}
const fdLimit = Number(tryExec('/bin/sh', ['-c', 'ulimit -n'])?.trim());

// ------------------------------------------------------------------ setup
const work = join(os.tmpdir(), `restpipe-bench-${process.pid}`);
const outDir = join(root, 'bench/out');
mkdirSync(work, { recursive: true });
mkdirSync(outDir, { recursive: true });
const started = Date.now();
const notes = [];
const log = (s) => console.log(s);
const step = (s) => console.log(`\n▸ ${s}`);

/**
 * Runs one measurement when the machine is quiet, and records how many cores
 * processes outside the bench used meanwhile; a measurement disturbed by more
 * than 0.3 cores is taken again (--retakes times, once by default).
 */
const disturbed = [];
async function measured(what, fn) {
  for (let attempt = 0; ; attempt++) {
    if (o.quietWait > 0) await waitQuiet({ maxMs: o.quietWait * 1000 });
    const f = foreignCpu();
    const r = await fn();
    r.foreign = f.cores();
    if (r.foreign <= 0.3) return r;
    if (attempt >= o.retakes) {
      disturbed.push(`${what} (${r.foreign.toFixed(2)} cores)`);
      return r;
    }
    log(`  (other processes used ${r.foreign.toFixed(2)} cores during ${what}; measuring it again)`);
  }
}

let cleaning = false;
async function cleanup(code) {
  if (cleaning) return;
  cleaning = true;
  await killAll();
  await discardPending();
  rmSync(work, { recursive: true, force: true });
  if (code !== undefined) process.exit(code);
}
process.on('SIGINT', () => cleanup(130));
for (const ev of ['uncaughtException', 'unhandledRejection']) {
  process.on(ev, (err) => {
    console.error(`\nbench crashed: ${err?.stack ?? err}`);
    cleanup(1);
  });
}
process.on('SIGTERM', () => cleanup(143));

for (const script of ['server/dist/cli.js', 'client/dist/cli.js']) {
  if (!existsSync(join(root, script))) {
    console.error(`${script} is missing: run "npm run build" first (npm run bench does).`);
    process.exit(1);
  }
}

const machine = describeMachine();
step(`machine: ${machine.cpu}, ${machine.cores} cores, ${fmtBytes(machine.memory)}, ${machine.os}, Node ${process.versions.node}`);
log(`  nginx: ${machine.nginx ?? 'MISSING (apt-get install nginx) — nginx path skipped'}`);
log(`  stunnel: ${machine.stunnel ?? 'MISSING (apt-get install stunnel4) — stunnel paths skipped'}`);
log(`  open files limit: ${fdLimit}`);
log(`  options: ${JSON.stringify(o)} sections: ${[...sections].join(',')}`);

// The other side of --against: REF built in a temporary worktree (lib/against.js).
let against;
if (againstRef !== undefined) {
  step(`against ${againstRef}: a build of it in a temporary git worktree`);
  try {
    against = await prepareAgainst({ root, ref: againstRef, work, cache: !argv.includes('--no-cache'), log });
  } catch (err) {
    console.error(`\nbench failed: cannot build ${againstRef}: ${err.message}`);
    await cleanup(1);
  }
  for (const s of ['agents', 'profile'])
    if (sections.has(s)) notes.push(`The ${s} section measures today's tree only; --against compares throughput, latency and streaming.`);
}

step('identities (certs-tool: CA, server, bench-client)');
const ids = await createBenchIdentities(join(work, 'ids'));

const results = { throughput: [], latency: [], stream: undefined, agents: [], profile: undefined, checks: [] };
let labelWidth = 24;
const loader = startChild('loader', process.execPath, [join(root, 'bench/lib/loader.js')], { ipc: true });

try {
  const needPaths = sections.has('throughput') || sections.has('latency') || sections.has('profile');
  let paths = [];
  if (needPaths) paths = await startPaths();
  if (sections.has('throughput')) await throughput(paths);
  if (sections.has('latency')) await fixedRate(paths);
  if (sections.has('profile') && o.profileSeconds > 0) await profile(paths);
  for (const p of paths) for (const c of p.children ?? []) await stopChild(c);
  if (sections.has('stream')) await streaming();
  if (sections.has('agents')) for (const n of o.agents) await agents(n);
  if (sections.has('cluster')) {
    await clusterSection({
      root,
      ids,
      o,
      log,
      step,
      loader,
      measured,
      loadClientName: LOAD_CLIENT_NAME,
      results,
      signAgentCertificates,
      startFleets,
    });
  }
} catch (err) {
  console.error(`\nbench failed: ${err.stack ?? err}`);
  notes.push(`The run stopped early: ${String(err.message ?? err).split('\n')[0]}`);
  process.exitCode = 1;
}
await stopChild(loader);
const seconds = (Date.now() - started) / 1000;
if (disturbed.length)
  notes.push(
    `Other processes on the machine used more than 0.3 cores during ${disturbed.length} measurement(s), even when taken again: ${disturbed.join('; ')}.`,
  );
for (const e of unexpectedExits) notes.push(`A process ${e}; figures measured after that are not valid.`);
report(seconds);
await cleanup();

// ------------------------------------------------------------ the paths
async function startPaths() {
  step('starting the origin, nginx, stunnel and the RestPipe nodes');
  // The direct path is always measured, except with --against when --paths leaves it out.
  const wantDirect = !against || o.paths.includes('direct');
  const paths = [];
  let originPort;
  let origin;
  if (wantDirect || o.paths.includes('nginx') || o.paths.includes('stunnel')) {
    originPort = await freePort();
    origin = startChild('origin', process.execPath, [join(root, 'bench/lib/origin.js')], { env: { ...process.env, ORIGIN_PORT: String(originPort) } });
    await waitForPort(originPort, '127.0.0.1', 10_000, 'origin');
    if (wantDirect) paths.push({ id: 'direct', label: 'direct (Fastify)', url: `http://127.0.0.1:${originPort}/time`, children: [origin], pids: [origin.pid] });
  }

  if (o.paths.includes('nginx')) {
    if (!nginxBinary()) notes.push('nginx is not installed (apt-get install nginx): the nginx path was skipped.');
    else {
      const port = await freePort();
      const nginx = await startNginx(work, { listenPort: port, originPort });
      const workers =
        tryExec('pgrep', ['-P', String(nginx.pid)])
          ?.trim()
          .split('\n')
          .filter(Boolean)
          .map(Number) ?? [];
      paths.push({
        id: 'nginx',
        label: 'nginx hop',
        url: `http://127.0.0.1:${port}/time`,
        children: [nginx, origin],
        pids: [nginx.pid, ...workers, origin.pid],
      });
    }
  }
  if (o.paths.includes('stunnel')) {
    if (!stunnelBinary()) notes.push('stunnel4 is not installed (apt-get install stunnel4): the stunnel paths were skipped.');
    else {
      const [clientPort, serverPort] = [await freePort(), await freePort()];
      const st = await startStunnel(work, ids, { clientPort, serverPort, originPort });
      paths.push({
        id: 'stunnel',
        label: 'stunnel mTLS tunnel',
        url: `http://127.0.0.1:${clientPort}/time`,
        children: [st.client, st.server, origin],
        pids: [st.client.pid, st.server.pid, origin.pid],
      });
    }
  }
  if (o.paths.includes('rp-c2s') || o.paths.includes('rp-s2c')) {
    // Today's nodes, and with --against the other tree's nodes beside them:
    // each of its paths follows today's of the same direction.
    const trees = [{ tree: root, lib: join(root, 'bench/lib'), name: 'restpipe', label: 'RestPipe', suffix: '' }];
    if (against) trees.push({ tree: against.dir, lib: against.lib, name: `restpipe@${against.short}`, label: against.label, suffix: '@ref' });
    const started = [];
    for (const t of trees) {
      const [pipePort, sgw, cgw] = [await freePort(), await freePort(), await freePort()];
      const server = await startServer(t.tree, ids, { pipePort, gatewayPort: sgw, lib: t.lib, name: `${t.name}-server` });
      const client = await startClient(t.tree, ids, { pipePort, gatewayPort: cgw, lib: t.lib, name: `${t.name}-client` });
      started.push({ ...t, server, client, sgw, cgw });
    }
    for (const dir of ['rp-c2s', 'rp-s2c']) {
      if (!o.paths.includes(dir)) continue;
      for (const t of started) {
        const { server, client } = t;
        const c2s = dir === 'rp-c2s';
        paths.push({
          id: `${dir}${t.suffix}`,
          label: `${t.label} ${c2s ? 'client→server' : 'server→client'}`,
          url: c2s ? `http://127.0.0.1:${t.cgw}/server/time` : `http://127.0.0.1:${t.sgw}/client/${LOAD_CLIENT_NAME}/time`,
          children: [client, server],
          pids: c2s ? [client.pid, server.pid] : [server.pid, client.pid],
          nodes: { server, client },
          ...(t.suffix ? { twinOf: dir, old: true } : {}),
        });
      }
    }
  }
  labelWidth = Math.max(24, ...paths.map((p) => p.label.length));
  // Every path answers the same handler.
  for (const p of paths) {
    const res = await fetch(p.url);
    const body = await res.text();
    const ok = res.ok && /"time_from_(server|client)":\d/.test(body);
    results.checks.push({ path: p.id, status: res.status, body });
    log(`  ${p.label.padEnd(labelWidth)} ${p.url}  → ${res.status} ${body}${ok ? '' : '  ✗ unexpected'}`);
    if (!ok) throw new Error(`${p.label} does not answer /time correctly`);
  }
  return paths;
}

/**
 * The paths in the order of round r: rotating from round to round as units,
 * where a unit is one path, or a RestPipe path with its --against twin right
 * beside it (today's first in rounds 1, 3, …, the other tree's first in rounds 2, 4, …).
 */
function roundOrder(paths, r) {
  const units = [];
  for (const p of paths) {
    if (p.twinOf) continue;
    const twin = paths.find((q) => q.twinOf === p.id);
    units.push(!twin ? [p] : r % 2 ? [twin, p] : [p, twin]);
  }
  return units.flatMap((_, i) => units[(i + r) % units.length]);
}

// ------------------------------------------------------------ throughput
async function throughput(paths) {
  step(`closed-loop load: ${o.conns.join('/')} connections × ${paths.length} paths × ${o.rounds} rounds, ${o.duration} s each (+${o.warmup} s warm-up)`);
  const runs = new Map();
  for (let r = 0; r < o.rounds; r++) {
    for (const c of o.conns) {
      // Alternate the order of the paths from round to round.
      for (const p of roundOrder(paths, r)) {
        const res = await measured(`${p.label} at ${c} connections`, () =>
          ask(loader, 'closed', { url: p.url, connections: c, seconds: o.duration, warmupSeconds: o.warmup }),
        );
        const k = `${p.id}/${c}`;
        if (!runs.has(k)) runs.set(k, []);
        runs.get(k).push(res);
        log(
          `  round ${r + 1} c=${String(c).padStart(3)} ${p.label.padEnd(labelWidth)} ${fmtNum(res.rps).padStart(7)} req/s  p50 ${fmtMs(res.p50)} ms  p99 ${fmtMs(res.p99)} ms${res.non2xx || res.errors ? `  (non-2xx ${res.non2xx}, errors ${res.errors})` : ''}${res.foreign > 0.1 ? `  [others used ${res.foreign.toFixed(2)} cores]` : ''}`,
        );
      }
    }
  }
  for (const c of o.conns) {
    for (const p of paths) {
      const rs = runs.get(`${p.id}/${c}`) ?? [];
      results.throughput.push({
        path: p.id,
        label: p.label,
        twinOf: p.twinOf,
        old: p.old,
        conns: c,
        rps: median(rs.map((x) => x.rps)),
        p50: median(rs.map((x) => x.p50)),
        p99: median(rs.map((x) => x.p99)),
        rounds: rs.map((x) => x.rps),
        foreign: rs.map((x) => x.foreign),
        bad: rs.reduce((a, x) => a + x.non2xx + x.errors, 0),
      });
    }
  }
}

async function fixedRate(paths) {
  step(`fixed rate: ${o.rate} req/s open loop × ${paths.length} paths × ${o.rounds} rounds, ${o.rateSeconds} s each (+1 s warm-up)`);
  const runs = new Map();
  for (let r = 0; r < o.rounds; r++) {
    for (const p of roundOrder(paths, r)) {
      const res = await measured(`${p.label} at ${o.rate} req/s`, () =>
        ask(loader, 'rate', { url: p.url, rate: o.rate, seconds: o.rateSeconds, warmupSeconds: 1, connections: 32 }),
      );
      if (!runs.has(p.id)) runs.set(p.id, []);
      runs.get(p.id).push(res);
      log(
        `  round ${r + 1} ${p.label.padEnd(labelWidth)} ${fmtNum(res.achievedRps)} req/s  p50 ${fmtMs(res.p50)} ms  p99 ${fmtMs(res.p99)} ms  p99.9 ${fmtMs(res.p999)} ms${res.non2xx || res.errors ? `  (non-2xx ${res.non2xx}, errors ${res.errors})` : ''}${res.foreign > 0.1 ? `  [others used ${res.foreign.toFixed(2)} cores]` : ''}`,
      );
    }
  }
  for (const p of paths) {
    const rs = runs.get(p.id) ?? [];
    results.latency.push({
      path: p.id,
      label: p.label,
      twinOf: p.twinOf,
      old: p.old,
      roundsP50: rs.map((x) => x.p50),
      roundsP99: rs.map((x) => x.p99),
      foreign: rs.map((x) => x.foreign),
      p50: median(rs.map((x) => x.p50)),
      p99: median(rs.map((x) => x.p99)),
      p999: median(rs.map((x) => x.p999)),
      achieved: median(rs.map((x) => x.achievedRps)),
      bad: rs.reduce((a, x) => a + x.non2xx + x.errors, 0),
    });
  }
}

// --------------------------------------------------------------- profile
async function profile(paths) {
  const rp = paths.find((p) => p.id === 'rp-c2s') ?? paths.find((p) => p.id === 'rp-s2c');
  if (!rp) return;
  const conns = 64;
  step(`CPU profile of both RestPipe nodes: ${rp.label}, ${conns} connections, ${o.profileSeconds} s`);
  const { server, client } = rp.nodes;
  let sp;
  let cp;
  const load = await measured('the profiled load', async () => {
    await Promise.all([ask(server, 'profile-start', { intervalUs: 250 }), ask(client, 'profile-start', { intervalUs: 250 })]);
    const x = await ask(loader, 'closed', { url: rp.url, connections: conns, seconds: o.profileSeconds, warmupSeconds: 0 });
    [sp, cp] = await Promise.all([ask(server, 'profile-stop'), ask(client, 'profile-stop')]);
    return x;
  });
  const sFile = join(outDir, 'server.cpuprofile');
  const cFile = join(outDir, 'client.cpuprofile');
  writeFileSync(sFile, JSON.stringify(sp));
  writeFileSync(cFile, JSON.stringify(cp));
  results.profile = {
    path: rp.label,
    conns,
    seconds: o.profileSeconds,
    rps: load.rps,
    server: summarizeProfile(sp, root, { top: 25 }),
    client: summarizeProfile(cp, root, { top: 25 }),
    files: [relative(root, sFile), relative(root, cFile)],
  };
  log(`  under profiling: ${fmtNum(load.rps)} req/s; profiles in ${relative(root, outDir)}/ (open in Chrome DevTools or speedscope)`);
  for (const side of ['client', 'server']) {
    const s = results.profile[side];
    log(
      `  ${side}: busy ${fmtNum(s.busyMs)} of ${fmtNum(s.totalMs)} ms sampled; by area: ${s.areas
        .slice(0, 8)
        .map((a) => `${a.area} ${a.pctBusy.toFixed(0)}%`)
        .join(', ')}`,
    );
  }
}

// ------------------------------------------------------------- streaming
function streamingAvailable(tree = root) {
  // Streamed bodies arrived with shared/src/streams.ts (commit 917e001), which moved to shared/src/pipe/ with the pipe parts.
  return existsSync(join(tree, 'shared/dist/streams.js')) || existsSync(join(tree, 'shared/dist/pipe/streams.js'));
}

/** How a tree moves `o.streamTotal` bytes: streamed in one request, or buffered in several. */
function transferPlan(tree) {
  const streamed = streamingAvailable(tree);
  const per = streamed ? o.streamTotal : Math.min(o.streamRequest, o.streamTotal);
  const count = Math.max(1, Math.round(o.streamTotal / per));
  const env = streamed
    ? {}
    : {
        BENCH_BUFFERED: '1',
        RP_MAX_BODY_BYTES: String(per),
        RP_MAX_FRAME_BYTES: String(per + MiB),
        RP_REQUEST_TIMEOUT_S: '600',
        RP_REQUEST_TIMEOUT_MAX_S: '600',
      };
  return { mode: streamed ? 'streamed' : 'buffered', per, count, total: per * count, env };
}

/** One tree's transfers on fresh nodes (so their peak memory is this test's): upload, then download. */
async function restpipeTransfers(t, plan) {
  const { per, count, env } = plan;
  const [pipePort, sgw, cgw] = [await freePort(), await freePort(), await freePort()];
  const server = await startServer(t.tree, ids, { pipePort, gatewayPort: sgw, env, lib: t.lib, name: `${t.name}-server (stream)` });
  const client = await startClient(t.tree, ids, { pipePort, gatewayPort: cgw, env, lib: t.lib, name: `${t.name}-client (stream)` });
  const base = { client: procMem(client.pid).rss, server: procMem(server.pid).rss };
  const rows = [];
  for (const dir of ['upload', 'download']) {
    const url = dir === 'upload' ? `http://127.0.0.1:${cgw}/server/sink` : `http://127.0.0.1:${cgw}/server/blob?bytes=${per}`;
    let peak;
    const r = await measured(`${t.label} ${dir}`, async () => {
      const sampler = rssSampler([client.pid, server.pid]);
      const x = await ask(loader, 'transfer', { url, method: dir === 'upload' ? 'POST' : 'GET', requestBytes: per, count }, 1_800_000);
      peak = sampler.stop();
      return x;
    });
    rows.push({
      path: t.label,
      old: t.old,
      dir,
      ...r,
      mbps: r.bytes / MiB / r.seconds,
      peakA: peak[client.pid],
      peakB: peak[server.pid],
      baseA: base.client,
      baseB: base.server,
      names: ['client node', 'server node'],
    });
    log(
      `  ${t.label.padEnd(against ? against.label.length : 8)} ${dir.padEnd(8)} ${fmtBytes(r.bytes)} in ${r.seconds.toFixed(2)} s = ${fmtNum(r.bytes / MiB / r.seconds, 1)} MiB/s; peak RSS client ${fmtBytes(peak[client.pid])}, server ${fmtBytes(peak[server.pid])}  ${JSON.stringify(r.statuses)}`,
    );
  }
  await stopChild(client);
  await stopChild(server);
  return rows;
}

/** One row out of a tree's rounds for one direction: medians, statuses summed, the rounds kept. */
function mergeTransferRounds(rounds) {
  const statuses = {};
  for (const x of rounds) for (const [k, v] of Object.entries(x.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  const med = (k) => median(rounds.map((x) => x[k]));
  return {
    ...rounds[0],
    bytes: med('bytes'),
    seconds: med('seconds'),
    mbps: med('mbps'),
    peakA: med('peakA'),
    peakB: med('peakB'),
    baseA: med('baseA'),
    baseB: med('baseB'),
    statuses,
    rounds,
  };
}

async function streaming() {
  const trees = [{ tree: root, lib: join(root, 'bench/lib'), name: 'restpipe', label: 'RestPipe' }];
  if (against) trees.push({ tree: against.dir, lib: against.lib, name: `restpipe@${against.short}`, label: against.label, old: true });
  for (const t of trees) t.plan = transferPlan(t.tree);
  const { mode, per, count, total } = trees[0].plan;
  // With --against, both trees take turns for o.rounds rounds (the order
  // alternating per round), each round on fresh nodes; without, one round.
  const rounds = against ? o.rounds : 1;
  step(
    `transfers: ${fmtBytes(total)} each direction as ${count} × ${fmtBytes(per)} (${mode} bodies), ${trees.map((t) => t.label).join(' and ')}${rounds > 1 ? ` × ${rounds} rounds` : ''}${against && !o.paths.includes('stunnel') ? '' : ' vs stunnel'}`,
  );
  for (const t of trees) {
    if (t.plan.mode === 'streamed') continue;
    log(`  streaming: not available in ${t.label} — measuring buffered bodies (RP_MAX_BODY_BYTES raised) as an interim figure`);
    notes.push(
      `Streaming: not available in ${t.label === 'RestPipe' ? 'this build' : t.label}. Its transfer figures are an interim measurement of buffered bodies (each request/reply body held whole in memory, RP_MAX_BODY_BYTES raised), not of streaming.`,
    );
  }
  const out = { mode, per, count, total, rounds, rows: [] };
  results.stream = out;

  const byTree = new Map(trees.map((t) => [t, []]));
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? [...trees].reverse() : trees;
    for (const t of order) byTree.get(t).push(await restpipeTransfers(t, t.plan));
  }
  for (const t of trees) {
    const rs = byTree.get(t);
    for (const dir of ['upload', 'download']) out.rows.push(mergeTransferRounds(rs.map((x) => x.find((y) => y.dir === dir))));
  }

  // With --against, the stunnel baseline only when --paths asks for it.
  if (against && !o.paths.includes('stunnel')) return;
  if (!stunnelBinary()) {
    notes.push('stunnel4 is not installed: no stunnel transfer figures.');
    return;
  }
  const originPort = await freePort();
  const origin = startChild('origin (stream)', process.execPath, [join(root, 'bench/lib/origin.js')], {
    env: { ...process.env, ORIGIN_PORT: String(originPort) },
  });
  await waitForPort(originPort);
  const [clientPort, serverPort] = [await freePort(), await freePort()];
  const st = await startStunnel(work, ids, { clientPort, serverPort, originPort, tag: 'stunnel-stream' });
  const stBase = { client: procMem(st.client.pid).rss, server: procMem(st.server.pid).rss };
  for (const dir of ['upload', 'download']) {
    const url = dir === 'upload' ? `http://127.0.0.1:${clientPort}/sink` : `http://127.0.0.1:${clientPort}/blob?bytes=${per}`;
    let peak;
    const r = await measured(`stunnel ${dir}`, async () => {
      const sampler = rssSampler([st.client.pid, st.server.pid]);
      const x = await ask(loader, 'transfer', { url, method: dir === 'upload' ? 'POST' : 'GET', requestBytes: per, count }, 1_800_000);
      peak = sampler.stop();
      return x;
    });
    out.rows.push({
      path: 'stunnel',
      dir,
      ...r,
      mbps: r.bytes / MiB / r.seconds,
      peakA: peak[st.client.pid],
      peakB: peak[st.server.pid],
      baseA: stBase.client,
      baseB: stBase.server,
      names: ['client stunnel', 'server stunnel'],
    });
    log(
      `  stunnel  ${dir.padEnd(8)} ${fmtBytes(r.bytes)} in ${r.seconds.toFixed(2)} s = ${fmtNum(r.bytes / MiB / r.seconds, 1)} MiB/s; peak RSS client ${fmtBytes(peak[st.client.pid])}, server ${fmtBytes(peak[st.server.pid])}  ${JSON.stringify(r.statuses)}`,
    );
  }
  await stopChild(st.client);
  await stopChild(st.server);
  await stopChild(origin);
}

// ---------------------------------------------------------------- agents
function tcpCounters(port) {
  // Server-side sockets of the pipe: TCP payload bytes and segments, both ways.
  const out = tryExec('ss', ['-tinH', 'state', 'established', `( sport = :${port} )`]) ?? '';
  const sum = (k) => [...out.matchAll(new RegExp(`\\b${k}:(\\d+)`, 'g'))].reduce((a, m) => a + Number(m[1]), 0);
  return {
    sockets: out.split('\n').filter((l) => /^\S/.test(l)).length,
    sent: sum('bytes_sent'),
    received: sum('bytes_received'),
    segsOut: sum('segs_out'),
    segsIn: sum('segs_in'),
    dataSegs: sum('data_segs_out') + sum('data_segs_in'),
  };
}

/** Waits until no connection was added for `quietMs` (at most 60 s); returns the seconds waited. */
async function settle(server, quietMs = 5000) {
  const t0 = performance.now();
  let last = (await ask(server, 'clients')).added;
  let since = performance.now();
  while (performance.now() - since < quietMs && performance.now() - t0 < 60_000) {
    await sleep(500);
    const now = (await ask(server, 'clients')).added;
    if (now !== last) {
      last = now;
      since = performance.now();
    }
  }
  return (performance.now() - t0) / 1000;
}

/** Host-wide count of connections dropped because a listen queue was full. */
function listenOverflows() {
  const out = tryExec('nstat', ['-az', 'TcpExtListenOverflows']) ?? '';
  return Number(/TcpExtListenOverflows\s+(\d+)/.exec(out)?.[1] ?? NaN);
}

/**
 * Samples the storm once a second from the kill on: how many agents the
 * server holds and how many the fleets count as connected, the failed
 * attempts so far by kind, the handshakes done. `stop()` returns the samples.
 */
function stormTimeline(fleets, st0, t0, serverCount, serverLoop, serverQueue) {
  const samples = [];
  const ov0 = listenOverflows();
  let running = true;
  const loop = (async () => {
    while (running) {
      const next = performance.now() + 1000;
      try {
        const st = await Promise.all(fleets.map((f) => ask(f, 'status', {}, 5000)));
        const back = await serverCount().catch(() => '?');
        const sl = await serverLoop().catch(() => undefined);
        const serverLoopMs = sl?.maxMs ?? NaN;
        const queue = await serverQueue().catch(() => undefined);
        const hs = diffHandshakes(sumHandshakes(st), sumHandshakes(st0));
        samples.push({
          t: (performance.now() - t0) / 1000,
          back,
          connected: st.reduce((a, x) => a + x.connected, 0),
          kinds: diffKinds(st, st0),
          resumed: hs.resumed,
          full: hs.full,
          serverLoopMs,
          serverFds: sl?.fds,
          queue,
          overflows: listenOverflows() - ov0,
          fleetLoopMs: Math.max(...st.map((x) => x.loopMaxMs ?? NaN)),
        });
      } catch {
        // a fleet too busy to answer within 5 s: no sample this second
      }
      await sleep(Math.max(0, next - performance.now()));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return samples;
    },
  };
}

/** The counters of a RestPipe server's `/_restpipe/status`, or undefined. */
async function serverCounters(gatewayPort) {
  try {
    const r = await fetch(`http://127.0.0.1:${gatewayPort}/_restpipe/status`, { signal: AbortSignal.timeout(30_000) });
    return (await r.json()).counters;
  } catch {
    return undefined;
  }
}

/** The fleets' handshake counts (status → handshakes), added up. */
function sumHandshakes(statuses) {
  const sum = { resumed: 0, full: 0, failedResumed: 0, failedFull: 0 };
  for (const s of statuses) for (const k of Object.keys(sum)) sum[k] += s.handshakes?.[k] ?? 0;
  return sum;
}
function diffHandshakes(b, a) {
  return Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - a[k]]));
}
/** Failed attempts by kind between two sets of fleet statuses. */
function diffKinds(after, before) {
  const d = {};
  for (const s of after) for (const [k, v] of Object.entries(s.failureKinds ?? {})) d[k] = (d[k] ?? 0) + v;
  for (const s of before) for (const [k, v] of Object.entries(s.failureKinds ?? {})) d[k] = (d[k] ?? 0) - v;
  return Object.fromEntries(Object.entries(d).filter(([, v]) => v > 0));
}
function fmtKinds(kinds) {
  const e = Object.entries(kinds ?? {}).sort((x, y) => y[1] - x[1]);
  return e.length ? e.map(([k, v]) => `${fmtNum(v)} ${k}`).join(', ') : 'none';
}

/** Fleet processes of `n` agents dialing 127.0.0.1:`port`, or the list of `targets` (`host:port,…`) when given. */
async function startFleets(n, mode, port, certs, keyPem, targets = '127.0.0.1') {
  const fleets = [];
  for (let i = 0; i < n; i += o.perProcess) {
    const spec = join(work, `fleet-${mode}-${i}.json`);
    writeFileSync(spec, JSON.stringify({ mode, host: targets, port, caPem: ids.ca.certPem, keyPem, certs: certs.slice(i, i + o.perProcess) }));
    const child = startChild(`fleet-${mode}-${i / o.perProcess}`, process.execPath, [join(root, 'bench/lib/fleet.js')], {
      ipc: true,
      env: { ...process.env, FLEET_SPEC: spec },
    });
    child.ready = new Promise((resolve) => child.on('message', (m) => m?.ready && resolve()));
    fleets.push(child);
  }
  await Promise.all(fleets.map((f) => f.ready));
  return fleets;
}

/**
 * One restart storm: kills the server with every agent connected, starts it
 * again on the same ports, and times until every agent is back, with the
 * curve, the failed attempts by kind, the handshakes and the CPU of both
 * sides. Returns the figures and the new server process.
 */
async function restartStorm({ n, server, start, fleets, gw, startupCpuS, deadline, label }) {
  const storm = {};
  const count = async () => (await ask(server, 'clients')).clients;
  // Agents whose last attempts timed out may still be replacing their connections.
  // Until no agent has connected for 11 s, longer than RP_CLIENT_RECONNECT_STABLE_S (10 s):
  // then every pipe counts as stable when the kill breaks it, and every agent starts the
  // storm from the shortest backoff, as the storm's description says, not only the first.
  await settle(server, 11_000);
  if (o.quietWait > 0) await waitQuiet({ maxMs: o.quietWait * 1000 });
  const fk = foreignCpu();
  const st0 = await Promise.all(fleets.map((f) => ask(f, 'status')));
  const tk = performance.now();
  let serverUp = false;
  const timeline = stormTimeline(
    fleets,
    st0,
    tk,
    async () => (serverUp ? (await ask(server, 'clients', {}, 5000)).clients : 0),
    async () => (serverUp ? await ask(server, 'loop', {}, 5000) : undefined),
    async () => {
      if (!serverUp) return undefined;
      const r = await fetch(`http://127.0.0.1:${gw}/_restpipe/status`, { signal: AbortSignal.timeout(2000) });
      return (await r.json()).handshakes;
    },
  );
  server.expectedExit = true;
  server.kill('SIGKILL');
  await server.exited;
  const ov1 = listenOverflows();
  server = await start();
  serverUp = true;
  const tl = performance.now();
  storm.rpRestartListenS = (tl - tk) / 1000;
  // The storm's curve: when half, 90 % and 99 % of the agents were back.
  const marks = [0.5, 0.9, 0.99];
  storm.rpBackAt = {};
  try {
    await waitUntil(
      async () => {
        const c = await count();
        for (const q of marks) if (storm.rpBackAt[q] === undefined && c >= q * n) storm.rpBackAt[q] = (performance.now() - tk) / 1000;
        return c >= n;
      },
      { timeoutMs: deadline, intervalMs: 100, what: `${n} agents to come back` },
    );
    const t = performance.now();
    storm.rpBackS = (t - tk) / 1000;
    const cpu = procCpu(server.pid);
    storm.rpBackCpuMs = (cpu / n) * 1000;
    storm.rpBackReconnectCpuMs = (Math.max(0, cpu - startupCpuS) / n) * 1000;
    storm.rpBackServerCores = Math.max(0, cpu - startupCpuS) / ((t - tl) / 1000);
    storm.rpBackOverflows = listenOverflows() - ov1;
    storm.rpBackForeign = fk.cores();
  } catch {
    storm.rpBackS = NaN;
    storm.rpBackPartial = await count();
  }
  storm.rpBackTimeline = await timeline.stop();
  const te = performance.now();
  // The restarted server's own count (its `isSessionReused()` on each accepted socket).
  storm.rpBackServerCounters = await serverCounters(gw);
  const fs2 = await Promise.all(fleets.map((f) => ask(f, 'status')));
  storm.failures = fs2.reduce((a, s) => a + s.failures, 0) - st0.reduce((a, s) => a + s.failures, 0);
  storm.rpBackHandshakes = diffHandshakes(sumHandshakes(fs2), sumHandshakes(st0));
  storm.rpBackFailureKinds = diffKinds(fs2, st0);
  storm.rpBackFleetCores = (fs2.reduce((a, s) => a + s.cpuS, 0) - st0.reduce((a, s) => a + s.cpuS, 0)) / ((te - tk) / 1000);
  const hb = storm.rpBackHandshakes;
  log(
    `  server killed and restarted${label} (listening after ${storm.rpRestartListenS.toFixed(1)} s): ${fmtNum(await count())} back after ${fmtNum(storm.rpBackS, 1)} s (${fmtNum(storm.failures)} failed attempts meanwhile, ${fmtNum(storm.rpBackOverflows)} listen-queue overflows; the new server used ${fmtNum(storm.rpBackCpuMs, 2)} ms CPU per agent, start-up included)`,
  );
  log(
    `  storm: 50 % back after ${fmtNum(storm.rpBackAt[0.5], 1)} s, 90 % ${fmtNum(storm.rpBackAt[0.9], 1)} s, 99 % ${fmtNum(storm.rpBackAt[0.99], 1)} s; handshakes ${fmtNum(hb.resumed)} resumed, ${fmtNum(hb.full)} full (${fmtNum(hb.failedResumed)} resumed and ${fmtNum(hb.failedFull)} full in attempts that failed after the handshake); failed attempts: ${fmtKinds(storm.rpBackFailureKinds)}`,
  );
  log(
    `  storm timeline (s after the kill: agents the server holds, fleet-side connected; failed attempts so far by kind; handshakes done resumed/full; longest event-loop delay since the last sample, server / slowest fleet; the server's handshakes in progress / waiting; listen-queue overflows so far, host-wide):`,
  );
  for (const p of storm.rpBackTimeline)
    log(
      `    ${p.t.toFixed(1).padStart(6)} s  ${String(p.back).padStart(6)} / ${String(p.connected).padStart(6)}  ${fmtKinds(p.kinds)}; ${p.resumed}/${p.full}; loop ${fmtNum(p.serverLoopMs)} / ${fmtNum(p.fleetLoopMs)} ms; handshaking/waiting ${p.queue ? `${p.queue.inProgress}/${p.queue.waiting}` : '–'}; overflows ${fmtNum(p.overflows)}; fds ${p.serverFds ?? '–'}`,
    );
  const sc = storm.rpBackServerCounters;
  if (sc) {
    storm.rpBackExtra = (sc['connections.added'] ?? 0) - n;
    log(
      `  the restarted server counted ${fmtNum(sc['connections.resumed'] ?? 0)} resumed among ${fmtNum(sc['connections.added'] ?? 0)} accepted connections (${fmtNum(sc['connections.refused'] ?? 0)} refused; ${fmtNum(sc['connections.queue_timeouts'] ?? 0)} closed unhandshaken by the handshake queue)`,
    );
  }
  log(
    `  storm CPU: server ${fmtNum(storm.rpBackReconnectCpuMs, 2)} ms per agent without its start-up (${fmtNum(startupCpuS * 1000)} ms, measured on the first start), ${fmtNum(storm.rpBackServerCores, 2)} cores from listening to all back; fleet processes ${fmtNum(storm.rpBackFleetCores, 2)} cores`,
  );
  return { ...storm, server };
}

/** The storm that took longest (one that never finished first). */
function worstStorm(storms) {
  return storms.reduce((w, x) => ((Number.isFinite(x.rpBackS) ? x.rpBackS : Infinity) > (Number.isFinite(w.rpBackS) ? w.rpBackS : Infinity) ? x : w));
}

async function agents(n) {
  const settings = Object.entries(o.serverEnv).map(([k, v]) => `${k}=${v}`);
  step(
    `agents at scale: ${fmtNum(n)} idle agents (${Math.ceil(n / o.perProcess)} fleet processes), RestPipe server${settings.length ? ` (${settings.join(', ')})` : ''} vs bare Node mTLS server`,
  );
  const t0 = performance.now();
  const certs = signAgentCertificates(ids.ca, ids.agentKey, n);
  log(`  signed ${fmtNum(n)} client certificates over one key pair in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const row = { n, processes: Math.ceil(n / o.perProcess) };
  results.agents.push(row);
  const deadline = Math.max(120_000, n * 30);

  // RestPipe server (default settings unless --server-env), hooks count the connected clients.
  {
    const [pipePort, gw] = [await freePort(), await freePort()];
    const start = () => startServer(root, ids, { pipePort, gatewayPort: gw, env: o.serverEnv, hooks: true, name: 'restpipe-server (agents)' });
    let server = await start();
    // What a start costs with no agent: taken off the restarted server's CPU below.
    const startupCpuS = procCpu(server.pid);
    const base = await ask(server, 'mem');
    const fleets = await startFleets(n, 'restpipe', pipePort, certs, ids.agentKey.keyPem);
    if (o.quietWait > 0) await waitQuiet({ maxMs: o.quietWait * 1000 });
    const fc = foreignCpu();
    const ov0 = listenOverflows();
    const cpu0 = procCpu(server.pid);
    const tc = performance.now();
    await Promise.all(fleets.map((f) => ask(f, 'start')));
    const count = async () => (await ask(server, 'clients')).clients;
    try {
      await waitUntil(async () => (await count()) >= n, { timeoutMs: deadline, intervalMs: 100, what: `${n} agents to connect` });
      row.rpConnectS = (performance.now() - tc) / 1000;
      row.rpConnectCpuMs = ((procCpu(server.pid) - cpu0) / n) * 1000;
      row.rpConnectOverflows = listenOverflows() - ov0;
      row.rpConnectForeign = fc.cores();
    } catch {
      row.rpConnectS = NaN;
      row.rpConnectPartial = await count();
    }
    const fs1 = await Promise.all(fleets.map((f) => ask(f, 'status')));
    row.rpConnectFailures = fs1.reduce((a, s) => a + s.failures, 0);
    row.rpConnectHandshakes = sumHandshakes(fs1);
    row.rpConnectFailureKinds = diffKinds(fs1, []);
    const c1 = await serverCounters(gw);
    // Connections the server accepted beyond one per agent: attempts that failed after the accept, and replacements.
    row.rpConnectExtra = c1 ? (c1['connections.added'] ?? 0) - n : NaN;
    log(
      `  RestPipe: ${fmtNum(await count())} connected in ${fmtNum(row.rpConnectS, 1)} s; server CPU ${fmtNum(row.rpConnectCpuMs, 2)} ms per agent; ${fmtNum(row.rpConnectFailures)} failed attempts (${fmtKinds(row.rpConnectFailureKinds)}), ${fmtNum(row.rpConnectOverflows)} listen-queue overflows (host-wide); handshakes ${fmtNum(row.rpConnectHandshakes.full)} full, ${fmtNum(row.rpConnectHandshakes.resumed)} resumed; the server accepted ${fmtNum(row.rpConnectExtra)} connections more than one per agent`,
    );
    // Agents whose first attempts timed out during the storm may still be
    // reconnecting (replacing their older connection): wait until the set is
    // stable, so memory and idle traffic are measured on idle connections.
    row.rpSettleS = await settle(server);
    const mem = await ask(server, 'mem');
    row.rpBaseRss = base.rss;
    row.rpRss = mem.rss;
    row.rpPerAgent = (mem.rss - base.rss) / n;
    row.rpHeapPerAgent = (mem.heapUsed + mem.external + mem.arrayBuffers - (base.heapUsed + base.external + base.arrayBuffers)) / n;
    const fleetStatus = await Promise.all(fleets.map((f) => ask(f, 'status')));
    row.fleetRssPerAgent = fleetStatus.reduce((a, s) => a + s.rss, 0) / n;
    log(
      `  RestPipe server RSS ${fmtBytes(base.rss)} → ${fmtBytes(mem.rss)}: ${fmtBytes(row.rpPerAgent)} per agent (JS heap+external ${fmtBytes(row.rpHeapPerAgent)})`,
    );

    // Idle traffic with the default heartbeat settings.
    const k0 = await ask(server, 'clients');
    const a = tcpCounters(pipePort);
    const idleCpu0 = procCpu(server.pid);
    const w0 = performance.now();
    await sleep(o.idleWindow * 1000);
    const b = tcpCounters(pipePort);
    const win = (performance.now() - w0) / 1000;
    row.idleServerCpu = (procCpu(server.pid) - idleCpu0) / win;
    row.idleChurn = (await ask(server, 'clients')).added - k0.added;
    if (row.idleChurn > 0)
      notes.push(`${fmtNum(row.idleChurn)} of the ${fmtNum(n)} agents reconnected during the idle window: its traffic and CPU include those handshakes.`);
    const payload = b.sent - a.sent + (b.received - a.received);
    const segs = b.segsOut - a.segsOut + (b.segsIn - a.segsIn);
    row.idleSockets = b.sockets;
    const socks = Math.max(1, Math.min(a.sockets, b.sockets));
    if (socks !== n) notes.push(`Idle traffic at ${n} agents was measured over ${socks} sockets (ss saw ${a.sockets} then ${b.sockets}).`);
    row.idlePayloadPerDay = (payload / socks) * (86400 / win);
    row.idleWirePerDay = ((payload + segs * 52) / socks) * (86400 / win);
    row.idleSegsPerMin = (segs / socks) * (60 / win);
    row.idleDataSegsPerMin = ((b.dataSegs - a.dataSegs) / socks) * (60 / win);
    log(
      `  idle ${win.toFixed(0)} s over ${b.sockets} sockets: ${fmtBytes(row.idlePayloadPerDay)}/agent/day TLS payload, ${fmtBytes(row.idleWirePerDay)}/agent/day with IP+TCP headers (${row.idleSegsPerMin.toFixed(1)} segments/agent/min, ${row.idleDataSegsPerMin.toFixed(1)} of them with data); the idle server used ${(row.idleServerCpu * 100).toFixed(1)}% of a core; ${row.idleChurn} reconnections meanwhile`,
    );

    // Kill the server and start it again, `--storms` times; time until every agent is back.
    row.storms = [];
    for (let i = 0; i < o.storms; i++) {
      const storm = await restartStorm({
        n,
        server,
        start,
        fleets,
        count,
        gw,
        startupCpuS,
        deadline,
        label: o.storms > 1 ? ` (storm ${i + 1} of ${o.storms})` : '',
      });
      server = storm.server;
      delete storm.server;
      row.storms.push(storm);
      if (!Number.isFinite(storm.rpBackS)) break;
    }
    // The worst storm stands for the agent count in the tables and targets.
    Object.assign(row, worstStorm(row.storms));
    // The server first, at once: a drain would say GoAway to every agent, and nothing is measured there.
    server.expectedExit = true;
    server.kill('SIGKILL');
    await server.exited;
    for (const f of fleets) await stopChild(f);
  }

  // Bare Node mutual-TLS server holding the same number of connections.
  {
    const port = await freePort();
    const bare = startChild(
      'bare-tls-server',
      process.execPath,
      ['--expose-gc', '--import', join(root, 'bench/lib/probe.js'), join(root, 'bench/lib/bare-server.js')],
      {
        ipc: true,
        env: { ...process.env, BARE_PORT: String(port), BARE_CERT_PATH: ids.serverDir },
      },
    );
    await waitForPort(port);
    const base = await ask(bare, 'mem');
    const fleets = await startFleets(n, 'bare', port, certs, ids.agentKey.keyPem);
    if (o.quietWait > 0) await waitQuiet({ maxMs: o.quietWait * 1000 });
    const fb = foreignCpu();
    const cpu0 = procCpu(bare.pid);
    const tc = performance.now();
    await Promise.all(fleets.map((f) => ask(f, 'start')));
    const count = async () => (await ask(bare, 'clients')).clients;
    try {
      await waitUntil(async () => (await count()) >= n, { timeoutMs: deadline, intervalMs: 100, what: `${n} bare connections` });
      row.bareConnectS = (performance.now() - tc) / 1000;
      row.bareConnectCpuMs = ((procCpu(bare.pid) - cpu0) / n) * 1000;
      row.bareConnectForeign = fb.cores();
    } catch {
      row.bareConnectS = NaN;
    }
    await settle(bare);
    const mem = await ask(bare, 'mem');
    row.bareBaseRss = base.rss;
    row.bareRss = mem.rss;
    row.barePerConn = (mem.rss - base.rss) / n;
    row.ratio = row.rpPerAgent / row.barePerConn;
    log(
      `  bare Node mTLS server: ${fmtNum(await count())} connected in ${fmtNum(row.bareConnectS, 1)} s (server CPU ${fmtNum(row.bareConnectCpuMs, 2)} ms per connection); RSS ${fmtBytes(base.rss)} → ${fmtBytes(mem.rss)}: ${fmtBytes(row.barePerConn)} per connection; RestPipe/bare = ${fmtRatio(row.ratio)}`,
    );
    for (const f of fleets) await stopChild(f);
    await stopChild(bare);
  }
  for (const [k, what] of [
    ['rpConnectForeign', 'RestPipe connect'],
    ['rpBackForeign', 'RestPipe restart'],
    ['bareConnectForeign', 'bare connect'],
  ]) {
    if (row[k] > 0.3) disturbed.push(`${fmtNum(n)} agents, ${what} (${row[k].toFixed(2)} cores)`);
  }
}

// ---------------------------------------------------------------- report
function describeMachine() {
  const cpuinfo = (() => {
    try {
      return readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return '';
    }
  })();
  const osRelease = (() => {
    try {
      return /^PRETTY_NAME="?([^"\n]+)/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1];
    } catch {
      return undefined;
    }
  })();
  const pkg = (name) => {
    try {
      return JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
    } catch {
      return '?';
    }
  };
  const git = (...a) => tryExec('git', ['-C', root, ...a])?.trim();
  return {
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? '?',
    cores: os.availableParallelism?.() ?? os.cpus().length,
    memory: os.totalmem(),
    os: `${osRelease ?? os.type()} (kernel ${os.release()})`,
    node: process.versions.node,
    openssl: process.versions.openssl,
    nginx: nginxVersion(),
    stunnel: stunnelVersion(),
    versions: { fastify: pkg('fastify'), protobufjs: pkg('protobufjs'), autocannon: pkg('autocannon'), undici: pkg('undici'), pino: pkg('pino') },
    commit: git('rev-parse', '--short', 'HEAD'),
    dirty: (git('status', '--porcelain', '--untracked-files=no', '--', 'proto', 'shared', 'server', 'client') ?? '') !== '',
  };
}

/**
 * RestPipe's req/s over a baseline's: the median of the ratios within each
 * round (the two ran minutes apart at most), which the machine's drift over
 * the run disturbs less than a ratio of medians.
 */
function roundRatio(a, b) {
  return median(perRound(a.rounds, b.rounds));
}

/** A difference in ms with its sign: +0.440, -0.120. */
function signedMs(x) {
  return `${x < 0 ? '-' : '+'}${fmtMs(Math.abs(x))}`;
}

/** The ratios a[i] / b[i] of two series measured in the same rounds. */
function perRound(a, b) {
  const n = Math.min(a.length, b.length);
  return Array.from({ length: n }, (_, i) => a[i] / b[i]);
}

/**
 * With --against: today's RestPipe paths over the other tree's, each figure the
 * median of its per-round ratios (the two ran next to each other in every
 * round). Returns the table rows and a one-line summary.
 */
function comparison() {
  const rows = [];
  const sum = { tp: [], lt: [], st: [] };
  const dirOf = (id) => (id.startsWith('rp-c2s') ? 'c→s' : 's→c');
  const dirName = (id) => (id.startsWith('rp-c2s') ? 'client→server' : 'server→client');
  // A round is marked * when other processes used more than 0.3 cores during either load of its pair.
  const rounds = (xs, fa = [], fb = []) =>
    xs.map((x, i) => `${Number.isFinite(x) ? x.toFixed(2) : '–'}${Math.max(fa[i] ?? 0, fb[i] ?? 0) > 0.3 ? '*' : ''}`).join(' ');
  /** One row: today's figure, the other's, the median ratio and the rounds' ratios; a and b are {value, series, foreign}. */
  const row = (what, path, fmt, a, b) => {
    const ratios = perRound(a.series, b.series);
    const r = median(ratios);
    rows.push([what, path, fmt(a.value), fmt(b.value), fmtRatio(r), rounds(ratios, a.foreign, b.foreign)]);
    return r;
  };
  const ms = (x) => `${fmtMs(x)} ms`;
  for (const t of results.throughput.filter((x) => x.old)) {
    const n = results.throughput.find((x) => x.path === t.twinOf && x.conns === t.conns);
    if (!n) continue;
    const side = (x) => ({ value: x.rps, series: x.rounds, foreign: x.foreign });
    const r = row(`req/s, ${t.conns} conn`, dirName(t.path), fmtNum, side(n), side(t));
    sum.tp.push(`${dirOf(t.path)} ${fmtRatio(r)} at ${t.conns}`);
  }
  for (const k of ['p50', 'p99']) {
    for (const t of results.latency.filter((x) => x.old)) {
      const n = results.latency.find((x) => x.path === t.twinOf);
      if (!n) continue;
      const series = k === 'p50' ? 'roundsP50' : 'roundsP99';
      const side = (x) => ({ value: x[k], series: x[series], foreign: x.foreign });
      const r = row(`${k} at ${fmtNum(o.rate)} req/s`, dirName(t.path), ms, side(n), side(t));
      sum.lt.push(`${k} ${dirOf(t.path)} ${fmtRatio(r)}`);
    }
  }
  const sr = results.stream?.rows ?? [];
  for (const dir of ['upload', 'download']) {
    const n = sr.find((x) => x.path === 'RestPipe' && x.dir === dir);
    const t = sr.find((x) => x.old && x.dir === dir);
    if (!n || !t) continue;
    const name = dir === 'upload' ? 'client→server (POST)' : 'server→client (GET)';
    const speed = (x) => ({ value: x.mbps, series: x.rounds.map((y) => y.mbps), foreign: x.rounds.map((y) => y.foreign) });
    const r = row('transfer MiB/s', name, (x) => `${fmtNum(x, 1)} MiB/s`, speed(n), speed(t));
    sum.st.push(`${dir === 'upload' ? 'up' : 'down'} ${fmtRatio(r)}`);
    for (const [node, peak, base] of [
      ['client', 'peakA', 'baseA'],
      ['server', 'peakB', 'baseB'],
    ]) {
      const growth = (x) => {
        const series = x.rounds.map((y) => y[peak] - y[base]);
        return { value: median(series), series, foreign: x.rounds.map((y) => y.foreign) };
      };
      row(`${node} node RSS growth`, name, fmtBytes, growth(n), growth(t));
    }
  }
  const parts = [];
  if (sum.tp.length) parts.push(`req/s ${sum.tp.join(', ')} conn`);
  if (sum.lt.length) parts.push(`latency at ${fmtNum(o.rate)} req/s ${sum.lt.join(', ')}`);
  if (sum.st.length) parts.push(`transfers ${sum.st.join(', ')}`);
  const summary = `Against ${against.ref} (${against.short}), new/old, medians of ${o.rounds} interleaved round${o.rounds === 1 ? '' : 's'}: ${parts.length ? parts.join('; ') : 'nothing measured'}.`;
  return { rows, summary };
}

function report(seconds) {
  const md = [];
  const txt = [];
  const both = (title, header, rows) => {
    md.push(`### ${title}\n`, mdTable(header, rows), '');
    txt.push(`\n${title}\n${textTable(header, rows)}`);
  };
  let cmp;
  if (against) {
    cmp = comparison();
    both(
      `Today vs ${against.label} (commit ${against.short}; today/${against.ref} is the median of the per-round ratios)`,
      ['measure', 'path', 'today', against.ref, `today/${against.ref}`, 'per round'],
      cmp.rows,
    );
    const meaning = `Above 1× is more today for req/s and MiB/s (faster), below 1× is less today for latency and RSS growth (better). Same code on both sides gives about 1× give or take the noise of the machine. A round marked * had other processes using more than 0.3 cores during one of its two loads.`;
    md.push(meaning, '', `Summary: ${cmp.summary}`, '');
    txt.push(meaning, `\n${cmp.summary}`);
  }
  const tp = results.throughput;
  const get = (path, c) => tp.find((r) => r.path === path && r.conns === c);
  if (tp.length) {
    const rows = [];
    for (const c of o.conns) {
      for (const r of tp.filter((x) => x.conns === c)) {
        const isRp = r.path.startsWith('rp-');
        const d = get('direct', c);
        const st = get('stunnel', c);
        const ng = get('nginx', c);
        rows.push([
          `${r.label}`,
          c,
          fmtNum(r.rps),
          fmtMs(r.p50),
          fmtMs(r.p99),
          isRp && d ? fmtRatio(roundRatio(r, d)) : '',
          isRp && ng ? fmtRatio(roundRatio(r, ng)) : '',
          isRp && st ? fmtRatio(roundRatio(r, st)) : '',
          r.bad ? `${r.bad} bad` : '',
        ]);
      }
    }
    both(
      `Throughput, closed loop (median of ${o.rounds} rounds of ${o.duration} s; ratios are medians of the per-round ratios)`,
      ['path', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'RP/direct', 'RP/nginx', 'RP/stunnel', ''],
      rows,
    );
  }
  const lt = results.latency;
  if (lt.length) {
    const d = lt.find((r) => r.path === 'direct');
    const rows = lt.map((r) => [
      r.label,
      fmtNum(r.achieved),
      fmtMs(r.p50),
      fmtMs(r.p99),
      fmtMs(r.p999),
      d && r !== d ? signedMs(r.p50 - d.p50) : '',
      d && r !== d ? signedMs(r.p99 - d.p99) : '',
      r.bad ? `${r.bad} bad` : '',
    ]);
    both(
      `Latency at a fixed ${fmtNum(o.rate)} req/s (open loop, median of ${o.rounds} rounds of ${o.rateSeconds} s)`,
      ['path', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'p50 added', 'p99 added', ''],
      lt.length ? rows : [],
    );
  }
  const s = results.stream;
  if (s) {
    const rows = s.rows.map((r) => [
      r.path,
      r.dir === 'upload' ? 'client→server (POST)' : 'server→client (GET)',
      fmtBytes(r.bytes),
      fmtNum(r.mbps, 1),
      `${fmtBytes(r.baseA)} → ${fmtBytes(r.peakA)}`,
      `${fmtBytes(r.baseB)} → ${fmtBytes(r.peakB)}`,
      Object.entries(r.statuses)
        .map(([k, v]) => `${v}×${k}`)
        .join(' '),
    ]);
    both(
      `Transfers: ${fmtBytes(s.total)} each way as ${s.count} × ${fmtBytes(s.per)} requests, ${s.mode === 'streamed' ? 'streamed bodies' : 'BUFFERED bodies (interim: streaming not in this build)'}${s.rounds > 1 ? ` (RestPipe: median of ${s.rounds} rounds)` : ''}`,
      ['path', 'direction', 'bytes', 'MiB/s', 'client side RSS start → peak', 'server side RSS start → peak', 'statuses'],
      rows,
    );
  }
  if (results.agents.length) {
    const rows = results.agents.map((a) => [
      fmtNum(a.n),
      Number.isFinite(a.rpConnectS) ? fmtNum(a.rpConnectS, 1) : `${a.rpConnectPartial} only`,
      Number.isFinite(a.bareConnectS) ? fmtNum(a.bareConnectS, 1) : '–',
      `${fmtNum(a.rpConnectCpuMs, 2)} / ${fmtNum(a.bareConnectCpuMs, 2)}`,
      fmtBytes(a.rpPerAgent),
      fmtBytes(a.barePerConn),
      fmtRatio(a.ratio),
      (a.storms ?? []).map((x) => (Number.isFinite(x.rpBackS) ? fmtNum(x.rpBackS, 1) : `${x.rpBackPartial} only`)).join(' / ') || '–',
      fmtMB(a.idlePayloadPerDay),
      fmtMB(a.idleWirePerDay),
      `${(a.idleServerCpu * 100).toFixed(1)}%`,
    ]);
    both(
      'Idle agents at scale (one RestPipe server, default settings)',
      [
        'agents',
        'RP connect all s',
        'bare connect all s',
        'server CPU ms/conn RP / bare',
        'server RSS/agent',
        'bare mTLS RSS/conn',
        'RP/bare',
        'all back after restart s',
        'idle TLS payload/agent/day',
        'idle IP traffic/agent/day',
        'idle server CPU',
      ],
      rows,
    );
  }
  if (results.agents.some((a) => a.storms?.length)) {
    const rows = results.agents
      .flatMap((a) => (a.storms ?? []).map((x, i, all) => ({ ...x, n: a.n, label: all.length > 1 ? ` #${i + 1}` : '' })))
      .filter((a) => a.rpBackHandshakes)
      .map((a) => [
        `${fmtNum(a.n)}${a.label}`,
        fmtNum(a.rpRestartListenS, 1),
        [0.5, 0.9, 0.99].map((q) => fmtNum(a.rpBackAt?.[q], 1)).join(' / '),
        Number.isFinite(a.rpBackS) ? fmtNum(a.rpBackS, 1) : `${a.rpBackPartial} only`,
        `${fmtNum(a.rpBackHandshakes.resumed)} / ${fmtNum(a.rpBackHandshakes.full)}`,
        fmtKinds(a.rpBackFailureKinds),
        fmtNum(a.rpBackReconnectCpuMs, 2),
        `${fmtNum(a.rpBackServerCores, 2)} / ${fmtNum(a.rpBackFleetCores, 2)}`,
      ]);
    both(
      'Restart storm (server killed, started again; agents resume their TLS sessions)',
      [
        'agents',
        'listening after s',
        '50 / 90 / 99 % back s',
        'all back s',
        'handshakes resumed / full',
        'failed attempts',
        'server CPU ms/agent',
        'cores server / fleets',
      ],
      rows,
    );
  }
  // Targets: figures against the issue's goals, never assertions.
  const targets = [];
  const conns = o.conns;
  const rpTp = tp.filter((r) => r.path.startsWith('rp-') && !r.old);
  if (rpTp.length) {
    // Per connection count, the lower of the two directions.
    const ratios = (base) =>
      conns
        .map((c) => {
          const b = get(base, c);
          const r = rpTp.filter((x) => x.conns === c).map((x) => (b ? roundRatio(x, b) : NaN));
          return { c, r: Math.min(...r) };
        })
        .filter((x) => Number.isFinite(x.r));
    for (const [base, goal] of [
      ['stunnel', 1.5],
      ['direct', 0.5],
    ]) {
      const rs = ratios(base);
      if (!rs.length) continue;
      const met = rs.filter((x) => x.r >= goal).map((x) => x.c);
      targets.push([
        `RestPipe req/s ≥ ${goal}× ${base}`,
        rs.map((x) => `${x.c} conn: ${fmtRatio(x.r)}`).join(', '),
        met.length === rs.length ? 'met' : met.length ? `met at ${met.join(', ')} conn` : 'not met',
      ]);
    }
  }
  const d = lt.find((r) => r.path === 'direct');
  const rl = lt.filter((r) => r.path.startsWith('rp-') && !r.old);
  if (d && rl.length) {
    const worst = Math.max(...rl.map((r) => r.p99 - d.p99));
    targets.push([
      `p99 added latency ≤ 1 ms at ${fmtNum(o.rate)} req/s`,
      rl.map((r) => `${r.path} ${signedMs(r.p99 - d.p99)} ms`).join(', '),
      worst <= 1 ? 'met' : 'not met',
    ]);
  }
  if (s) {
    const rp = s.rows.filter((r) => r.path === 'RestPipe');
    const st = s.rows.filter((r) => r.path === 'stunnel');
    if (rp.length && st.length) {
      const ratio = rp.map((r) => r.mbps / (st.find((x) => x.dir === r.dir)?.mbps ?? NaN));
      const peak = Math.max(...rp.map((r) => Math.max(r.peakA - r.baseA, r.peakB - r.baseB)));
      targets.push([
        'streaming ≥ stunnel speed, flat memory',
        `${s.mode}: ${ratio.map((x) => fmtRatio(x)).join(' / ')} of stunnel (up / down); node RSS grew up to ${fmtBytes(peak)}`,
        s.mode !== 'streamed' ? 'not measurable (no streaming yet)' : Math.min(...ratio) >= 1 && peak < 64 * MiB ? 'met' : 'not met',
      ]);
    }
  }
  for (const a of results.agents) {
    targets.push([
      `RSS per idle agent ≤ 1.1× bare mTLS (${fmtNum(a.n)})`,
      `${fmtBytes(a.rpPerAgent)} vs ${fmtBytes(a.barePerConn)} = ${fmtRatio(a.ratio)}`,
      a.ratio <= 1.1 ? 'met' : 'not met',
    ]);
    targets.push([
      `all agents back ≤ 30 s after restart (${fmtNum(a.n)})`,
      Number.isFinite(a.rpBackS)
        ? `${fmtNum(a.rpBackS, 1)} s${a.storms?.length > 1 ? `, the slowest of ${a.storms.length} storms` : ''} (${fmtNum(a.rpBackHandshakes?.resumed)} of ${fmtNum(a.n)} handshakes resumed)`
        : `only ${a.rpBackPartial}`,
      a.rpBackS <= 30 ? 'met' : 'not met',
    ]);
    targets.push([
      `idle traffic ≤ 3 MB/agent/day (${fmtNum(a.n)})`,
      `${fmtMB(a.idleWirePerDay)} with IP+TCP headers (${fmtMB(a.idlePayloadPerDay)} TLS payload)`,
      a.idleWirePerDay <= 3e6 ? 'met' : 'not met',
    ]);
  }
  const cl = results.cluster;
  if (cl?.skipped) md.push(`### Cluster\n`, `Skipped: ${cl.skipped}.`, '');
  else if (cl?.local) {
    both(
      `Cluster: two instances on one nats-server, the load client on instance a; local = through a's gateway, remote = through b's (b → NATS link → a → pipe)`,
      ['path', `req/s at ${cl.conns} conns`, 'p50 ms', 'p99 ms', `p50 ms at ${fmtNum(cl.rate)} req/s`, `p99 ms at ${fmtNum(cl.rate)} req/s`, 'non-2xx/errors'],
      [
        ['local instance', cl.local],
        ['remote instance', cl.remote],
      ].map(([name, p]) => [name, fmtNum(p.rps), fmtMs(p.closedP50), fmtMs(p.closedP99), fmtMs(p.rateP50), fmtMs(p.rateP99), String(p.bad)]),
    );
    targets.push([`remote ≥ 0.7× local req/s at ${cl.conns} connections`, fmtRatio(cl.ratio), cl.ratio >= 0.7 ? 'met' : 'not met']);
    targets.push([`remote hop adds ≤ 0.3 ms p50 at ${fmtNum(cl.rate)} req/s`, `+${fmtMs(cl.addedP50)} ms`, cl.addedP50 <= 0.3 ? 'met' : 'not met']);
    if (cl.failoverAgents) {
      const s = Number.isFinite(cl.failoverS)
        ? `${fmtNum(cl.failoverS, 1)} s (all on the survivor after ${fmtNum(cl.failoverConnectedS, 1)} s)`
        : `only ${cl.failoverPartial}`;
      targets.push([`failover of ${fmtNum(cl.failoverAgents)} agents ≤ 10 s`, s, Number.isFinite(cl.failoverS) && cl.failoverS <= 10 ? 'met' : 'not met']);
    }
  }
  if (!results.agents.some((a) => a.n >= 10000) && sections.has('agents'))
    targets.push(['10,000 agents back within 30 s', 'not run (opt in: --agents 10000)', '–']);
  if (targets.length) both('Targets (reported, not asserted)', ['target', 'measured', ''], targets);

  let prof = '';
  if (results.profile) {
    const p = results.profile;
    const side = (name, x) => {
      const rows = x.self.slice(0, 15).map((f) => [`\`${f.fn}\``, f.where, f.area, `${f.pctBusy.toFixed(1)}%`]);
      const areas = x.areas.slice(0, 12).map((a) => [a.area, `${a.pctBusy.toFixed(1)}%`]);
      const incl = x.inclusive.slice(0, 12).map((f) => [`\`${f.fn}\``, f.where, `${f.pctBusy.toFixed(1)}%`]);
      return [
        `#### ${name} node: busy ${fmtNum(x.busyMs)} ms of ${fmtNum(x.totalMs)} ms sampled\n`,
        'By area (self time, % of busy):\n',
        mdTable(['area', 'self'], areas),
        '\nTop functions by self time:\n',
        mdTable(['function', 'where', 'area', 'self'], rows),
        '\nRestPipe functions by inclusive time:\n',
        mdTable(['function', 'where', 'inclusive'], incl),
        '',
      ].join('\n');
    };
    prof = [
      `Both nodes profiled with the V8 sampling profiler (node:inspector, 250 µs) while ${p.path} ran at ${p.conns} connections for ${p.seconds} s (${fmtNum(p.rps)} req/s under the profiler). Raw profiles: \`${p.files.join('`, `')}\` (not committed; open in Chrome DevTools or speedscope).\n`,
      side('Client', p.client),
      side('Server', p.server),
    ].join('\n');
    txt.push(`\nProfile (${p.path}, ${p.conns} conns): top self time`);
    for (const sideName of ['client', 'server']) {
      txt.push(`  ${sideName}:`);
      for (const f of p[sideName].self.slice(0, 12)) txt.push(`    ${f.pctBusy.toFixed(1).padStart(5)}%  ${f.fn}  ${f.where}  [${f.area}]`);
    }
  }

  const m = machine;
  console.log(`\n${'═'.repeat(100)}\nRestPipe benchmarks — ${m.cpu}, ${m.cores} cores, ${fmtBytes(m.memory)}, ${m.os}, Node ${m.node}`);
  console.log(txt.join('\n'));
  if (notes.length) console.log(`\nNotes:\n${notes.map((n) => `  - ${n}`).join('\n')}`);
  if (cmp) console.log(`\n${cmp.summary}`);
  console.log(`\nThe whole run took ${(seconds / 60).toFixed(1)} min.`);

  if (!outFile) return;
  const analysis = (() => {
    try {
      return readFileSync(join(root, 'bench/profile-notes.md'), 'utf8').trim();
    } catch {
      return '';
    }
  })();
  const doc = `# Benchmarks

RestPipe side by side with the paths it replaces, measured by \`bench/run.js\` in one run on
one machine: the same tiny \`time\` handler answered

1. **direct**: a Fastify server answering \`/time\`, no tunnel;
2. **nginx hop**: nginx (${m.nginx ?? 'not installed'}, one worker, upstream keepalive) proxying to that Fastify server;
3. **stunnel mTLS tunnel**: stunnel4 client → stunnel4 server with mutual TLS (our certs-tool
   identities; client certificate required and verified, server name checked) → that Fastify server;
4. **RestPipe client→server**: client gateway → mutual-TLS pipe → server handler \`get_time\`, and
   **server→client**: server gateway → pipe → client handler \`get_time\`.${
     against
       ? `
5. **${against.label}**: the same two RestPipe paths, run by a build of \`${against.ref}\` (commit
   ${against.short}, "${against.subject}") with the same bench handlers, next to today's in every round.`
       : ''
   }

Every node and tunnel is its own process; the load generator (autocannon for the closed loop,
an open-loop undici pacer for the fixed rate) runs in its own process too. RestPipe nodes run
their CLIs with RP_ settings at their defaults, except \`RP_STATSD_HOST=\` (statsd off) and
\`RP_LOG_LEVEL=warn\`. Note the box has ${m.cores} cores: the load generator, the origin and (for
RestPipe) two node processes share them, so every figure is CPU-bound and relative.
On this VM the absolute figures also drift between runs, by up to about ±30% at 64 connections
(other tenants on the host, invisible from inside). So compare paths within one run, and read the
ratios, which are taken within each round.

**Generated ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC** by \`${command}\` in ${(seconds / 60).toFixed(1)} min${fullRun ? '' : ' (a partial run)'}.

| | |
|---|---|
| CPU | ${m.cpu}, ${m.cores} cores |
| memory | ${fmtBytes(m.memory)} |
| OS | ${m.os} |
| Node.js | ${m.node} (OpenSSL ${m.openssl}) |
| nginx | ${m.nginx ?? 'not installed'} |
| stunnel | ${m.stunnel ?? 'not installed'} |
| packages | fastify ${m.versions.fastify}, protobufjs ${m.versions.protobufjs}, pino ${m.versions.pino}, autocannon ${m.versions.autocannon}, undici ${m.versions.undici} |
| RestPipe | commit ${m.commit}${m.dirty ? ' with uncommitted changes in proto/shared/server/client' : ''} |
${against ? `| compared with | ${against.label} = commit ${against.short} (${against.install || 'built before'}) |\n` : ''}| open files limit | ${fdLimit} |

## Results

${md.join('\n')}
${notes.length ? `Notes:\n\n${notes.map((n) => `- ${n}`).join('\n')}\n` : ''}
## How it is measured

- **A shared machine**: before each load the bench waits (up to ${o.quietWait} s) until processes
  outside its own process tree use under 0.15 cores, measures what they use during the load
  (\`/proc/stat\` minus the bench's tree), and takes a load again once if they used more than 0.3
  cores; the notes above list any that stayed disturbed.
- **Closed loop**: autocannon (${m.versions.autocannon}), pipelining 1, at each connection count; every
  path once per round, the order rotating from round to round; ${o.warmup} s of warm-up on the same
  connections is discarded; req/s counts 2xx answers only; p50/p99 are per-response times with
  microsecond resolution (autocannon's own histogram keeps whole milliseconds). Medians of ${o.rounds} rounds.
- **Fixed rate**: ${fmtNum(o.rate)} req/s open loop (requests are sent on schedule whatever the answers
  do, 32 keep-alive connections, undici; autocannon's \`overallRate\` sends each second's budget in a
  burst, so it is not used here); latency from sending to the end of the response.
  "Added" is the difference to the direct path's percentile.
- **Transfers**: sequential requests through the client gateway (POST to \`post_sink\`, a handler
  listed in \`streamedBodies\`; GET from \`get_blob\`, which returns a Readable), and the same bytes
  through the stunnel tunnel to the origin's streaming \`/sink\` and \`/blob\`. Peak RSS is sampled
  from \`/proc\` every 25 ms; "start" is before the first transfer. Fresh nodes and stunnels for
  this test. "Flat memory" in the targets means the nodes grew by less than 64 MiB while moving 1 GiB.
- **Agents**: client certificates \`agent-<i>\` signed over one shared RSA-2048 key pair; agents are
  \`RestPipeClient\`s without a gateway, ${fmtNum(o.perProcess)} per process (built before the clock
  starts), each with its own TLS connection and identity, default heartbeat (5 s) and reconnect
  settings. The fleet processes run on the same 2 cores as the server, so the handshake storm is
  CPU-bound on both ends. *Connect all*: from starting them all at once to the server's hook count
  reaching N; *server CPU ms/conn*: the server's CPU time over that span divided by N (the bare
  server's likewise). *Server RSS/agent*: once no agent connected for 5 s, the server's RSS after two
  GCs minus before any agent, divided by N; the same for a bare \`tls.createServer\` (same identity,
  client certificates required) holding as many plain mTLS connections from the same certificates.
  *Idle*: \`ss -ti\` counters of the server's sockets (TLS payload both ways) over ${o.idleWindow} s,
  scaled to a day; "IP" adds 52 bytes (IPv4 + TCP with timestamps) per segment; idle server CPU is
  its CPU time over that window. *All back*: from SIGKILL of the server to all N connected to the
  restarted server (the agents had been up longer than \`RP_CLIENT_RECONNECT_STABLE_S\`, so they
  start from the shortest backoff, then wait with the client's full-jitter backoff). Each agent
  offers the session ticket of its last pipe, as the client does; *handshakes resumed / full*
  are the agents' own count (\`isSessionReused()\`) of the handshakes that led to a pipe, checked
  against the restarted server's \`connections.resumed\` counter; *server CPU ms/agent* in the storm
  table is the restarted server's CPU until all are back, less what a start with no agent costs
  (the first start's), divided by N; *cores*: that CPU over the time from listening to all back, and
  the fleet processes' CPU over the storm. The run's log adds a per-second timeline of the storm.
  Server CPU per full and per resumed handshake in isolation: \`node bench/experiments/handshakes.js\`.
- **Run time**: the default run (agents 1,000 and 5,000) takes about 9 minutes here; 10,000 agents
  are opt-in (\`--agents 1000,5000,10000\`, about 13 minutes in all) and need ~20,000 open files (the
  script raises \`ulimit -n\` itself when it can). \`--quick\` is a 2-minute smoke run.

${howToRun()}
## Profile

${prof}
${analysis}
`;
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, doc);
  console.log(`report written to ${relative(root, outFile)}`);
}

/** The "How to run" section of the report (docs/benchmarks.md holds the same text). */
function howToRun() {
  return `## How to run

\`\`\`sh
npm run bench                                  # the default run, ~9 min; rewrites this page
npm run bench -- --agents 1000,5000,10000      # with 10,000 agents, ~13 min
npm run bench -- --quick                       # a ~2-minute smoke run
npm run bench -- --only throughput,latency     # some sections (also --skip, --paths, --rounds …)
npm run bench -- --against HEAD~1              # today's RestPipe against a build of HEAD~1
npm run bench -- --against main --quick        # the same, short: ~2–3 min
npm run bench -- --help                        # every option
\`\`\`

Only the default run (no \`--quick\`, \`--only\`, \`--skip\`, \`--paths\` or \`--against\`) writes this
page; the others write \`bench/out/benchmarks.md\`. \`npm run bench\` builds the tree first.

**Today against a git ref.** \`--against <ref>\` measures what a change bought. The bench checks
\`<ref>\` out with \`git worktree add --detach\` in a temporary directory, installs it (this tree's
\`node_modules\` is copied when \`package-lock.json\` is the same, else \`npm ci --prefer-offline\`)
and runs \`npm run build\` there. It then starts that tree's server and client CLIs beside
today's, with today's bench handlers and probe, so that only RestPipe differs. Their paths,
\`RestPipe@<ref> client→server\` and \`RestPipe@<ref> server→client\`, run right next to today's
path of the same direction in every round: today's first in odd rounds, the other first in even
ones. That holds for the closed-loop req/s at each connection count, the latency at the fixed
rate, and the transfers (fresh nodes for each tree and round). The report opens with a table
"Today vs \`RestPipe@<ref>\`" and a one-line summary to quote in a commit message. Each figure
there is today/ref, the median of the per-round ratios, with each round's ratio beside it (\`*\`
marks a round that other processes disturbed). Above 1× means more today: better for req/s and
MiB/s. Below 1× means less today: better for latency and RSS growth. "Today" is the working tree
with its uncommitted changes, so \`--against HEAD\` measures work not yet committed; on a clean
tree it runs the same code on both sides and shows how large the noise is.

- Defaults with \`--against\`: only the RestPipe paths and the sections throughput, latency and
  stream. \`--paths direct,nginx,stunnel,rp-c2s,rp-s2c\` adds the baselines (and the stunnel
  transfer). Agents and profile, if asked for, measure today's tree only. With \`--quick\`:
  2 rounds, 128 MiB transfers, at most 1 s of waiting for a quiet machine, no load taken again.
- The worktree lives only for the build. The built tree is then kept, no longer a worktree, in
  \`/tmp/restpipe-bench-against/\` (the system's temporary directory; the three most recent
  builds), so another run against the same commit, or against one that differs only in
  \`bench/\`, \`docs/\` or markdown files, does not build again. \`--no-cache\` builds in the run's
  temporary directory and deletes the build at the end. A failed or interrupted build removes
  its worktree.
`;
}
