/**
 * Extra accept handles on the pipe's listening socket
 * (`server/src/accept-handles.ts`): libuv accepts one connection per
 * listening handle per event-loop turn, so a busy server with one handle
 * leaves a storm's connections in the kernel's listen queue. Real sockets
 * on loopback; the clients of the turn test dial from another process
 * while this one is blocked, as a busy server is.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { extraAcceptHandles } from '../server/src/accept-handles.js';
import { pino } from 'pino';
import { tempDir } from './helpers/node-process.js';
import { closeAll, onClose, startClient, startServer, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

const log = pino({ level: 'silent' });

/** A listener like the server's (paused sockets), its extra handles, and every socket accepted, by which handle. */
async function listenerWith(count: number) {
  const accepted: Array<{ socket: net.Socket; extra: boolean }> = [];
  const listener = net.createServer({ pauseOnConnect: true }, (socket) => accepted.push({ socket, extra: false }));
  await new Promise<void>((resolve) => listener.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, resolve));
  const added = extraAcceptHandles(listener, { count, onConnection: (socket) => accepted.push({ socket, extra: true }), backlog: 4096, log });
  const extra = await added.ready;
  await added.gone;
  onClose(() => {
    for (const a of accepted) a.socket.destroy();
    for (const e of extra) e.close();
    return new Promise<void>((resolve) => listener.close(() => resolve()));
  });
  return { listener, extra, accepted, port: (listener.address() as net.AddressInfo).port };
}

/** This process's child processes (Linux). */
function children(): number[] {
  const tasks = readdirSync(`/proc/${process.pid}/task`);
  return tasks.flatMap((t) => readFileSync(`/proc/${process.pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
}

describe('extraAcceptHandles', () => {
  it('adds handles on the same socket: every connection is accepted once, unread, and the helper is gone', async () => {
    const before = children();
    const { extra, accepted, port } = await listenerWith(3);
    expect(extra).toHaveLength(3);
    expect(children().filter((pid) => !before.includes(pid))).toEqual([]);
    const clients: net.Socket[] = [];
    for (let i = 0; i < 30; i++) {
      const c = net.connect(port, '127.0.0.1', () => c.write('hello'));
      c.on('error', () => {});
      onClose(() => c.destroy());
      clients.push(c);
    }
    await waitFor(() => accepted.length === 30, 5000, 'every connection accepted');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(accepted).toHaveLength(30);
    expect(new Set(accepted.map((a) => a.socket.remotePort)).size).toBe(30);
    expect(accepted.every((a) => a.socket.bytesRead === 0)).toBe(true);
    // Which handle takes a connection is the kernel's choice; the extra ones do take some.
    expect(accepted.some((a) => a.extra)).toBe(true);
  });

  it('given a listener not yet listening, adds its handles once it listens and leaves no listener on it', async () => {
    const listener = net.createServer({ pauseOnConnect: true });
    onClose(() => new Promise<void>((resolve) => listener.close(() => resolve())));
    const added = extraAcceptHandles(listener, { count: 2, onConnection: (socket) => socket.destroy(), backlog: 4096, log });
    listener.listen({ port: 0, host: '127.0.0.1' });
    const extra = await added.ready;
    onClose(() => Promise.all(extra.map((e) => new Promise((resolve) => e.close(resolve)))));
    expect(extra).toHaveLength(2);
    // A later error of the listener is the listener's owner's to hear, not swallowed here.
    expect(listener.listenerCount('error')).toBe(0);
    expect(listener.listenerCount('listening')).toBe(0);
    await added.gone;
  });

  it('a blocked event loop then accepts several connections in one turn, not one', async () => {
    const { accepted, port } = await listenerWith(7);
    const flag = join(await tempDir('rp-accept-'), 'connected');
    // The dialer opens 20 connections and, once the kernel has completed all of them (each
    // waits in the listen queue), writes the flag; this process is blocked meanwhile, like a
    // server busy with a storm's handshakes, so none is accepted before the loop turns again.
    const dialer: ChildProcess = spawn(
      process.execPath,
      [
        '-e',
        `const net = require('node:net'); const fs = require('node:fs');
         let left = 20;
         for (let i = 0; i < 20; i++) net.connect(${port}, '127.0.0.1', () => { if (--left === 0) fs.writeFileSync(${JSON.stringify(flag)}, 'x'); }).on('error', () => {});
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    onClose(() => {
      dialer.kill();
    });
    const deadline = Date.now() + 20_000;
    while (!existsSync(flag) && Date.now() < deadline) {}
    expect(existsSync(flag)).toBe(true);
    // Count what one poll phase accepts: between two check phases.
    const turn = await new Promise<number>((resolve) =>
      setImmediate(() => {
        const start = accepted.length;
        setImmediate(() => resolve(accepted.length - start));
      }),
    );
    expect(turn).toBeGreaterThan(1);
    await waitFor(() => accepted.length === 20, 5000, 'all 20 accepted');
  });

  it('the server accepts through RP_SERVER_ACCEPT_HANDLES handles, its helper gone, and its clients connect', async () => {
    const before = children();
    const server = await startServer();
    const handles = () => (server.status().handshakes as { acceptHandles: number }).acceptHandles;
    await waitFor(() => handles() === 64, 10_000, 'the 64 handles');
    await waitFor(() => children().every((pid) => before.includes(pid)), 5000, 'the helper gone');
    for (let i = 0; i < 5; i++) await startClient(server, { name: `agent-${i}` });
    expect(server.registry.size).toBe(5);
    await server.close(0);
    expect(children().filter((pid) => !before.includes(pid))).toEqual([]);
  });

  it('RP_SERVER_ACCEPT_HANDLES=1 starts no helper process', async () => {
    const before = children();
    const server = await startServer({ env: { RP_SERVER_ACCEPT_HANDLES: '1' } });
    expect(children().filter((pid) => !before.includes(pid))).toEqual([]);
    expect((server.status().handshakes as { acceptHandles: number }).acceptHandles).toBe(1);
    await startClient(server, { name: 'agent-1' });
    expect(server.registry.get('agent-1')?.ready).toBe(true);
  });
});
