#!/usr/bin/env node
// A fleet of idle agents in one process, each with its own TLS connection and
// its own client certificate (CN agent-<i>), all over one shared key pair.
//   mode "restpipe": RestPipeClient instances (no gateway), default heartbeats
//                    and reconnect settings, as an agent runs them
//   mode "bare":     plain node:tls mutual-TLS connections that just stay open
// IPC: start → dial them all; status → how many are up; the parent kills us.
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { pino } from 'pino';
import { RestPipeClient, loadClientConfig } from '@restpipe/client';

const spec = JSON.parse(readFileSync(process.env.FLEET_SPEC, 'utf8'));
const { mode, host, port, caPem, keyPem, certs } = spec;
let connected = 0;
let connects = 0;
let failures = 0;
const agents = [];

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

function startRestpipe(certPem) {
  const client = new RestPipeClient({ config, identity: { key: keyPem, cert: certPem, ca: caPem }, gateway: false, log });
  client.on('status', (e) => {
    if (e.type === 'connected') {
      connected++;
      connects++;
    } else if (e.type === 'disconnected') connected--;
    else if (e.type === 'connect_failed') failures++;
  });
  agents.push(client);
  return client.start();
}

function startBare(certPem) {
  const secureContext = tls.createSecureContext({ key: keyPem, cert: certPem, ca: caPem, minVersion: 'TLSv1.2' });
  const dial = () => {
    const s = tls.connect({ host, port, secureContext, rejectUnauthorized: true });
    s.once('secureConnect', () => {
      s.setNoDelay(true);
      s.setKeepAlive(true, 30_000);
      connected++;
      connects++;
    });
    s.on('data', () => {});
    s.once('error', () => failures++);
    s.once('close', () => {
      if (s.authorized) connected--;
    });
    agents.push(s);
  };
  dial();
}

const commands = {
  async start() {
    for (const certPem of certs) {
      if (mode === 'restpipe') await startRestpipe(certPem);
      else startBare(certPem);
    }
    return { agents: certs.length };
  },
  status() {
    return { connected, connects, failures, rss: process.memoryUsage().rss };
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
