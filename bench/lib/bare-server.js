#!/usr/bin/env node
// The comparison for memory per agent: a bare Node mutual-TLS server that
// accepts the same clients (same CA, same server identity, client
// certificate required) and holds their connections, doing nothing else.
//   node --expose-gc --import bench/lib/probe.js bench/lib/bare-server.js
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';

const dir = process.env.BARE_CERT_PATH;
const read = (f) => readFileSync(join(dir, f));
const state = (globalThis.__restpipeBench ??= { clients: 0, added: 0, removed: 0 });
const server = tls.createServer(
  {
    key: read('restpipe.server.key.pem'),
    cert: read('restpipe.server.crt.pem'),
    ca: read('ca.crt.pem'),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  },
  (socket) => {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    state.clients++;
    state.added++;
    socket.on('data', () => {});
    socket.on('error', () => {});
    socket.once('close', () => {
      state.clients--;
      state.removed++;
    });
  },
);
// BARE_BACKLOG: listen backlog (Node's default is 511), for experiments.
server.listen({ port: Number(process.env.BARE_PORT), host: '127.0.0.1', ...(process.env.BARE_BACKLOG ? { backlog: Number(process.env.BARE_BACKLOG) } : {}) });
process.on('SIGTERM', () => process.exit(0));
