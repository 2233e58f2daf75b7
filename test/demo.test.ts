/**
 * The README's quick start: `npm run demo -- --check` makes identities with
 * restpipe-certs, starts both executables and answers every printed curl line;
 * the nodes log readable lines, and nothing that is expected (the server not
 * up yet, the pipe closing at the end) shows as a warning.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { closeAll, freePort, onClose } from './helpers/pipe.js';

afterEach(closeAll);

it('runs the quick start and every printed curl line answers', async () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const work = await mkdtemp(join(tmpdir(), 'restpipe-demo-'));
  onClose(() => rm(work, { recursive: true, force: true }));
  // Info logs (the check alone logs only warnings), in the demo's own format.
  const env: Record<string, string> = { ...(process.env as Record<string, string>), RP_DEMO_DIR: work, RP_LOG_LEVEL: 'info' };
  delete env['RP_LOG_FORMAT'];
  for (const name of ['RP_SERVER_BIND_PORT', 'RP_SERVER_GATEWAY_PORT', 'RP_CLIENT_GATEWAY_PORT']) env[name] = String(await freePort());
  const child = spawn(process.execPath, [join(root, 'scripts/demo.js'), '--check'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  onClose(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const [code] = await once(child, 'exit');
  expect(out).toContain('{"result_from_server":"hello world"}');
  expect(out).toContain('{"result_from_client":"hello world"}');
  expect(out).toMatch(/\{"time_from_server":\d+(\.\d+)?\}/);
  expect(out).toMatch(/\{"time_from_client":\d+(\.\d+)?\}/);
  expect(out).not.toContain('unexpected');
  expect(code).toBe(0);
  // Readable log lines from both nodes, no JSON line, and no warning or error.
  const jsonLines = out.split('\n').filter((line) => {
    try {
      return typeof JSON.parse(line) === 'object';
    } catch {
      return false;
    }
  });
  expect(jsonLines).toEqual([]);
  expect(out).toMatch(/^\[[\d:.]+\] INFO \(restpipe-server\): pipe listening for clients \{/m);
  expect(out).toMatch(/^\[[\d:.]+\] INFO \(restpipe-client\): connected to the server \{.*"attempts":1\}$/m);
  expect(out).not.toMatch(/^\[[\d:.]+\] (WARN|ERROR|FATAL) /m);
});
