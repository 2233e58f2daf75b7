/**
 * What a server loads before its pipe listens: nats.js only for a cluster
 * (RP_SERVER_NATS_URL), Fastify only once the pipe port is open. A
 * restarted server's clients come back as soon as the pipe listens.
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
  it('importing the server loads neither Fastify nor nats.js (and does load what the pipe needs)', () => {
    const loaded = packagesLoadedByImport();
    expect(loaded).toEqual(expect.arrayContaining(['pino', 'protobufjs']));
    expect(loaded.filter((name) => name === 'fastify' || name.startsWith('@fastify/') || name.startsWith('@nats-io/'))).toEqual([]);
  });
});
