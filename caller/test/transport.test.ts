/**
 * The caller's connections: raw streaming of large replies without
 * buffering, a gateway on a unix socket, a dispatcher of the application's
 * own, and close() leaving no socket open.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCaller } from '@restpipe/caller';
import { Agent } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, onClose, startPair } from '../../test/helpers/pipe.js';
import { MiB, TestClientHandler, TestServerHandler, callerFor, pattern, sha256Of } from './fixtures.js';

afterEach(closeAll);

/** Open connections of a gateway's HTTP server. */
function connections(server: Server | undefined): Promise<number> {
  if (!server) throw new Error('no gateway');
  return new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

async function until(check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('raw replies', () => {
  it('streams a 100 MiB reply through a Readable, bytes intact, never buffered whole', async () => {
    const handler = new TestServerHandler();
    const { client } = await startPair({ server: { handler } });
    const server = callerFor(client.gatewayAddress).server;
    const expected = await sha256Of(pattern(100 * MiB));
    const reply = await server.get('big', { raw: true, args: ['100'] });
    expect(reply).toMatchObject({ status: 200, code: 0, mimetype: 'application/octet-stream' });
    expect(reply.headers['x-event-return-code']).toBe('0');
    // Streamed by the handler: chunked, no length known up front.
    expect(reply.headers['transfer-encoding']).toBe('chunked');
    // The call resolved with the reply's start; while nobody reads, flow control holds the
    // handler back: far less than the whole reply is ever produced.
    await new Promise((r) => setTimeout(r, 300));
    expect(handler.bigProduced).toBeLessThan(32 * MiB);
    expect(await sha256Of(reply.body)).toEqual(expected);
    expect(handler.bigProduced).toBe(100 * MiB);
  });

  it('a raw reply can be read with the body mixins and destroyed half-read', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const server = callerFor(client.gatewayAddress).server;
    const json = await server.get('time', { raw: true });
    expect(typeof ((await json.body.json()) as { time_from_server: number }).time_from_server).toBe('number');
    const big = await server.get('big', { raw: true, args: ['32'] });
    for await (const _piece of big.body) break; // leaving the loop destroys the body
    expect(big.body.destroyed).toBe(true);
    expect(await server.get('text')).toBe('héllo wörld');
  });
});

describe('unix socket gateway', () => {
  it('calls a client gateway listening on RP_CLIENT_GATEWAY_SOCKET, and a server gateway on TCP back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rp-caller-'));
    onClose(() => rm(dir, { recursive: true, force: true }));
    const socketPath = join(dir, 'client-gateway.sock');
    const { server } = await startPair({
      server: { handler: new TestServerHandler() },
      client: { name: 'sock-client', handler: new TestClientHandler('on a socket'), env: { RP_CLIENT_GATEWAY_SOCKET: socketPath } },
    });
    const caller = callerFor({ socketPath });
    expect(await caller.server.get<{ peer: string; args: string[] }>('echo', { args: ['a b'] })).toMatchObject({ peer: 'sock-client', args: ['a b'] });
    await expect(caller.server.get('fail')).rejects.toMatchObject({ code: 251, remoteClass: 'TypeError' });
    const back = callerFor(server.gatewayAddress);
    expect(await back.client('sock-client').get('whoami')).toMatchObject({ label: 'on a socket' });
  });
});

describe('close()', () => {
  it('leaves no socket open at the gateway', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const caller = createCaller(client.gatewayAddress!);
    onClose(() => caller.close());
    await Promise.all(Array.from({ length: 8 }, () => caller.server.get('time')));
    const reply = await caller.server.get('big', { raw: true, args: ['1'] });
    await reply.body.dump({ limit: 2 * MiB });
    expect(await connections(client.gateway?.server)).toBeGreaterThan(0);
    await caller.close();
    await until(async () => (await connections(client.gateway?.server)) === 0);
    expect(caller.closed).toBe(true);
  });

  it('waits for calls in flight before closing', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const caller = createCaller(client.gatewayAddress!);
    onClose(() => caller.close());
    const call = caller.server.get('slow', { timeoutMs: 300 });
    const settled = call.catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    await caller.close();
    expect(await settled).toMatchObject({ code: 244 });
    await until(async () => (await connections(client.gateway?.server)) === 0);
  });

  it('does not close a dispatcher passed in', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const agent = new Agent();
    onClose(() => agent.close());
    const caller = createCaller(client.gatewayAddress!, { dispatcher: agent });
    expect(await caller.server.get('text')).toBe('héllo wörld');
    await caller.close();
    expect(agent.closed).toBe(false);
    const again = createCaller(client.gatewayAddress!, { dispatcher: agent });
    expect(await again.server.get('text')).toBe('héllo wörld');
    await again.close();
  });
});
