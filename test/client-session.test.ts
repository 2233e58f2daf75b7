/**
 * The client's TLS session across failed attempts: a server too busy to say
 * hello within the handshake timeout (a reconnect storm) gets a resumed
 * handshake on the next attempt, not another full one.
 */
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import type { ClientStatusEvent } from '@restpipe/client';
import { deriveTicketKeys } from '@restpipe/shared';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { testPki } from './helpers/identities.js';
import { closeAll, freePort, onClose, startClient, startServer, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

/**
 * Listens on a loopback port and holds every connection open without a word;
 * at teardown destroys them and closes the server. Resolves with the port.
 */
async function listenSilent(server: net.Server, event: 'connection' | 'secureConnection'): Promise<number> {
  const sockets = new Set<net.Socket>();
  server.on(event, (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onClose(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as { port: number }).port;
}

describe("the client's TLS session", () => {
  it('is kept when an attempt times out waiting for hello, so the next attempt resumes', async () => {
    const pki = await testPki();
    // A TLS server that completes handshakes (and gives tickets) but never speaks the pipe protocol.
    const silent = tls.createServer({
      key: pki.server.key,
      cert: pki.server.cert,
      ca: pki.server.ca,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
      ticketKeys: deriveTicketKeys(String(pki.server.key), []),
    });
    const resumedOnServer: boolean[] = [];
    silent.on('secureConnection', (socket) => resumedOnServer.push(socket.isSessionReused()));
    const port = await listenSilent(silent, 'secureConnection');

    const failures: Array<{ resumed?: boolean; message: string }> = [];
    const client = await startClient(
      { port },
      {
        name: 'slowpoke',
        waitConnected: false,
        env: { RP_CLIENT_HANDSHAKE_TIMEOUT_S: '0.3', RP_CLIENT_RECONNECT_INITIAL_S: '0.01', RP_CLIENT_RECONNECT_MAX_S: '0.05' },
      },
    );
    client.on('status', (e: ClientStatusEvent) => {
      if (e.type === 'connect_failed') failures.push({ resumed: e.resumed, message: e.error.message });
    });
    await waitFor(() => failures.length >= 3, 20_000, 'three attempts that time out');
    await client.close(0);
    expect(failures.every((f) => /took over 300 ms/.test(f.message))).toBe(true);
    // The first is a full handshake; every later one resumes the session the first got.
    expect(failures[0]?.resumed).toBe(false);
    expect(failures.slice(1).map((f) => f.resumed)).toEqual(failures.slice(1).map(() => true));
    expect(resumedOnServer.slice(1, 3)).toEqual([true, true]);
  });

  it('gives a connected attempt the handshake timeout, not the TCP connect timeout', async () => {
    // Accepts TCP and never answers the ClientHello: a server whose handshake queue is full.
    const port = await listenSilent(net.createServer(), 'connection');
    const failures: string[] = [];
    const client = await startClient(
      { port },
      {
        name: 'patient',
        waitConnected: false,
        env: { RP_CLIENT_CONNECT_TIMEOUT_S: '0.2', RP_CLIENT_HANDSHAKE_TIMEOUT_S: '0.8', RP_CLIENT_RECONNECT_INITIAL_S: '0.01' },
      },
    );
    client.on('status', (e: ClientStatusEvent) => {
      if (e.type === 'connect_failed') failures.push(e.error.message);
    });
    await waitFor(() => failures.length >= 1, 20_000, 'an attempt that times out');
    await client.close(0);
    expect(failures[0]).toBe(`the TLS handshake and hello with localhost:${port} took over 800 ms`);
  });

  it('is parsed once per attempt that reaches the server, and not at all for a refused one', async () => {
    const port = await freePort();
    const env = { RP_SERVER_BIND_PORT: String(port) };
    const first = await startServer({ env });
    const failures: string[] = [];
    const client = await startClient(first, {
      name: 'agent-1',
      env: { RP_CLIENT_RECONNECT_INITIAL_S: '0.01', RP_CLIENT_RECONNECT_MAX_S: '0.05', RP_CLIENT_RECONNECT_STABLE_S: '0' },
    });
    client.on('status', (e: ClientStatusEvent) => {
      if (e.type === 'connect_failed') failures.push((e.error as NodeJS.ErrnoException).code ?? e.error.message);
    });
    // The client holds a ticket of the first server; Node parses a session in `setSession`.
    const parses = vi.spyOn(tls.TLSSocket.prototype as unknown as { setSession(s: Buffer): void }, 'setSession');
    onClose(() => parses.mockRestore());
    await first.close(0);
    await waitFor(() => failures.filter((f) => f === 'ECONNREFUSED').length >= 3, 10_000, 'three refused attempts');
    expect(parses).not.toHaveBeenCalled();
    const second = await startServer({ env });
    // Both ends: the server may count the pipe ready a moment before the client's loop marks it up.
    await waitFor(() => second.registry.get('agent-1')?.ready === true && client.status().pipe === 'up', 10_000, 'the client back');
    expect(client.status().tls).toMatchObject({ resumed: true });
    expect(parses).toHaveBeenCalledTimes(1);
  });
});
