#!/usr/bin/env node
// A fleet of idle agents in one process, each with its own TLS connection and
// its own client certificate (CN agent-<i>), all over one shared key pair.
//   mode "restpipe": RestPipeClient instances (no gateway), default heartbeats
//                    and reconnect settings, as an agent runs them: each speaks
//                    the pipe protocol (Hello, heartbeats), keeps the server's
//                    last session ticket and offers it on its next dial, and
//                    waits between attempts with the client's full-jitter backoff
//   mode "bare":     plain node:tls mutual-TLS connections that just stay open
//                    (no tickets: the bare server is only measured connecting)
// IPC: start → dial them all; status → how many are up, handshakes resumed and
// full, failed attempts by kind, this process's CPU, its longest event-loop
// delay since the last status; the parent kills us.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino } from 'pino';
import { RestPipeClient, loadClientConfig } from '@restpipe/client';

const spec = JSON.parse(readFileSync(process.env.FLEET_SPEC, 'utf8'));
const { mode, host, port, caPem, keyPem, certs } = spec;
let connected = 0;
let connects = 0;
let failures = 0;
// Completed handshakes, from the client's own account (`isSessionReused()`):
// those that led to a pipe, and those whose attempt failed after the handshake.
const handshakes = { resumed: 0, full: 0, failedResumed: 0, failedFull: 0 };
// Failed attempts by why they failed (the server down, a connect timeout, …).
const failureKinds = {};

/** A short name for why an attempt failed, to tell a server that is down from one that is overloaded. */
function failureKind(err) {
  const code = err?.code;
  if (typeof code === 'string') return code;
  const m = String(err?.message ?? err);
  if (/^the TLS handshake and hello .* took over \d+ ms/.test(m)) return 'handshake timeout';
  if (/took over \d+ ms/.test(m)) return 'connect timeout';
  if (/during the handshake/.test(m)) return 'closed during TLS handshake';
  if (/before the server said hello/.test(m)) return 'closed before hello';
  return m.slice(0, 60);
}
const agents = [];
// How late this process's event loop ran (a saturated fleet answers its agents' sockets late).
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

const log = pino({ level: 'error' });
const config =
  mode === 'restpipe'
    ? await loadClientConfig({
        RP_CLIENT_TARGET_HOSTNAME: host,
        RP_CLIENT_TARGET_PORT: String(port),
        RP_STATSD_HOST: '',
        RP_LOG_LEVEL: 'error',
      })
    : undefined;

function prepareRestpipe(certPem) {
  const client = new RestPipeClient({ config, identity: { key: keyPem, cert: certPem, ca: caPem }, gateway: false, log });
  client.on('status', (e) => {
    if (e.type === 'connected') {
      connected++;
      connects++;
      if (e.resumed) handshakes.resumed++;
      else handshakes.full++;
    } else if (e.type === 'disconnected') connected--;
    else if (e.type === 'connect_failed') {
      failures++;
      const kind = failureKind(e.error);
      failureKinds[kind] = (failureKinds[kind] ?? 0) + 1;
      if (e.resumed === true) handshakes.failedResumed++;
      else if (e.resumed === false) handshakes.failedFull++;
    }
  });
  agents.push(client);
}

function startBare(secureContext) {
  // Like an agent, but with nothing on top of TLS: dial, hold the connection,
  // and dial again (after a random pause under a second) when an attempt fails.
  const dial = () => {
    let up = false;
    const s = tls.connect({ host, port, secureContext, rejectUnauthorized: true });
    const timer = setTimeout(() => s.destroy(new Error('connect timeout')), 10_000);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.setNoDelay(true);
      s.setKeepAlive(true, 30_000);
      up = true;
      connected++;
      connects++;
    });
    s.on('data', () => {});
    s.on('error', () => {});
    s.once('close', () => {
      clearTimeout(timer);
      if (up) connected--;
      else failures++;
      if (!stopping) setTimeout(dial, Math.random() * 1000);
    });
  };
  dial();
}

/** The longest event-loop delay since the last call, ms. */
function takeLoopMax() {
  const ms = loopDelay.max / 1e6;
  loopDelay.reset();
  return ms;
}

let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
  process.exit(0);
});

// Building 2,500 clients (a TLS context each) takes seconds of this process's
// CPU; it happens before the clock starts, so "connect all" times the dialing.
if (mode === 'restpipe') for (const certPem of certs) prepareRestpipe(certPem);
const bareContexts = mode === 'bare' ? certs.map((cert) => tls.createSecureContext({ key: keyPem, cert, ca: caPem, minVersion: 'TLSv1.2' })) : [];

const commands = {
  async start() {
    if (mode === 'restpipe') await Promise.all(agents.map((c) => c.start()));
    else for (const ctx of bareContexts) startBare(ctx);
    return { agents: certs.length };
  },
  status() {
    return {
      connected,
      connects,
      failures,
      failureKinds: { ...failureKinds },
      handshakes: { ...handshakes },
      cpuS: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
      rss: process.memoryUsage().rss,
      loopMaxMs: takeLoopMax(),
    };
  },
};

process.on('message', async (m) => {
  try {
    process.send({ id: m.id, result: await commands[m.cmd](m) });
  } catch (err) {
    process.send({ id: m.id, error: String(err?.stack ?? err) });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
