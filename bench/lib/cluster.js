// The cluster section of the bench: two RestPipe server instances on one
// nats-server, the load client connected to instance A. The same request
// (`/client/<name>/time`) through A's gateway (local) and through B's (the
// remote hop: B → NATS link → A → pipe) in the same rounds, interleaved;
// then failover: agents on an instance that is SIGKILLed, timed until the
// surviving instance holds them all and a third instance sees them there.
import { startClient, startServer } from './nodes.js';
import { ask, fmtMs, fmtNum, freePort, median, startChild, stopChild, waitForPort, waitUntil, which } from './util.js';

/** nats-server on 127.0.0.1:`port`, or undefined when it is not installed. */
export async function startNats(port) {
  const bin = which('nats-server');
  if (!bin) return undefined;
  const child = startChild('nats-server', bin, ['-a', '127.0.0.1', '-p', String(port)]);
  await waitForPort(port, '127.0.0.1', 15_000, 'nats-server');
  return child;
}

/** The status of an instance's gateway. */
async function status(gatewayPort) {
  const res = await fetch(`http://127.0.0.1:${gatewayPort}/_restpipe/status`);
  return res.json();
}

/**
 * Runs the section. `ctx`: { root, ids, work, o, log, step, loader, measured,
 * loadClientName, startFleets, signAgentCertificates, results }.
 */
export async function clusterSection(ctx) {
  const { root, ids, o, log, step, loader, measured, loadClientName } = ctx;
  step(`cluster: two server instances on one nats-server; the load client on instance a; local (a's gateway) vs remote (b's gateway → NATS → a)`);
  const natsPort = await freePort();
  const nats = await startNats(natsPort);
  const row = { conns: o.clusterConns, rate: o.rate };
  ctx.results.cluster = row;
  if (!nats) {
    row.skipped = 'nats-server is not installed (apt-get install nats-server)';
    log(`  skipped: ${row.skipped}`);
    return;
  }
  const natsUrl = `nats://127.0.0.1:${natsPort}`;
  const started = [];
  try {
    const [pa, ga, pb, gb, gc] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const instance = (name, pipePort, gatewayPort) =>
      startServer(root, ids, { pipePort, gatewayPort, name: `restpipe-server ${name}`, env: { RP_SERVER_NATS_URL: natsUrl, RP_SERVER_INSTANCE_NAME: name } });
    const a = await instance('a', pa, ga);
    const b = await instance('b', pb, gb);
    started.push(a, b);
    const client = await startClient(root, ids, { pipePort: pa, gatewayPort: gc, name: 'restpipe-client (cluster)' });
    started.push(client);
    const local = { id: 'local', label: 'RestPipe, local instance', url: `http://127.0.0.1:${ga}/client/${loadClientName}/time` };
    const remote = { id: 'remote', label: 'RestPipe, remote instance', url: `http://127.0.0.1:${gb}/client/${loadClientName}/time` };
    await waitUntil(
      () =>
        fetch(remote.url).then(
          (r) => r.ok,
          () => false,
        ),
      { timeoutMs: 20_000, intervalMs: 100, what: 'the load client to answer through instance b' },
    );
    const paths = [local, remote];
    const closed = { local: [], remote: [] };
    const rate = { local: [], remote: [] };
    for (let r = 0; r < o.rounds; r++) {
      for (const p of r % 2 === 0 ? paths : [...paths].reverse()) {
        const res = await measured(`${p.label} at ${o.clusterConns} connections`, () =>
          ask(loader, 'closed', { url: p.url, connections: o.clusterConns, seconds: o.duration, warmupSeconds: o.warmup }),
        );
        closed[p.id].push(res);
        log(
          `  round ${r + 1} c=${o.clusterConns} ${p.label.padEnd(28)} ${fmtNum(res.rps).padStart(7)} req/s  p50 ${fmtMs(res.p50)} ms  p99 ${fmtMs(res.p99)} ms${res.non2xx || res.errors ? `  (non-2xx ${res.non2xx}, errors ${res.errors})` : ''}`,
        );
      }
      for (const p of r % 2 === 0 ? paths : [...paths].reverse()) {
        const res = await measured(`${p.label} at ${o.rate} req/s`, () =>
          ask(loader, 'rate', { url: p.url, rate: o.rate, seconds: o.rateSeconds, warmupSeconds: 1, connections: 32 }),
        );
        rate[p.id].push(res);
        log(
          `  round ${r + 1} ${fmtNum(o.rate)} req/s ${p.label.padEnd(28)} p50 ${fmtMs(res.p50)} ms  p99 ${fmtMs(res.p99)} ms${res.non2xx || res.errors ? `  (non-2xx ${res.non2xx}, errors ${res.errors})` : ''}`,
        );
      }
    }
    for (const id of ['local', 'remote']) {
      row[id] = {
        rps: median(closed[id].map((x) => x.rps)),
        closedP50: median(closed[id].map((x) => x.p50)),
        closedP99: median(closed[id].map((x) => x.p99)),
        rateP50: median(rate[id].map((x) => x.p50)),
        rateP99: median(rate[id].map((x) => x.p99)),
        achieved: median(rate[id].map((x) => x.achievedRps)),
        bad: [...closed[id], ...rate[id]].reduce((n, x) => n + (x.non2xx ?? 0) + (x.errors ?? 0), 0),
        foreign: [...closed[id], ...rate[id]].map((x) => x.foreign),
      };
    }
    row.ratio = row.remote.rps / row.local.rps;
    row.addedP50 = row.remote.rateP50 - row.local.rateP50;
    log(
      `  remote/local req/s at ${o.clusterConns} connections ${row.ratio.toFixed(2)}× (target ≥ 0.7×); p50 at ${fmtNum(o.rate)} req/s +${fmtMs(row.addedP50)} ms (target ≤ 0.3 ms)`,
    );
    await stopChild(client);

    // Failover: agents on instance c (instance d is not up yet, so every agent
    // that shuffled d first moves on to c), then d starts, c is killed.
    const n = o.clusterAgents;
    if (n > 0) {
      const [pc, gcc, pd, gd] = [await freePort(), await freePort(), await freePort(), await freePort()];
      const c = await instance('c', pc, gcc);
      started.push(c);
      const certs = ctx.signAgentCertificates(ids.ca, ids.agentKey, n);
      const fleets = await ctx.startFleets(n, 'restpipe', pc, certs, ids.agentKey.keyPem, `127.0.0.1:${pc},127.0.0.1:${pd}`);
      started.push(...fleets);
      await Promise.all(fleets.map((f) => ask(f, 'start')));
      await waitUntil(async () => (await status(gcc)).clients >= n, {
        timeoutMs: Math.max(60_000, n * 30),
        intervalMs: 200,
        what: `${n} agents on instance c`,
      });
      const d = await instance('d', pd, gd);
      started.push(d);
      await waitUntil(async () => (await status(gb)).clusterClients >= n, { timeoutMs: 60_000, intervalMs: 200, what: `instance b to see the ${n} agents` });
      const killedAt = performance.now();
      c.expectedExit = true;
      c.kill('SIGKILL');
      const onD = async () => (await status(gd)).clients;
      const seenOnD = async () => {
        const res = await fetch(`http://127.0.0.1:${gb}/_restpipe/clients`);
        const list = await res.json();
        return list.filter((x) => x.instance === 'd').length;
      };
      try {
        await waitUntil(async () => (await onD()) >= n, { timeoutMs: 120_000, intervalMs: 100, what: `${n} agents on instance d` });
        row.failoverConnectedS = (performance.now() - killedAt) / 1000;
        await waitUntil(async () => (await seenOnD()) >= n, { timeoutMs: 60_000, intervalMs: 100, what: `instance b to see ${n} agents on d` });
        row.failoverS = (performance.now() - killedAt) / 1000;
      } catch {
        row.failoverS = Number.NaN;
        row.failoverPartial = await seenOnD().catch(() => 0);
      }
      const fs = await Promise.all(fleets.map((f) => ask(f, 'status')));
      row.failoverAgents = n;
      row.failoverResumed = fs.reduce((s, x) => s + (x.handshakes?.resumed ?? 0), 0);
      log(
        `  failover: ${fmtNum(n)} agents on c, c SIGKILLed: all on d after ${fmtNum(row.failoverConnectedS, 1)} s, seen there by b after ${fmtNum(row.failoverS, 1)} s (target ≤ 10 s)`,
      );
    }
  } finally {
    for (const child of started.reverse()) await stopChild(child).catch(() => {});
    await stopChild(nats).catch(() => {});
  }
}
