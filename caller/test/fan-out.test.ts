/**
 * Fan-out to many clients (`caller.clients(selector)`) and fire-and-forget
 * notifications (`notify: true`), over real pipes.
 */
import { PipeFailError, type FanoutEntry } from '@restpipe/caller';
import type { RestPipeServer } from '@restpipe/server';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, startClient, startPair, startServer, waitFor } from '../../test/helpers/pipe.js';
import { TestClientHandler, TestServerHandler, callerFor } from './fixtures.js';

afterEach(closeAll);

/** A server with clients alpha, beta and gamma (whose `maybe_fail` throws). */
async function fleet(): Promise<RestPipeServer> {
  const server = await startServer();
  for (const name of ['alpha', 'beta', 'gamma']) await startClient(server, { name, handler: new TestClientHandler(name) });
  await waitFor(() => server.registry.size === 3, 5000, 'three clients');
  return server;
}

describe('fan-out', () => {
  it('one call to every client: data per client, a PipeFailError for the one that threw', async () => {
    const server = await fleet();
    const all = callerFor(server.gatewayAddress).clients('*');
    expect(all.target).toBe('clients/*');
    const result = await all.get<string>('maybe_fail');
    expect(Object.keys(result).sort()).toEqual(['alpha', 'beta', 'gamma']);
    expect(result.alpha).toBe('alpha ok');
    expect(result.beta).toBe('beta ok');
    const gamma = result.gamma;
    expect(gamma).toBeInstanceOf(PipeFailError);
    expect(gamma).toMatchObject({
      code: 251,
      status: 500,
      remoteClass: 'Error',
      message: 'gamma fails',
      client: 'gamma',
      target: 'client/gamma',
      verb: 'GET',
      noun: 'maybe_fail',
    });
    expect((gamma as PipeFailError).traceback).toContain('get_maybe_fail');
  });

  it('lists, globs and arrays select clients; a listed client that is not connected gets a 242 entry', async () => {
    const server = await fleet();
    const caller = callerFor(server.gatewayAddress);
    expect(Object.keys(await caller.clients('al?ha,b*').get('whoami'))).toEqual(['alpha', 'beta']);
    const listed = await caller.clients(['gamma', 'nobody']).get<{ label: string }>('whoami', { query: { q: 'a b' } });
    expect(listed.gamma).toEqual({ label: 'gamma', query: { q: 'a b' } });
    expect(listed.nobody).toBeInstanceOf(PipeFailError);
    expect(listed.nobody).toMatchObject({ code: 242, status: 404, errorCode: 'RP_UNKNOWN_CLIENT', client: 'nobody' });
    expect(await caller.clients('zeta-*').get('whoami')).toEqual({});
  });

  it('sends the same body to each client; bytes come back as Buffers', async () => {
    const server = await fleet();
    const caller = callerFor(server.gatewayAddress);
    const echoed = await caller.clients('alpha,beta').post<{ label: string; data: unknown }>('echo', { n: 1 });
    expect(echoed.alpha).toMatchObject({ label: 'alpha', data: { n: 1 }, mimetype: 'application/json' });
    expect(echoed.beta).toMatchObject({ label: 'beta', data: { n: 1 } });
    const bytes = await caller.clients('*').get<Buffer>('bin');
    expect(bytes.alpha).toEqual(Buffer.from('alpha'));
    expect(bytes.gamma).toEqual(Buffer.from('gamma'));
  });

  it('raw: the entries exactly as the gateway sent them', async () => {
    const server = await fleet();
    const entries: Record<string, FanoutEntry> = await callerFor(server.gatewayAddress).clients('*').get('maybe_fail', { raw: true });
    expect(entries.alpha).toMatchObject({ code: 0, status: 200, mimetype: 'text/plain', data: 'alpha ok' });
    expect(entries.gamma).toMatchObject({ code: 251, status: 500, exception: { class: 'Error', message: 'gamma fails' } });
  });

  it('a failure of the whole call throws: a client node has no /clients route', async () => {
    const { client } = await startPair();
    await expect(callerFor(client.gatewayAddress).clients('*').get('time')).rejects.toMatchObject({
      name: 'PipeFailError',
      code: 255,
      errorCode: 'RP_NO_ROUTE',
    });
  });
});

describe('notify (fire-and-forget)', () => {
  it('resolves at once with nothing while the handler still runs; notes arrive in order', async () => {
    const handler = new TestServerHandler();
    let release!: () => void;
    handler.gate = new Promise<void>((r) => (release = r));
    const { client } = await startPair({ server: { handler } });
    const server = callerFor(client.gatewayAddress).server;
    for (let i = 0; i < 5; i++) expect(await server.post('note', { i }, { notify: true })).toBeUndefined();
    expect(handler.notes).toEqual([]);
    release();
    await waitFor(() => handler.notes.length === 5, 5000, 'five notes');
    expect(handler.notes).toEqual([0, 1, 2, 3, 4].map((i) => ({ i })));
  });

  it('server → client; a notification to a client that is not connected fails', async () => {
    const handler = new TestClientHandler('n');
    const { server } = await startPair({ client: { name: 'noted', handler } });
    const target = callerFor(server.gatewayAddress).client('noted');
    await target.post('note', 'hello', { notify: true });
    await waitFor(() => handler.notes.length === 1, 5000, 'the note');
    expect(handler.notes).toEqual(['hello']);
    await expect(callerFor(server.gatewayAddress).client('nobody').post('note', 'x', { notify: true })).rejects.toMatchObject({ code: 242 });
  });
});
