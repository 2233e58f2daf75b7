#!/usr/bin/env node
// Experiment behind proposals in docs/benchmarks.md: server CPU per mutual-TLS
// handshake in Node. Not part of `npm run bench`.
//   node bench/experiments/handshakes.js [--only bare|restpipe]
//
// bare:     a plain node:tls server in its own process, 2,000 handshakes, 20 at
//           a time: RSA-2048 identities from certs-tool vs P-256 identities
//           (made with the openssl CLI: certs-tool makes RSA only), full
//           handshakes vs TLS 1.3 session resumption with tickets.
// restpipe: the RestPipe server executable (server/dist/cli.js, its ticket
//           keys) and real RestPipeClients (100 agents, each its own
//           certificate, 20 reconnecting at a time, 400 reconnects of each
//           kind). A reconnect is what a restart storm costs the server per
//           agent plus the close of the old connection: TLS handshake, accept
//           checks, the pipe's Hello both ways. Resumed: the client closes its
//           pipe and dials again with its session ticket. Full: the same after
//           a reload of the client's identity (a new certificate of the same
//           name), which drops the ticket. Server CPU is process.cpuUsage()
//           in the server around each kind's reconnects (asked over IPC).
import { execFileSync, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { ask, freePort, killAll, procCpu, stopChild, which } from '../lib/util.js';

const N = 2000;
const self = fileURLToPath(import.meta.url);
const root = join(dirname(self), '../..');
const onlyAt = process.argv.indexOf('--only');
const only = onlyAt > 0 ? process.argv[onlyAt + 1] : undefined;

if (process.argv[2] === 'server') {
  const f = JSON.parse(readFileSync(process.argv[3], 'utf8'));
  // Fixed ticket keys and a session id context, as a server that wants
  // tickets to survive its restarts would configure them.
  const srv = tls.createServer(
    { key: f.skey, cert: f.scert, ca: f.ca, requestCert: true, rejectUnauthorized: true, ticketKeys: Buffer.alloc(48, 7), sessionIdContext: 'restpipe' },
    (s) => {
      s.getPeerCertificate();
      s.on('data', () => {});
      s.on('error', () => {});
      s.on('end', () => s.end());
    },
  );
  srv.listen(0, '127.0.0.1', () => process.send(srv.address().port));
} else {
  const work = mkdtempSync(join(os.tmpdir(), 'restpipe-hs-'));
  try {
    const { createBenchIdentities } = await import('../lib/identities.js');
    const ids = await createBenchIdentities(join(work, 'ids'));
    if (only !== 'restpipe') await bareHandshakes(work, ids);
    if (only !== 'bare') await restpipeReconnects(ids);
  } finally {
    await killAll();
    rmSync(work, { recursive: true, force: true });
  }
}

async function bareHandshakes(work, ids) {
  {
    const kinds = {
      'RSA-2048 (certs-tool)': { skey: ids.server.keyPem, scert: ids.server.certPem, ca: ids.ca.certPem, ckey: ids.client.keyPem, ccert: ids.client.certPem },
    };
    if (which('openssl')) kinds['P-256 (openssl)'] = ecIdentities(work);
    else console.log('openssl is not installed: P-256 skipped');
    for (const [kind, f] of Object.entries(kinds)) {
      const file = join(work, 'ids.json');
      writeFileSync(file, JSON.stringify(f));
      for (const resume of [false, true]) {
        const child = fork(self, ['server', file]);
        const port = await new Promise((res) => child.once('message', res));
        const ctx = tls.createSecureContext({ key: f.ckey, cert: f.ccert, ca: f.ca });
        let session;
        const one = () =>
          new Promise((res, rej) => {
            const s = tls.connect({ host: '127.0.0.1', port, secureContext: ctx, servername: 'localhost', session: resume ? session : undefined });
            let reused = false;
            s.on('session', (x) => {
              session = x;
              s.end();
            });
            s.on('secureConnect', () => {
              reused = s.isSessionReused();
              if (!resume) s.end();
              else setTimeout(() => s.end(), 50);
            });
            s.on('data', () => {});
            s.on('error', rej);
            s.on('close', () => res(reused));
          });
        await one();
        await one();
        let reused = 0;
        const c0 = procCpu(child.pid);
        const t0 = performance.now();
        for (let i = 0; i < N; i += 20) for (const r of await Promise.all(Array.from({ length: 20 }, one))) reused += r ? 1 : 0;
        const cpu = procCpu(child.pid) - c0;
        console.log(
          `${kind.padEnd(22)} ${resume ? 'resumed' : 'full   '}: server CPU ${((cpu / N) * 1000).toFixed(2)} ms per handshake, ${(N / ((performance.now() - t0) / 1000)).toFixed(0)} handshakes/s, ${reused}/${N} resumed`,
        );
        child.kill();
      }
    }
  }
}

/** Server CPU per reconnect of real RestPipeClients to the RestPipe server executable, full vs resumed. */
async function restpipeReconnects(ids) {
  const AGENTS = 100;
  const BATCH = 20;
  const ROUNDS = 4;
  const { signAgentCertificates } = await import('../lib/identities.js');
  const { startServer } = await import('../lib/nodes.js');
  const { RestPipeClient, loadClientConfig } = await import('@restpipe/client');
  const { pino } = await import('pino');
  // Two certificates per agent (same name, new serial): reloading the other one drops the client's ticket.
  const certs = [signAgentCertificates(ids.ca, ids.agentKey, AGENTS), signAgentCertificates(ids.ca, ids.agentKey, AGENTS)];
  const [pipePort, gatewayPort] = [await freePort(), await freePort()];
  const server = await startServer(root, ids, { pipePort, gatewayPort, hooks: true, name: 'restpipe-server (handshakes)' });
  const config = await loadClientConfig({
    RP_CLIENT_TARGET_HOSTNAME: '127.0.0.1',
    RP_CLIENT_TARGET_PORT: String(pipePort),
    // Dial again at once, whatever the pipe's age: the experiment paces the reconnects itself.
    RP_CLIENT_RECONNECT_INITIAL_S: '0.001',
    RP_CLIENT_RECONNECT_STABLE_S: '0',
    RP_STATSD_HOST: '',
    RP_LOG_LEVEL: 'error',
  });
  const log = pino({ level: 'error' });
  const agents = certs[0].map((cert) => {
    const client = new RestPipeClient({ config, identity: { key: ids.agentKey.keyPem, cert, ca: ids.ca.certPem }, gateway: false, log });
    const agent = { client, which: 0, waiters: [] };
    client.on('status', (e) => {
      if (e.type === 'connected') for (const w of agent.waiters.splice(0)) w(e.resumed === true);
    });
    return agent;
  });
  const connected = (a) => new Promise((resolve) => a.waiters.push(resolve));
  const serverCpuMs = async () => {
    const u = await ask(server, 'cpu');
    return (u.user + u.system) / 1000;
  };
  /** Runs `dial` on every agent, BATCH at a time, each batch waiting for its pipes; returns server ms per dial and how many resumed. */
  const measure = async (dial) => {
    let resumed = 0;
    const c0 = await serverCpuMs();
    const t0 = performance.now();
    for (let i = 0; i < agents.length; i += BATCH) {
      const batch = agents.slice(i, i + BATCH);
      const up = batch.map(connected);
      for (const a of batch) dial(a);
      for (const r of await Promise.all(up)) resumed += r ? 1 : 0;
    }
    const ms = (await serverCpuMs()) - c0;
    return { msPer: ms / agents.length, resumed, perS: agents.length / ((performance.now() - t0) / 1000) };
  };
  const closePipe = (a) => a.client.exchange?.close(new Error('reconnect (handshakes experiment)'));
  const rows = { 'first connect': [], 'reconnect, full': [], 'reconnect, resumed': [] };
  try {
    rows['first connect'].push(await measure((a) => a.client.start()));
    for (let round = 0; round < ROUNDS; round++) {
      rows['reconnect, resumed'].push(await measure(closePipe));
      rows['reconnect, full'].push(
        await measure((a) => {
          a.which = 1 - a.which;
          a.client.reloadIdentity({ key: ids.agentKey.keyPem, cert: certs[a.which][agents.indexOf(a)], ca: ids.ca.certPem });
          closePipe(a);
        }),
      );
    }
    console.log(`RestPipe server (server/dist/cli.js), ${AGENTS} RestPipeClients, ${BATCH} at a time, ${ROUNDS} rounds of reconnects:`);
    for (const [what, rs] of Object.entries(rows)) {
      const n = rs.length * AGENTS;
      const ms = rs.reduce((x, r) => x + r.msPer, 0) / rs.length;
      const resumed = rs.reduce((x, r) => x + r.resumed, 0);
      const perS = rs.reduce((x, r) => x + r.perS, 0) / rs.length;
      console.log(
        `  ${what.padEnd(20)}: server CPU ${ms.toFixed(2)} ms per agent (rounds ${rs.map((r) => r.msPer.toFixed(2)).join(', ')}), ${perS.toFixed(0)} agents/s, ${resumed}/${n} resumed`,
      );
    }
  } finally {
    await Promise.all(agents.map((a) => a.client.close(0)));
    await stopChild(server);
  }
}

function ecIdentities(dir) {
  const o = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: ['ignore', 'pipe', 'ignore'] });
  o('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ec-ca.key');
  o(
    'req',
    '-x509',
    '-new',
    '-key',
    'ec-ca.key',
    '-subj',
    '/CN=EC CA',
    '-days',
    '2',
    '-out',
    'ec-ca.crt',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
  );
  for (const [name, cn, ext] of [
    ['ec-s', 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'],
    ['ec-c', 'agent-ec', 'extendedKeyUsage=clientAuth\n'],
  ]) {
    o('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`);
    o('req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`);
    writeFileSync(join(dir, `${name}.ext`), ext);
    o(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ec-ca.crt',
      '-CAkey',
      'ec-ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.crt`,
    );
  }
  const r = (f) => readFileSync(join(dir, f), 'utf8');
  return { skey: r('ec-s.key'), scert: r('ec-s.crt'), ca: r('ec-ca.crt'), ckey: r('ec-c.key'), ccert: r('ec-c.crt') };
}
