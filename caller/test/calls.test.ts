/**
 * Typed calls over real pipes, both directions: JSON, text and binary
 * results; arguments, client names and query percent-encoded; JSON, text,
 * binary and streamed bodies; headers; usage errors refused before sending.
 */
import type { Readable } from 'node:stream';
import { CallerClosedError, CallerUsageError, createCaller, type RawReply } from '@restpipe/caller';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, startPair } from '../../test/helpers/pipe.js';
import { MiB, TestClientHandler, TestServerHandler, callerFor, pattern, sha256Of } from './fixtures.js';

afterEach(closeAll);

describe('typed results', () => {
  it('client node → server: parsed JSON typed by the caller', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const caller = callerFor(client.gatewayAddress);
    const before = Date.now() / 1000;
    const { time_from_server } = await caller.server.get<{ time_from_server: number }>('time');
    expect(time_from_server).toBeGreaterThanOrEqual(before - 1);
    expect(time_from_server).toBeLessThanOrEqual(Date.now() / 1000 + 1);
    expect(caller.server.target).toBe('server');
  });

  it('server node → client: parsed JSON, arguments joined by the handler', async () => {
    const { server } = await startPair({ client: { name: 'branch-01', handler: new TestClientHandler() } });
    const caller = callerFor(server.gatewayAddress);
    const branch = caller.client('branch-01');
    expect(branch.target).toBe('client/branch-01');
    expect(typeof (await branch.get<{ time_from_client: number }>('time')).time_from_client).toBe('number');
    expect(await branch.get('cat', { args: ['hello ', 'world'] })).toEqual({ result_from_client: 'hello world' });
  });

  it('a string for text/*, a Buffer for other types, undefined for an empty JSON body', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const server = callerFor(client.gatewayAddress).server;
    expect(await server.get<string>('text')).toBe('héllo wörld');
    const bin = await server.get<Buffer>('bin');
    expect(Buffer.isBuffer(bin)).toBe(true);
    expect([...bin]).toEqual([0, 1, 2, 254, 255]);
    expect(await server.get('empty_json')).toBeUndefined();
  });

  it('maps a nested noun to the handler and rejects a JSON reply that does not parse', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const server = callerFor(client.gatewayAddress).server;
    await expect(server.get('not_json')).rejects.toMatchObject({ name: 'BadReplyError', code: 'RP_CALLER_BAD_REPLY' });
  });
});

describe('percent-encoding', () => {
  it('arguments arrive exactly as given', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const server = callerFor(client.gatewayAddress).server;
    const args = ['a b/c', 'été', '', '100%', '?x=1#y', '日本'];
    const res = await server.get<{ args: string[] }>('echo', { args });
    expect(res.args).toEqual(args);
  });

  it('query values repeat for arrays and keep special characters', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const server = callerFor(client.gatewayAddress).server;
    const res = await server.get<{ query: Record<string, unknown>; rawQuery: string }>('echo', {
      query: { k: ['1', '2'], s: 't u&v=w', é: 'ü', n: 3, skip: undefined },
    });
    expect(res.query).toEqual({ k: ['1', '2'], s: 't u&v=w', é: 'ü', n: '3' });
    expect(res.rawQuery).toBe('k=1&k=2&s=t%20u%26v%3Dw&%C3%A9=%C3%BC&n=3');
  });

  it('a client name with a space and an accent reaches that client', async () => {
    const { server } = await startPair({ client: { name: 'branch 01 é', handler: new TestClientHandler('spaced') } });
    const caller = callerFor(server.gatewayAddress);
    expect(await caller.client('branch 01 é').get('whoami', { query: { a: 'b' } })).toEqual({ label: 'spaced', query: { a: 'b' } });
  });
});

describe('request bodies', () => {
  it('an object as JSON, a string as text, bytes as octet-stream, for every verb', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const server = callerFor(client.gatewayAddress).server;
    expect(await server.post('echo', { a: [1, 2], b: 'c' })).toMatchObject({
      verb: 'post',
      mimetype: 'application/json',
      kind: 'object',
      data: { a: [1, 2], b: 'c' },
    });
    expect(await server.put('echo', 'plain wörds')).toMatchObject({ verb: 'put', mimetype: 'text/plain; charset=utf-8', kind: 'string', data: 'plain wörds' });
    expect(await server.patch('echo', Buffer.from([0, 255, 10]))).toMatchObject({
      verb: 'patch',
      mimetype: 'application/octet-stream',
      kind: 'bytes',
      hex: '00ff0a',
    });
    expect(await server.post('echo', new Uint8Array([1, 2, 3]))).toMatchObject({ mimetype: 'application/octet-stream', hex: '010203' });
    expect(await server.post('echo', [1, 'two'])).toMatchObject({ mimetype: 'application/json', data: [1, 'two'] });
    expect(await server.post('echo')).toMatchObject({ mimetype: '', hex: '' });
    expect(await server.call('DELETE', 'echo', { body: { why: 'test' } })).toMatchObject({ verb: 'delete', data: { why: 'test' } });
    expect(await server.delete('echo')).toMatchObject({ verb: 'delete', hex: '' });
  });

  it('a content-type header overrides the chosen type', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const server = callerFor(client.gatewayAddress).server;
    expect(await server.post('echo', 'a,b\n1,2\n', { headers: { 'Content-Type': 'text/csv' } })).toMatchObject({ mimetype: 'text/csv', data: 'a,b\n1,2\n' });
  });

  it('streams a Readable and an async iterable body of several MiB', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const server = callerFor(client.gatewayAddress).server;
    const expected = await sha256Of(pattern(6 * MiB));
    expect(await server.put('upload', pattern(6 * MiB))).toEqual(expected);
    async function* pieces() {
      for await (const piece of pattern(6 * MiB)) yield piece as Buffer;
    }
    expect(await server.put('upload', pieces())).toEqual(expected);
  });
});

describe('headers and options', () => {
  it("sends the caller's headers and a call's own, the call winning", async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const caller = callerFor(client.gatewayAddress, { headers: { 'X-Custom': 'from-caller' }, timeoutMs: 7000 });
    expect(await caller.server.get('echo')).toMatchObject({ custom: 'from-caller', timeout: '7000' });
    expect(await caller.server.get('echo', { headers: { 'x-custom': 'from-call' }, timeoutMs: 1234.2 })).toMatchObject({
      custom: 'from-call',
      timeout: '1235',
    });
  });

  it('a gateway URL with a trailing slash works; a path prefix is kept', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const caller = callerFor(`${client.gatewayAddress}/`);
    expect(await caller.server.get('text')).toBe('héllo wörld');
    const prefixed = callerFor(`${client.gatewayAddress}/behind/proxy`);
    await expect(prefixed.server.get('text')).rejects.toMatchObject({ name: 'PipeFailError', code: 255, status: 404, errorCode: 'RP_NO_ROUTE' });
  });

  it('an aborted signal rejects the call and cancels the handler on the other side', async () => {
    const handler = new TestServerHandler();
    const { client } = await startPair({ server: { handler } });
    const server = callerFor(client.gatewayAddress).server;
    const ac = new AbortController();
    const call = server.get('slow', { signal: ac.signal });
    const settled = expect(call).rejects.toThrow();
    while (handler.signals.length === 0) await new Promise((r) => setTimeout(r, 10));
    ac.abort(new Error('changed my mind'));
    await settled;
    const signal = handler.signals[0]!;
    const until = Date.now() + 5000;
    while (!signal.aborted && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(signal.aborted).toBe(true);
  });
});

describe('usage errors, before anything is sent', () => {
  it('refuses malformed nouns, client names, selectors, verbs, timeouts and gateway URLs', async () => {
    const caller = createCaller('http://127.0.0.1:9', {});
    try {
      for (const noun of ['', 'a b', '../x', 'time?x=1', 'time//x', '/time', 'time/', 'été', 'a%2Fb']) {
        await expect(caller.server.get(noun), noun).rejects.toMatchObject({ name: 'CallerUsageError', code: 'RP_CALLER_USAGE' });
      }
      expect(() => caller.client('')).toThrow(CallerUsageError);
      expect(() => caller.clients('')).toThrow(CallerUsageError);
      expect(() => caller.clients([])).toThrow(CallerUsageError);
      await expect(caller.server.get('time', { timeoutMs: 0 })).rejects.toBeInstanceOf(CallerUsageError);
      await expect(caller.server.get('time', { timeoutMs: Number.NaN })).rejects.toBeInstanceOf(CallerUsageError);
      await expect(caller.server.call('HEAD' as 'GET', 'time')).rejects.toBeInstanceOf(CallerUsageError);
    } finally {
      await caller.close();
    }
    expect(() => createCaller('not a url')).toThrow(CallerUsageError);
    expect(() => createCaller('ftp://host/')).toThrow(CallerUsageError);
    expect(() => createCaller('http://h/?q=1')).toThrow(CallerUsageError);
    expect(() => createCaller({ socketPath: '' })).toThrow(CallerUsageError);
    expect(() => createCaller('http://h', { timeoutMs: -5 })).toThrow(CallerUsageError);
  });

  it('refuses calls after close()', async () => {
    const caller = createCaller('http://127.0.0.1:9');
    await caller.close();
    await caller.close();
    expect(caller.closed).toBe(true);
    await expect(caller.server.get('time')).rejects.toBeInstanceOf(CallerClosedError);
    await expect(caller.server.get('time')).rejects.toMatchObject({ code: 'RP_CALLER_CLOSED' });
  });
});

// Compile-time checks of the overloads (never run).
export async function typeChecks(): Promise<void> {
  const caller = createCaller('http://127.0.0.1:8001');
  const t: number = (await caller.server.get<{ time_from_server: number }>('time')).time_from_server;
  const raw: RawReply = await caller.server.get('big', { raw: true });
  // biome-ignore lint/suspicious/noConfusingVoidType: the notify overload resolves to void
  const nothing: void = await caller.server.post('note', { a: 1 }, { notify: true });
  const body: Readable = raw.body;
  // @ts-expect-error raw: true returns a RawReply, not T
  await caller.server.get<{ x: number }>('x', { raw: true });
  void [t, nothing, body];
}
