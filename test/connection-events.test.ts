/**
 * `/_restpipe/events` subscribers never take the server down: SIGTERM with a
 * subscriber attached (issue 12), a subscriber that goes away mid-write, and
 * one that stops reading.
 */
import { get, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { testPki } from './helpers/identities.js';
import { CLIENT_CLI, SERVER_CLI, installedIdentity, spawnNode, tempDir } from './helpers/node-process.js';
import { TEST_ENV, closeAll, httpClient, onClose, startClient, startServer, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

/** An SSE subscriber over node:http: the text so far, and how the stream ended. */
function subscribe(url: string): Promise<{ res: IncomingMessage; text(): string; ended: Promise<'end' | 'aborted' | 'error'> }> {
  return new Promise((resolve, reject) => {
    const req = get(url, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      const ended = new Promise<'end' | 'aborted' | 'error'>((done) => {
        res.once('end', () => done(res.complete ? 'end' : 'aborted'));
        res.once('aborted', () => done('aborted'));
        res.once('error', () => done('error'));
      });
      resolve({ res, text: () => text, ended });
    });
    req.once('error', reject);
    onClose(() => req.destroy());
  });
}

/** The `event:` blocks of an SSE text, as [type, name, clients]. */
function events(text: string): Array<[string | undefined, unknown, unknown]> {
  return text
    .split('\n\n')
    .filter((block) => block.startsWith('event:'))
    .map((block) => {
      const [type, data] = block.split('\n');
      const body = JSON.parse(data?.slice('data: '.length) ?? '{}') as Record<string, unknown>;
      return [type?.slice('event: '.length), body.name, body.clients];
    });
}

describe('the real executables with a subscriber on /_restpipe/events', () => {
  it('SIGTERM drains and exits 0; the stream carries the disconnected event, then ends cleanly', async () => {
    const pki = await testPki();
    const server = spawnNode(SERVER_CLI, {
      ...TEST_ENV,
      RP_LOG_LEVEL: 'info',
      RP_SERVER_CERT_PATH: await installedIdentity('server', pki.server),
      RP_DRAIN_GRACE_S: '2',
    });
    const { port } = await server.waitForLog('pipe listening for clients');
    const { gateway } = await server.waitForLog('gateway listening');
    const client = spawnNode(CLIENT_CLI, {
      ...TEST_ENV,
      RP_CLIENT_CERT_PATH: await installedIdentity('client', await pki.client('branch-12')),
      RP_CLIENT_TARGET_PORT: String(port),
      // Sent away by the drain, it must not come back while the server stops.
      RP_CLIENT_RECONNECT_INITIAL_S: '60',
    });
    const subscriber = await subscribe(`${String(gateway)}/_restpipe/events`);
    expect(subscriber.res.headers['content-type']).toBe('text/event-stream');
    await waitFor(() => subscriber.text().includes('"name":"branch-12"'), 10_000, 'the client to connect');
    server.child.kill('SIGTERM');
    expect(await server.exited, server.stderr()).toEqual({ code: 0, signal: null });
    expect(await subscriber.ended).toBe('end');
    expect(events(subscriber.text())).toEqual([
      ['connected', 'branch-12', 1],
      ['disconnected', 'branch-12', 0],
    ]);
    expect(server.stderr()).toBe('');
    expect(server.logs().filter((l) => (l['level'] as number) >= 50)).toEqual([]);
    expect(client.child.exitCode).toBeNull(); // the client stays up, waiting to reconnect
  });
});

describe('subscribers that misbehave', () => {
  it('a subscriber that goes away while events are being written leaves the server serving', async () => {
    const server = await startServer();
    // Listeners the server itself keeps (the dashboard's connection log); the subscriber adds one.
    const own = server.listenerCount('connection');
    const subscriber = await subscribe(`${server.gatewayAddress}/_restpipe/events`);
    await waitFor(() => subscriber.text().includes(': connected clients follow'), 5000, 'the stream to start');
    // Events keep coming while the subscriber resets its connection.
    const name = 'x'.repeat(16 * 1024);
    const burst = (n: number) => {
      for (let i = 0; i < n; i++) server.emit('connection', { type: 'connected', name, address: undefined, time: new Date().toISOString(), clients: 1 });
    };
    burst(50);
    subscriber.res.socket.resetAndDestroy();
    for (let round = 0; round < 20; round++) {
      burst(50);
      await tick();
    }
    await waitFor(() => server.listenerCount('connection') === own, 5000, 'the stream to let go of the server');
    const status = await httpClient()('GET', `${server.gatewayAddress}/_restpipe/status`);
    expect(status.status).toBe(200);
  });

  it('a subscriber that stops reading is cut off once it falls far behind, and the server keeps serving', async () => {
    const dir = await tempDir();
    const path = join(dir, 'gateway.sock');
    const server = await startServer({ env: { RP_SERVER_GATEWAY_SOCKET: path } });
    const own = server.listenerCount('connection');
    const socket: Socket = connect(path);
    onClose(() => socket.destroy());
    socket.write('GET /_restpipe/events HTTP/1.1\r\nHost: localhost\r\n\r\n');
    let head = '';
    const onHead = (d: Buffer) => (head += d.toString('latin1'));
    socket.on('data', onHead);
    await waitFor(() => head.includes(': connected clients follow'), 5000, 'the stream to start');
    socket.off('data', onHead);
    socket.pause(); // never reads again
    const name = 'y'.repeat(16 * 1024);
    let sent = 0;
    // Far more than any socket buffer holds; the server must let go long before the end.
    while (server.listenerCount('connection') > own && sent < 4096) {
      for (let i = 0; i < 16; i++, sent++)
        server.emit('connection', { type: 'disconnected', name, address: undefined, time: new Date().toISOString(), clients: 0 });
      await tick();
    }
    expect(server.listenerCount('connection')).toBe(own);
    expect(sent).toBeLessThan(4096);
    // A fresh client still gets through.
    const agent = await startClient(server, { name: 'after' });
    expect(agent.state).toBe('connected');
  });
});
