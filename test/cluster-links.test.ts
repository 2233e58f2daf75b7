/**
 * Links between server instances over a real nats-server: a MessageExchange
 * on an ordered byte stream of NATS messages, the forwarding router on the
 * holding instance, the RemotePipe on the asking one, and the NATS
 * connection that stays up for ever.
 */

import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../server/src/cluster/nats-transport.js';
import { FrameDecoder } from '@restpipe/proto';
import { ClientEventHandler } from '@restpipe/client';
import { loadServerConfig } from '@restpipe/server';
import {
  DeadlineExceededError,
  EventCode,
  InstanceGoneError,
  type EventContext,
  type OutgoingRequest,
  type Pipe,
  type PostData,
  type ReplyResult,
} from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import type { NatsSource } from '../server/src/cluster/directory.js';
import { LinkStream } from '../server/src/cluster/link-stream.js';
import { natsOptionsFrom } from '../server/src/cluster/nats-connection.js';
import { RemotePipe } from '../server/src/cluster/remote-pipe.js';
import { Subjects } from '../server/src/cluster/subjects.js';
import { NAMESPACE, holdClient, startInstance, startNatsLink, whenUp, type TestInstance } from './helpers/cluster-links.js';
import { testPki } from './helpers/identities.js';
import { restartNatsServer, startNatsServer, type NatsServer } from './helpers/nats.js';
import { tempDir } from './helpers/nginx.js';
import { TEST_ENV, closeAll, onClose, waitFor } from './helpers/pipe.js';
import { patternSource, sha256Of } from './helpers/bytes.js';

afterEach(closeAll);

const MiB = 1024 * 1024;
/** A window larger than the connection buffer, so only the link's own backpressure keeps its NATS bytes under the buffer. */
const WINDOW = 4 * MiB;
const CHUNK = 64 * 1024;
const CONNECTION_BUFFER = 1 * MiB;
const STREAM_ENV = {
  RP_STREAM_WINDOW_BYTES: String(WINDOW),
  RP_STREAM_CHUNK_BYTES: String(CHUNK),
  RP_STREAM_CONNECTION_BUFFER_BYTES: String(CONNECTION_BUFFER),
};
/** Room for the control frames (replies, credits, pings) that go out without waiting for the buffer. */
const CONTROL_SLACK = 16 * 1024;
const subjects = new Subjects(NAMESPACE);

/** A promise and its resolver. */
function signal<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

class BranchHandler extends ClientEventHandler {
  static override readonly streamedBodies = ['put_upload'];
  /** Resolves when `get_hang` starts; its ctx.signal's reason once it aborts. */
  entered = signal();
  aborted = signal<unknown>();

  noted = signal<unknown>();

  post_note(ctx: EventContext, post: PostData, ...args: string[]) {
    this.noted.resolve({ args, query: ctx.rawQuery, data: post.data });
    return {};
  }
  get_echo(ctx: EventContext, post: PostData, ...args: string[]) {
    return [
      'application/json',
      7,
      {
        args,
        query: ctx.query,
        rawQuery: ctx.rawQuery,
        header: ctx.headers['x-trace'],
        mimetype: post.mimetype,
        data: post.data,
        verb: ctx.verb,
        noun: ctx.noun,
      },
    ];
  }
  async put_upload(_ctx: EventContext, post: PostData) {
    const { hex, bytes } = await sha256Of(post.stream as Readable);
    return { sha256: hex, bytes };
  }
  get_download(_ctx: EventContext, _post: PostData, size: string) {
    return ['application/octet-stream', 0, patternSource(Number(size)).stream];
  }
  get_hang(ctx: EventContext) {
    this.entered.resolve();
    return new Promise((resolve) => {
      ctx.signal.addEventListener('abort', () => {
        this.aborted.resolve(ctx.signal.reason);
        resolve({ aborted: true });
      });
    });
  }
  async get_slow(_ctx: EventContext, _post: PostData, ms: string) {
    this.entered.resolve();
    await sleep(Number(ms));
    return { slept: Number(ms) };
  }
}

function get(noun: string, init: Partial<OutgoingRequest> = {}): OutgoingRequest {
  return { verb: 'get', noun, args: [], query: '', headers: [], mimetype: '', body: Buffer.alloc(0), deadlineMs: 10_000, ...init };
}

/** The settlement of `promise`, or 'pending' if a timer of `ms` fires first. */
async function settlesWithin<T>(promise: Promise<T>, ms: number): Promise<{ value?: T; error?: unknown } | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), ms)));
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Two instances on one nats-server: A holds client branch-01, B reaches it over a link. */
async function twoInstances(setup: Parameters<typeof startInstance>[2] = {}) {
  const server = await startNatsServer();
  const a = await startInstance(server, 'pipe-a.example:1234', setup);
  const b = await startInstance(server, 'pipe-b.example:1234', setup);
  const handler = new BranchHandler();
  const pair = await holdClient(a, 'branch-01', handler, setup.env);
  const remote = async (client = 'branch-01') => new RemotePipe(await b.links.pipeTo(a.name), client, a.name, '10.1.2.3:5555');
  return { server, a, b, handler, pair, remote };
}

/** A raw NATS connection for forging link messages; closed at teardown. */
async function rawConnection(server: NatsServer): Promise<NatsConnection> {
  const nc = await connectNats({ servers: server.url });
  onClose(() => nc.close());
  return nc;
}

function outLink(instance: TestInstance, to: string) {
  return instance.links.status().find((l) => l.direction === 'out' && l.instance === to);
}

describe('a link between two instances', () => {
  it('carries a GET to the client and its reply with the event code; query, headers, args and mimetype arrive', async () => {
    const { a, remote } = await twoInstances();
    const pipe = await remote();
    expect(pipe.ready).toBe(true);
    expect(pipe.peer).toEqual({ name: 'branch-01', address: '10.1.2.3:5555' });
    const reply = await pipe.request(
      get('echo', {
        args: ['hello ', 'wörld/2'],
        query: 'a=1&b=x%20y&a=2',
        headers: [{ name: 'x-trace', value: 't-42' }],
        mimetype: 'text/plain; charset=utf-8',
        body: Buffer.from('some text'),
      }),
    );
    expect(reply.code).toBe(7);
    expect(reply.mimetype).toBe('application/json');
    expect(JSON.parse(reply.body.toString())).toEqual({
      args: ['hello ', 'wörld/2'],
      query: { a: ['1', '2'], b: 'x y' },
      rawQuery: 'a=1&b=x%20y&a=2',
      header: 't-42',
      mimetype: 'text/plain; charset=utf-8',
      data: 'some text',
      verb: 'get',
      noun: 'echo',
    });
    expect(a.stats.count('cluster.forward.requests')).toBe(1);
    expect(a.stats.count('cluster.link.requests.received')).toBe(1);
  });

  it('is opened once and shared: callers at the same time get the same exchange', async () => {
    const { a, b } = await twoInstances();
    const [one, two] = await Promise.all([b.links.pipeTo(a.name), b.links.pipeTo(a.name)]);
    expect(one).toBe(two);
    expect(await b.links.pipeTo(a.name)).toBe(one);
    expect(b.links.status()).toMatchObject([{ instance: a.name, direction: 'out', state: 'open' }]);
    // B heard A's hello; A hears B's a moment later.
    await waitFor(() => a.links.status()[0]?.state === 'open', 5000, "A's end to open");
    expect(a.links.status()).toMatchObject([{ instance: b.name, direction: 'in', state: 'open' }]);
    expect(b.stats.count('cluster.links.opened')).toBe(1);
    expect(a.stats.count('cluster.links.accepted')).toBe(1);
  });

  it('carries a notification to the client', async () => {
    const { handler, remote } = await twoInstances();
    await (await remote()).notify({
      verb: 'post',
      noun: 'note',
      args: ['n1'],
      query: 'q=1',
      headers: [],
      mimetype: 'application/json',
      body: Buffer.from('{"x":1}'),
    });
    expect(await handler.noted.promise).toEqual({ args: ['n1'], query: 'q=1', data: { x: 1 } });
  });

  it('answers 242 for a client the instance does not hold', async () => {
    const { remote } = await twoInstances();
    const reply = await (await remote('nobody')).request(get('echo'));
    expect(reply.code).toBe(EventCode.UNKNOWN_CLIENT);
    expect(JSON.parse(reply.body.toString())).toEqual({ error: { code: 'RP_UNKNOWN_CLIENT', message: 'no client named "nobody" is connected' } });
  });

  it('uploads 100 MiB through the link with an equal sha256, memory bounded on every hop', async () => {
    const { a, b, pair, remote } = await twoInstances({ env: STREAM_ENV });
    const source = patternSource(100 * MiB);
    const reply = await (await remote()).request({
      ...get('upload'),
      verb: 'put',
      mimetype: 'application/octet-stream',
      body: source.stream,
      contentLength: 100 * MiB,
    });
    expect(reply.code).toBe(0);
    expect(JSON.parse(reply.body.toString())).toEqual({ sha256: source.digest(), bytes: 100 * MiB });
    expectBoundedLinks(a, b);
    expectBounded(pair.exchanges.server.memory);
    expectBounded(pair.exchanges.client.memory);
  });

  it('downloads 100 MiB through the link with an equal sha256, memory bounded on every hop', async () => {
    const { a, b, pair, remote } = await twoInstances({ env: STREAM_ENV });
    const expected = (await sha256Of(patternSource(100 * MiB).stream)).hex;
    const reply = await (await remote()).request(get('download', { args: [String(100 * MiB)] }));
    expect(reply.code).toBe(0);
    expect(reply.stream).toBeDefined();
    expect(await sha256Of(reply.stream as Readable)).toEqual({ hex: expected, bytes: 100 * MiB });
    expectBoundedLinks(a, b);
    expectBounded(pair.exchanges.server.memory);
    expectBounded(pair.exchanges.client.memory);
  });

  it("splits the link's bytes to fit the NATS server's max_payload", async () => {
    const server = await startNatsServer({ maxPayload: 4096 });
    const a = await startInstance(server, 'A');
    const b = await startInstance(server, 'B');
    expect(b.nats.maxPayload()).toBe(4096);
    await holdClient(a, 'branch-01', new BranchHandler());
    const pipe = new RemotePipe(await b.links.pipeTo('A'), 'branch-01', 'A', undefined);
    const reply = await pipe.request(get('download', { args: [String(MiB)] }));
    expect(await sha256Of(reply.stream as Readable)).toEqual({ hex: (await sha256Of(patternSource(MiB).stream)).hex, bytes: MiB });
  });

  it("the asker giving up cancels the request on the client: the handler's signal aborts", async () => {
    const { handler, remote } = await twoInstances();
    const pipe = await remote();
    const controller = new AbortController();
    const answer = pipe.request(get('hang', { signal: controller.signal }));
    await handler.entered.promise;
    controller.abort(new Error('the HTTP caller went away'));
    await expect(answer).rejects.toThrow('the HTTP caller went away');
    expect(await handler.aborted.promise).toBeInstanceOf(Error);
    await waitFor(() => pipe.inFlight.outgoing === 0 && pipe.inFlight.incoming === 0, 5000, 'the link to settle');
  });

  it('a cancel through onCancel crosses the hop too', async () => {
    const { handler, remote, pair } = await twoInstances();
    const pipe = await remote();
    let cancel: ((reason: Error) => void) | undefined;
    const answer = pipe.request(get('hang', { onCancel: (c) => (cancel = c) }));
    await handler.entered.promise;
    cancel?.(new Error('gone'));
    await expect(answer).rejects.toThrow('gone');
    await handler.aborted.promise;
    await waitFor(() => pair.exchanges.server.inFlight.outgoing === 0, 5000, 'the client pipe to settle');
  });

  it('the deadline crosses the hop: the client gets it, the asker answers 244 and the handler stops', async () => {
    const { a, handler, remote } = await twoInstances();
    const inner = a.pipes.get('branch-01') as Pipe;
    const forwarded: OutgoingRequest[] = [];
    a.pipes.set('branch-01', {
      get ready() {
        return inner.ready;
      },
      peer: inner.peer,
      get inFlight() {
        return inner.inFlight;
      },
      request(req: OutgoingRequest): Promise<ReplyResult> {
        forwarded.push(req);
        return inner.request(req);
      },
      notify: (event) => inner.notify(event),
    });
    const answer = (await remote()).request(get('hang', { deadlineMs: 300 }));
    await handler.entered.promise;
    expect(forwarded.map((r) => r.deadlineMs)).toEqual([300]);
    const err = await answer.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect((err as DeadlineExceededError).eventCode).toBe(EventCode.DEADLINE_EXCEEDED);
    expect(await handler.aborted.promise).toBeInstanceOf(Error);
  });
});

describe('a link that breaks', () => {
  it('pipeTo an instance that is not there rejects InstanceGoneError at once (no responders)', async () => {
    const { b } = await twoInstances();
    const outcome = await settlesWithin(b.links.pipeTo('nobody:1'), 1000);
    expect(outcome).not.toBe('pending');
    const { error } = outcome as { error?: unknown };
    expect(error).toBeInstanceOf(InstanceGoneError);
    expect((error as Error).message).toContain('"nobody:1"');
    expect(b.links.status()).toEqual([]);
  });

  it("A's NATS connection closing fails B's request in flight with InstanceGoneError within the heartbeat timeout", async () => {
    const { a, b, handler, remote } = await twoInstances({ heartbeatIntervalMs: 200, heartbeatTimeoutMs: 600 });
    const pipe = await remote();
    const answer = pipe.request(get('hang', { deadlineMs: 0 }));
    await handler.entered.promise;
    const down = once(a.nats, 'down');
    await a.nats.connection?.close();
    await down;
    // A drops its links at once: the client's handler is cancelled.
    await handler.aborted.promise;
    // B hears nothing more on the link: its heartbeat gives up after 600 ms (well before the 3 s default).
    const outcome = await settlesWithin(answer, 2500);
    expect(outcome).not.toBe('pending');
    const { error } = outcome as { error?: unknown };
    expect(error).toBeInstanceOf(InstanceGoneError);
    expect(error).toMatchObject({ httpStatus: 502, eventCode: EventCode.PIPE_BROKEN });
    expect((error as Error).message).toContain(a.name);
    // A comes back on a new connection and takes links again.
    await whenUp(a.nats);
    await a.links.listening();
    await waitFor(() => outLink(b, a.name) === undefined, 5000, "B's dead link to go");
    const again = await remote();
    expect((await again.request(get('echo'))).code).toBe(7);
  });

  it('dropInstance fails what is in flight with InstanceGoneError naming the instance', async () => {
    const { a, b, handler, remote } = await twoInstances();
    const answer = (await remote()).request(get('hang'));
    await handler.entered.promise;
    b.links.dropInstance(a.name, 'silent for 3.5 s');
    const err = await answer.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InstanceGoneError);
    expect((err as Error).message).toBe(`instance "${a.name}" is gone: silent for 3.5 s`);
    expect(b.links.status()).toEqual([]);
    // A learns at once (the end of the stream), not at its heartbeat timeout: the handler stops.
    await handler.aborted.promise;
  });

  it('a message out of sequence destroys that link only; the other link keeps working', async () => {
    const { server, a, b, remote } = await twoInstances();
    const pipe = await remote();
    expect((await pipe.request(get('echo'))).code).toBe(7);
    // The other direction: A's own link to B (B holds no client: 242 says the link works).
    const aToB = await a.links.pipeTo(b.name);
    const bToA = outLink(b, a.name);
    expect(bToA).toBeDefined();
    const closed = once(pipe.link, 'close');
    const raw = await rawConnection(server);
    const forged = Buffer.alloc(10);
    forged.writeUInt32BE(0xfffffff0, 0);
    raw.publish(subjects.linkData(a.name, bToA!.link), forged);
    await raw.flush();
    await closed;
    expect(a.stats.count('cluster.links.sequence_gaps')).toBe(1);
    expect(await a.links.pipeTo(b.name)).toBe(aToB);
    expect((await new RemotePipe(aToB, 'x', b.name, undefined).request(get('echo'))).code).toBe(EventCode.UNKNOWN_CLIENT);
    // B opens a new link to A on demand.
    expect((await (await remote()).request(get('echo'))).code).toBe(7);
  });

  it('a frame over the size limit or malformed closes that link only', async () => {
    const { server, a, remote } = await twoInstances();
    const pipe = await remote();
    const raw = await rawConnection(server);
    // A hand-made instance C opens links to A and sends bad frames with the right sequence.
    const forgeLink = async (id: string, frame: Buffer) => {
      const heard: string[] = [];
      const decoder = new FrameDecoder(16 * MiB, (f) => heard.push(f.kind as string));
      const fin = signal();
      const sub = raw.subscribe(subjects.linkData('C', id), {
        callback: (_err, msg) => {
          if (msg.data.length > 4) decoder.push(Buffer.from(msg.data.subarray(4)));
          else {
            heard.push('end');
            fin.resolve();
          }
        },
      });
      const answer = await raw.request(subjects.linkOpen(a.name), JSON.stringify({ from: 'C', link: id }), { timeout: 2000 });
      expect(answer.json()).toEqual({ ok: true });
      const message = Buffer.concat([Buffer.alloc(4), frame]);
      raw.publish(subjects.linkData(a.name, id), message);
      await fin.promise;
      sub.unsubscribe();
      return heard.filter((kind) => kind !== 'ping');
    };
    // A length prefix of 4 GiB, far over RP_MAX_FRAME_BYTES: refused before any of it is buffered.
    const tooLarge = await forgeLink('00000000000000c1', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]));
    // A 3-byte frame that is not protobuf.
    const malformed = await forgeLink('00000000000000c2', Buffer.from([0x03, 0xff, 0xff, 0xff]));
    // A said hello, then GoAway, then ended the stream.
    expect(tooLarge).toEqual(['hello', 'goaway', 'end']);
    expect(malformed).toEqual(['hello', 'goaway', 'end']);
    expect(a.stats.count('cluster.link.frames.bad')).toBe(2);
    await waitFor(() => a.links.status().every((l) => l.instance !== 'C'), 5000, "A's links from C to go");
    expect(pipe.ready).toBe(true);
    expect((await pipe.request(get('echo'))).code).toBe(7);
  });

  it('a message without a sequence number closes the link', async () => {
    const { server, b, remote } = await twoInstances();
    const pipe = await remote();
    const closed = once(pipe.link, 'close');
    const raw = await rawConnection(server);
    raw.publish(subjects.linkData(b.name, outLink(b, pipe.instance)!.link), Buffer.from([1, 2]));
    await closed;
    expect(b.stats.count('cluster.links.bad_messages')).toBe(1);
  });

  it('closing a table drains its links: a request in flight finishes, new ones fail InstanceGoneError, then the instance takes no links', async () => {
    const { a, handler, remote } = await twoInstances();
    const pipe = await remote();
    const answer = pipe.request(get('slow', { args: ['300'] }));
    await handler.entered.promise;
    const goaway = once(pipe.link, 'goaway');
    const closing = a.links.close(5000);
    await goaway;
    const refused = await pipe.request(get('echo')).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(InstanceGoneError);
    expect((refused as Error).message).toContain('shutting down');
    await closing;
    expect((await answer).code).toBe(0);
    expect(a.links.status()).toEqual([]);
    const outcome = await settlesWithin(remote(), 1000);
    expect((outcome as { error?: unknown }).error).toBeInstanceOf(InstanceGoneError);
  });
});

describe('closing', () => {
  it('leaves no timer or socket behind', async () => {
    const server = await startNatsServer();
    const count = (kind: string) => process.getActiveResourcesInfo().filter((r) => r === kind).length;
    // The test runner may hold a timer of its own (the test timeout).
    const timersBefore = count('Timeout');
    expect(count('TCPSocketWrap')).toBe(0);
    const a = await startInstance(server, 'A', { heartbeatIntervalMs: 50, heartbeatTimeoutMs: 500 });
    const b = await startInstance(server, 'B', { heartbeatIntervalMs: 50, heartbeatTimeoutMs: 500 });
    await holdClient(a, 'c', new BranchHandler());
    expect((await new RemotePipe(await b.links.pipeTo('A'), 'c', 'A', undefined).request(get('echo'))).code).toBe(7);
    await a.links.pipeTo('B');
    expect(count('TCPSocketWrap')).toBe(2);
    await b.links.close(0);
    await a.links.close(0);
    await b.nats.close();
    await a.nats.close();
    // Sockets finish closing a moment after close() resolves.
    await waitFor(() => count('TCPSocketWrap') === 0 && count('Timeout') <= timersBefore, 2000, 'every timer and socket to go');
  });
});

describe('the NATS connection', () => {
  it('keeps trying while the server is down at start and comes up when it starts; status() says so', async () => {
    const first = await startNatsServer();
    await first.stop();
    const nats = startNatsLink({ servers: [first.url], instance: 'x', namespace: NAMESPACE, reconnectWaitMs: 100 });
    // The directory takes it as its NATS source.
    const source: NatsSource = nats;
    expect(source.connection).toBeUndefined();
    expect(nats.isUp).toBe(false);
    expect(nats.connection).toBeUndefined();
    await waitFor(() => nats.status().lastError !== null, 5000, 'a failed attempt');
    expect(nats.status()).toMatchObject({ state: 'connecting', server: null, reconnects: 0 });
    expect(nats.status().lastError).toMatch(/refused/i);
    const up = once(nats, 'up');
    await restartNatsServer(first);
    await up;
    expect(nats.isUp).toBe(true);
    expect(nats.status()).toMatchObject({ state: 'connected', server: `127.0.0.1:${first.port}` });
    expect(nats.maxPayload()).toBe(1024 * 1024);
  });

  it('links work again after NATS goes down and comes back', async () => {
    const { server, a, b, remote } = await twoInstances();
    expect((await (await remote()).request(get('echo'))).code).toBe(7);
    const downs = [once(a.nats, 'down'), once(b.nats, 'down')];
    await server.stop();
    await Promise.all(downs);
    expect(b.links.status()).toEqual([]);
    expect(a.nats.status()).toMatchObject({ state: 'reconnecting', reconnects: 1 });
    await expect(b.links.pipeTo(a.name)).rejects.toBeInstanceOf(InstanceGoneError);
    const ups = [once(a.nats, 'up'), once(b.nats, 'up')];
    await restartNatsServer(server);
    await Promise.all(ups);
    await a.links.listening();
    expect(a.nats.status().state).toBe('connected');
    expect((await (await remote()).request(get('echo'))).code).toBe(7);
  });

  it('authenticates with user and password, and keeps trying with a wrong one', async () => {
    const server = await startNatsServer({ user: 'rp', password: 's3cret' });
    const good = startNatsLink({ servers: [server.url], instance: 'x', namespace: NAMESPACE, user: 'rp', password: 's3cret' });
    await whenUp(good);
    expect(good.status().state).toBe('connected');
    const bad = startNatsLink({ servers: [server.url], instance: 'y', namespace: NAMESPACE, user: 'rp', password: 'wrong', reconnectWaitMs: 100 });
    await waitFor(() => bad.status().lastError !== null, 5000, 'the refusal');
    expect(bad.status().lastError).toMatch(/authorization/i);
    expect(bad.isUp).toBe(false);
  });

  it('connects over TLS with a CA and a client certificate, and refuses a server it cannot verify', async () => {
    const pki = await testPki();
    const client = await pki.client('restpipe-instance');
    const dir = tempDir('rp-nats-tls-');
    const file = (name: string, pem: string | Buffer) => {
      const path = join(dir, name);
      writeFileSync(path, pem);
      return path;
    };
    const ca = file('ca.pem', pki.ca.certPem);
    const server = await startNatsServer({ tls: { cert: file('server.pem', pki.server.cert), key: file('server.key', pki.server.key), verifyCa: ca } });
    expect(server.url).toMatch(/^tls:/);
    const good = startNatsLink({
      servers: [server.url],
      instance: 'x',
      namespace: NAMESPACE,
      ca,
      cert: file('client.pem', client.cert),
      key: file('client.key', client.key),
    });
    await whenUp(good);
    expect(good.status().state).toBe('connected');
    // Without a client certificate the server refuses; with a CA that did not sign the server's certificate, this side does.
    const noCert = startNatsLink({ servers: [server.url], instance: 'y', namespace: NAMESPACE, ca, reconnectWaitMs: 100 });
    const wrongCa = startNatsLink({
      servers: [server.url],
      instance: 'z',
      namespace: NAMESPACE,
      ca: file('not-its-ca.pem', client.cert),
      reconnectWaitMs: 100,
    });
    // A refused attempt may only end at the link's 5 s connect timeout (the server drops a TLS 1.3
    // client without a certificate after the client's side of the handshake is done): wait past it.
    await waitFor(() => noCert.status().lastError !== null && wrongCa.status().lastError !== null, 15_000, 'the refusals');
    expect(noCert.isUp).toBe(false);
    expect(wrongCa.isUp).toBe(false);
    expect(wrongCa.status().lastError).toMatch(/certificate/i);
  });

  it('takes its options from the RP_SERVER_NATS_* settings', async () => {
    const config = await loadServerConfig({
      ...TEST_ENV,
      RP_SERVER_NATS_URL: 'nats://n1:4222, tls://n2:4222',
      RP_SERVER_CLUSTER_NAME: 'prod',
      RP_SERVER_NATS_USER: 'rp',
      RP_SERVER_NATS_PASSWORD: 'pw',
    });
    expect(natsOptionsFrom(config, 'pipe-a:1234')).toMatchObject({
      servers: ['nats://n1:4222', 'tls://n2:4222'],
      instance: 'pipe-a:1234',
      namespace: 'prod',
      user: 'rp',
      password: 'pw',
    });
  });
});

describe('the link stream', () => {
  it('splits writes into messages of the size limit, sequenced from 0, and ends with an empty one', async () => {
    const sent: Buffer[] = [];
    const stream = new LinkStream({
      transport: { publish: (p) => sent.push(Buffer.from(p)), flush: async () => {} },
      maxMessageBytes: 10,
      unconfirmedBytes: 1000,
    });
    stream.write(Buffer.alloc(25, 1));
    stream.end();
    await once(stream, 'finish');
    expect(sent.map((m) => [m.readUInt32BE(0), m.length - 4])).toEqual([
      [0, 10],
      [1, 10],
      [2, 5],
      [3, 0],
    ]);
    stream.destroy();
  });

  it('holds a write while too many bytes wait for the server, and releases it when a flush confirms them', async () => {
    const flushes: Array<() => void> = [];
    const stream = new LinkStream({
      transport: { publish: () => {}, flush: () => new Promise<void>((resolve) => flushes.push(resolve)) },
      maxMessageBytes: 1000,
      unconfirmedBytes: 100,
    });
    let done = false;
    stream.write(Buffer.alloc(150), () => (done = true));
    await sleep(10);
    expect(done).toBe(false);
    expect(stream.writableLength).toBe(150);
    expect(flushes.length).toBeGreaterThan(0);
    for (const f of flushes) f();
    await waitFor(() => done, 1000, 'the write to complete');
    expect(stream.unconfirmedBytes).toBe(0);
    expect(stream.peakUnconfirmedBytes).toBe(154);
    stream.destroy();
  });
});

function expectBounded(memory: { peakStreamHeldBytes: number; peakUnsentBytes: number }): void {
  expect(memory.peakStreamHeldBytes).toBeLessThanOrEqual(WINDOW);
  expect(memory.peakUnsentBytes).toBeLessThanOrEqual(CONNECTION_BUFFER + CHUNK + CONTROL_SLACK);
}

/** Both ends of the one link: the exchange's figures, and the NATS bytes never past the buffer plus one tick's writes. */
function expectBoundedLinks(a: TestInstance, b: TestInstance): void {
  const ends = [...a.links.status(), ...b.links.status()];
  expect(ends.map((l) => l.direction).sort()).toEqual(['in', 'out']);
  for (const end of ends) {
    expectBounded(end.memory);
    expect(end.memory.peakUnconfirmedBytes).toBeLessThanOrEqual(2 * CONNECTION_BUFFER + CHUNK + CONTROL_SLACK);
  }
  // Something did stream through (the figures are not all zero).
  expect(Math.max(...ends.map((l) => l.memory.peakStreamHeldBytes))).toBeGreaterThan(0);
}
