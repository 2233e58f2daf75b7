#!/usr/bin/env node
// Experiment behind a proposal in docs/benchmarks.md: transfer speed through
// the pipe (client gateway, 512 MiB each way, streamed) under different
// stream settings. Not part of `npm run bench`.
//   node bench/experiments/stream-settings.js
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBenchIdentities } from '../lib/identities.js';
import { startClient, startServer } from '../lib/nodes.js';
import { ask, freePort, killAll, procCpu, startChild, stopChild, waitQuiet } from '../lib/util.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(join(os.tmpdir(), 'restpipe-stream-exp-'));
const ids = await createBenchIdentities(join(work, 'ids'));
const loader = startChild('loader', process.execPath, [join(root, 'bench/lib/loader.js')], { ipc: true });
const bytes = 512 * 1024 * 1024;
const MiB = 1024 * 1024;
const settings = [
  { label: 'defaults (window 1 MiB, chunk 64 KiB, connection buffer 4 MiB)', env: {} },
  { label: 'window 4 MiB', env: { RP_STREAM_WINDOW_BYTES: String(4 * MiB) } },
  { label: 'window 8 MiB, connection buffer 16 MiB', env: { RP_STREAM_WINDOW_BYTES: String(8 * MiB), RP_STREAM_CONNECTION_BUFFER_BYTES: String(16 * MiB) } },
  {
    label: 'chunk 256 KiB, window 8 MiB, connection buffer 16 MiB',
    env: { RP_STREAM_CHUNK_BYTES: String(256 * 1024), RP_STREAM_WINDOW_BYTES: String(8 * MiB), RP_STREAM_CONNECTION_BUFFER_BYTES: String(16 * MiB) },
  },
];
try {
  for (const { label, env } of settings) {
    const [pipePort, sgw, cgw] = [await freePort(), await freePort(), await freePort()];
    const server = await startServer(root, ids, { pipePort, gatewayPort: sgw, env });
    const client = await startClient(root, ids, { pipePort, gatewayPort: cgw, env });
    const out = [];
    for (const dir of ['upload', 'download']) {
      await waitQuiet();
      const url = dir === 'upload' ? `http://127.0.0.1:${cgw}/server/sink` : `http://127.0.0.1:${cgw}/server/blob?bytes=${bytes}`;
      const c0 = procCpu(client.pid) + procCpu(server.pid);
      const r = await ask(loader, 'transfer', { url, method: dir === 'upload' ? 'POST' : 'GET', requestBytes: bytes, count: 1 }, 600_000);
      const cpu = procCpu(client.pid) + procCpu(server.pid) - c0;
      out.push(`${dir} ${(r.bytes / MiB / r.seconds).toFixed(0)} MiB/s (nodes' CPU ${((cpu / (r.bytes / MiB)) * 1000).toFixed(1)} ms/MiB)`);
    }
    console.log(`${label}: ${out.join(', ')}`);
    await stopChild(client);
    await stopChild(server);
  }
} finally {
  await killAll();
  rmSync(work, { recursive: true, force: true });
}
