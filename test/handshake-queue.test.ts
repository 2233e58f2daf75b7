/**
 * The server's handshake pacing (`server/src/handshake-queue.ts`): at most
 * RP_SERVER_HANDSHAKES_MAX handshakes at once, the rest waiting unread and
 * started newest first, waiters past RP_SERVER_HANDSHAKE_QUEUE_S closed,
 * and a stalled handshake holding its slot for the lease at most. First on
 * real loopback sockets with the queue alone, then through the real server
 * with real clients.
 */
import net from 'node:net';
import { Writable } from 'node:stream';
import tls from 'node:tls';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { HandshakeQueue } from '../server/src/handshake-queue.js';
import { CountingStats } from './helpers/counting-stats.js';
import { testPki } from './helpers/identities.js';
import { closeAll, onClose, startClient, startServer, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

/** A listener whose accepted sockets go to a queue; `started` lists the client ports whose handshake started, in order. */
async function queueOnLoopback(opts: { max: number; maxWaitMs?: number; leaseMs?: number }) {
  const stats = new CountingStats();
  const lines: Array<Record<string, unknown>> = [];
  const log = pino(
    { level: 'warn' },
    new Writable({
      write(chunk, _encoding, callback) {
        lines.push(JSON.parse(String(chunk)));
        callback();
      },
    }),
  );
  const started: number[] = [];
  const accepted: net.Socket[] = [];
  const queue = new HandshakeQueue({
    max: opts.max,
    maxWaitMs: opts.maxWaitMs ?? 60_000,
    leaseMs: opts.leaseMs ?? 60_000,
    stats,
    log,
    start: (socket) => started.push(socket.remotePort as number),
  });
  const listener = net.createServer({ pauseOnConnect: true }, (socket) => {
    accepted.push(socket);
    queue.admit(socket);
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  onClose(
    () =>
      new Promise<void>((resolve) => {
        queue.close();
        for (const s of accepted) s.destroy();
        listener.close(() => resolve());
      }),
  );
  const port = (listener.address() as net.AddressInfo).port;
  /** Connects one client and waits until the listener accepted it; returns the client socket. */
  const connect = async (): Promise<net.Socket> => {
    const before = accepted.length;
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    onClose(() => socket.destroy());
    await new Promise((resolve) => socket.once('connect', resolve));
    await waitFor(() => accepted.length > before, 5000, 'the accept');
    return socket;
  };
  /** The accepted socket of a client. */
  const serverSide = (client: net.Socket) => accepted.find((s) => s.remotePort === client.localPort) as net.Socket;
  return { queue, stats, lines, started, connect, serverSide };
}

describe('HandshakeQueue', () => {
  it('starts at most max handshakes at once; the rest wait unread and start newest first as slots free', async () => {
    const { queue, started, connect, serverSide } = await queueOnLoopback({ max: 2 });
    const clients: net.Socket[] = [];
    for (let i = 0; i < 5; i++) clients.push(await connect());
    const port = (i: number) => clients[i]?.localPort;
    expect(started).toEqual([port(0), port(1)]);
    expect(queue.status).toEqual({ inProgress: 2, waiting: 3, max: 2 });
    // A waiting socket is not read: what its client sent is still unread.
    clients[4]?.write('client hello');
    await new Promise((r) => setTimeout(r, 50));
    expect(serverSide(clients[4] as net.Socket).bytesRead).toBe(0);

    queue.done(serverSide(clients[0] as net.Socket));
    expect(started).toEqual([port(0), port(1), port(4)]);
    queue.done(serverSide(clients[0] as net.Socket)); // twice: no second slot
    expect(started).toHaveLength(3);
    queue.done(serverSide(clients[1] as net.Socket));
    queue.done(serverSide(clients[4] as net.Socket));
    expect(started).toEqual([port(0), port(1), port(4), port(3), port(2)]);
    expect(queue.status).toEqual({ inProgress: 2, waiting: 0, max: 2 });
  });

  it('frees the slot of a socket that closes, and skips a waiter that was closed', async () => {
    const { queue, started, connect, serverSide } = await queueOnLoopback({ max: 1 });
    const a = await connect();
    const b = await connect();
    const c = await connect();
    const ports = [a.localPort, b.localPort];
    serverSide(c).destroy(); // closed while waiting: never started
    serverSide(a).destroy();
    await waitFor(() => started.length === 2, 5000, 'the next handshake');
    expect(started).toEqual(ports);
    expect(queue.status).toEqual({ inProgress: 1, waiting: 0, max: 1 });
  });

  it('closes a connection that waited longer than maxWaitMs, never starting it, and counts it', async () => {
    const { queue, stats, lines, started, connect } = await queueOnLoopback({ max: 1, maxWaitMs: 300 });
    const first = await connect();
    const waiter = await connect();
    const closed = new Promise((resolve) => waiter.once('close', resolve));
    await closed;
    expect(stats.count('connections.queue_timeouts')).toBe(1);
    expect(lines).toEqual([expect.objectContaining({ closed: 1, max: 1, maxWaitMs: 300, msg: expect.stringMatching(/waited too long for a TLS handshake/) })]);
    expect(started).toEqual([first.localPort]);
    expect(queue.status.waiting).toBe(0);
  });

  it('lets a handshake hold its slot for leaseMs at most', async () => {
    const { started, connect } = await queueOnLoopback({ max: 1, leaseMs: 300 });
    const stalled = await connect();
    const next = await connect();
    expect(started).toEqual([stalled.localPort]);
    await waitFor(() => started.length === 2, 5000, 'the lease to end');
    expect(started).toEqual([stalled.localPort, next.localPort]);
  });

  it('holds every handshake until the promise settles, accepting meanwhile; then starts them newest first up to max', async () => {
    const { queue, started, connect } = await queueOnLoopback({ max: 2 });
    let settle: () => void = () => {};
    queue.holdUntil(
      new Promise<void>((resolve) => {
        settle = resolve;
      }),
      60_000,
    );
    const clients: net.Socket[] = [];
    for (let i = 0; i < 3; i++) clients.push(await connect());
    expect(started).toEqual([]);
    expect(queue.status).toEqual({ inProgress: 0, waiting: 3, max: 2 });
    settle();
    await waitFor(() => started.length === 2, 5000, 'the held handshakes');
    expect(started).toEqual([clients[2]?.localPort, clients[1]?.localPort]);
    expect(queue.status).toEqual({ inProgress: 2, waiting: 1, max: 2 });
  });

  it('ends a hold after maxMs when the promise never settles (and after a rejection at once)', async () => {
    const { queue, started, connect } = await queueOnLoopback({ max: 4 });
    queue.holdUntil(new Promise<void>(() => {}), 200);
    const a = await connect();
    expect(started).toEqual([]);
    await waitFor(() => started.length === 1, 5000, 'the hold to end');
    expect(started).toEqual([a.localPort]);
    // Not held any more: the next starts at once.
    const b = await connect();
    expect(started).toEqual([a.localPort, b.localPort]);

    queue.holdUntil(Promise.reject(new Error('no handles')), 60_000);
    const c = await connect();
    await waitFor(() => started.length === 3, 5000, 'the rejected hold to end');
    expect(started).toEqual([a.localPort, b.localPort, c.localPort]);
  });

  it('closes its waiters on close and takes no more', async () => {
    const { queue, connect } = await queueOnLoopback({ max: 1 });
    await connect();
    const waiter = await connect();
    const closed = new Promise((resolve) => waiter.once('close', resolve));
    queue.close();
    await closed;
    const late = await connect();
    await new Promise((resolve) => late.once('close', resolve));
    expect(queue.status).toEqual({ inProgress: 0, waiting: 0, max: 1 });
  });
});

describe('the server paces its handshakes', () => {
  it('frees a handshake slot as soon as the handshake is done: clients connect one after another with one slot', async () => {
    const server = await startServer({ env: { RP_SERVER_HANDSHAKES_MAX: '1' } });
    for (const name of ['agent-1', 'agent-2', 'agent-3']) {
      await startClient(server, { name });
      // The server said hello after its handshake was done: the slot is already free.
      expect((server.status().handshakes as { inProgress: number }).inProgress).toBe(0);
    }
    expect(server.status().handshakes).toMatchObject({ inProgress: 0, waiting: 0, max: 1 });
    expect(server.registry.size).toBe(3);
  });

  it('a silent connection holding the only slot does not shut a client out', async () => {
    const server = await startServer({ env: { RP_SERVER_HANDSHAKES_MAX: '1' } });
    const silent = net.connect(server.pipeAddress.port, '127.0.0.1');
    silent.on('error', () => {});
    onClose(() => silent.destroy());
    await waitFor(() => (server.status().handshakes as { inProgress: number }).inProgress === 1, 5000, 'the silent handshake');
    await startClient(server, { name: 'agent-1' });
    expect(server.registry.get('agent-1')?.ready).toBe(true);
  });

  it('connects 40 clients dialing at once through 2 slots, each once', async () => {
    const server = await startServer({ env: { RP_SERVER_HANDSHAKES_MAX: '2' } });
    const names = Array.from({ length: 40 }, (_, i) => `agent-${i + 1}`);
    await Promise.all(names.map((name) => startClient(server, { name, waitConnected: false })));
    await waitFor(() => names.every((n) => server.registry.get(n)?.ready === true), 20_000, 'every client');
    expect(server.status().handshakes).toMatchObject({ inProgress: 0, waiting: 0, max: 2 });
  });

  it('closes a connection that waited past RP_SERVER_HANDSHAKE_QUEUE_S, unhandshaken, counted', async () => {
    const stats = new CountingStats();
    // The silent connection holds the only slot for its whole lease (60 s), longer than the wait allowed.
    const server = await startServer({ env: { RP_SERVER_HANDSHAKES_MAX: '1', RP_SERVER_HANDSHAKE_QUEUE_S: '0.3' }, stats, handshakeLeaseMs: 60_000 });
    const pki = await testPki();
    const identity = await pki.client('agent-late');
    const silent = net.connect(server.pipeAddress.port, '127.0.0.1');
    silent.on('error', () => {});
    onClose(() => silent.destroy());
    await waitFor(() => (server.status().handshakes as { inProgress: number }).inProgress === 1, 5000, 'the silent handshake');
    // A TLS client behind it waits, and is closed at the end of its wait without a handshake.
    const waiting = tls.connect({
      port: server.pipeAddress.port,
      host: '127.0.0.1',
      servername: 'localhost',
      key: identity.key,
      cert: identity.cert,
      ca: identity.ca,
    });
    onClose(() => waiting.destroy());
    const outcome = await new Promise<string>((resolve) => {
      waiting.once('secureConnect', () => resolve('handshake'));
      waiting.once('error', (err) => resolve(`error ${(err as NodeJS.ErrnoException).code}`));
      waiting.once('close', () => resolve('closed'));
    });
    expect(outcome).not.toBe('handshake');
    expect(stats.count('connections.queue_timeouts')).toBe(1);
  });
});
