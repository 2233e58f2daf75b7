/**
 * What a server loads before its pipe listens: nats.js only for a cluster
 * (RP_SERVER_NATS_URL), Fastify only once the pipe port is open, hot-shots
 * only with statsd on, prom-client only with a scrape. A restarted server's
 * clients come back as soon as the pipe listens.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The packages a fresh Node process has loaded after importing `@restpipe/server`. */
function packagesLoadedByImport(): string[] {
  const script = `
    import { createRequire } from 'node:module';
    await import('@restpipe/server');
    const names = Object.keys(createRequire(import.meta.url).cache)
      .map((k) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(k)?.[1])
      .filter(Boolean);
    console.log(JSON.stringify([...new Set(names)]));
  `;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' }));
}

describe('start-up', () => {
  it('importing the server loads none of Fastify, nats.js, hot-shots and prom-client (and does load what the pipe needs)', () => {
    const loaded = packagesLoadedByImport();
    expect(loaded).toEqual(expect.arrayContaining(['pino', 'protobufjs']));
    const deferred = (name: string) => ['fastify', 'hot-shots', 'prom-client'].includes(name) || /^@(fastify|nats-io)\//.test(name);
    expect(loaded.filter(deferred)).toEqual([]);
  });
});
