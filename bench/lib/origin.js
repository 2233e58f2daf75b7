#!/usr/bin/env node
// The baseline origin: a plain Fastify server (no tunnel) with the same tiny
// `time` handler, a byte sink and a blob source for the transfer tests.
//   ORIGIN_PORT=… node bench/lib/origin.js
import Fastify from 'fastify';
import { blobStream } from './blob.js';

const app = Fastify({ logger: false, bodyLimit: 0x7fffffff });
app.removeAllContentTypeParsers();
// The sink counts bytes as they stream in: nothing is buffered.
app.addContentTypeParser('*', (_req, payload, done) => {
  let n = 0;
  payload.on('data', (c) => (n += c.length));
  payload.on('end', () => done(null, n));
  payload.on('error', done);
});
app.get('/time', async () => ({ time_from_server: Date.now() / 1000 }));
app.post('/sink', async (req) => ({ bytes: req.body ?? 0 }));
app.get('/blob', async (req, reply) => {
  reply.type('application/octet-stream');
  return blobStream(Number(req.query.bytes ?? 0));
});
await app.listen({ host: '127.0.0.1', port: Number(process.env.ORIGIN_PORT ?? 0) });
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
