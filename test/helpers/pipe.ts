/**
 * Real pipes on loopback for tests: a server and clients with gateways on
 * ephemeral ports, real TLS with certs-tool identities. Every resource is
 * registered for teardown when created; `closeAll()` runs in afterEach.
 */
import { RestPipeClient, loadClientConfig, type ClientEventHandler, type ClientConnectionStateEvents } from '@restpipe/client';
import { RestPipeServer, loadServerConfig, type ServerEventHandler, type ServerConnectionStateEvents } from '@restpipe/server';
import { nullStats, type Stats, type TlsIdentity } from '@restpipe/shared';
import { createServer } from 'node:net';
import { pino } from 'pino';
import { Agent, request } from 'undici';
import { testPki } from './identities.js';

type Closer = () => Promise<unknown> | unknown;
const closers: Closer[] = [];

/** Registers a teardown step; they run last-first in `closeAll()`. */
export function onClose(closer: Closer): void {
  closers.push(closer);
}

export async function closeAll(): Promise<void> {
  while (closers.length > 0) {
    const closer = closers.pop() as Closer;
    await closer();
  }
}

/** Settings every test node uses: loopback, port 0, quiet, no statsd. */
export const TEST_ENV: Record<string, string> = {
  RP_SERVER_BIND_INTERFACE: '127.0.0.1',
  RP_SERVER_BIND_PORT: '0',
  RP_SERVER_GATEWAY_HOST: '127.0.0.1',
  RP_SERVER_GATEWAY_PORT: '0',
  RP_CLIENT_GATEWAY_HOST: '127.0.0.1',
  RP_CLIENT_GATEWAY_PORT: '0',
  RP_CLIENT_TARGET_HOSTNAME: 'localhost',
  RP_STATSD_HOST: '',
  RP_LOG_LEVEL: 'silent',
  RP_DRAIN_GRACE_S: '1',
};

export const quietLog = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export interface ServerSetup {
  env?: Record<string, string>;
  handler?: ServerEventHandler;
  hooks?: ServerConnectionStateEvents;
  identity?: TlsIdentity;
  stats?: Stats;
  /** ServerOptions.handshakeLeaseMs. */
  handshakeLeaseMs?: number;
}

export async function startServer(setup: ServerSetup = {}): Promise<RestPipeServer> {
  const pki = await testPki();
  const config = await loadServerConfig({ ...TEST_ENV, ...setup.env });
  const server = new RestPipeServer({
    config,
    identity: setup.identity ?? pki.server,
    handler: setup.handler,
    hooks: setup.hooks,
    log: quietLog,
    stats: setup.stats ?? nullStats,
    handshakeLeaseMs: setup.handshakeLeaseMs,
  });
  onClose(() => server.close(0));
  await server.start();
  return server;
}

export interface ClientSetup {
  name?: string;
  env?: Record<string, string>;
  handler?: ClientEventHandler;
  hooks?: ClientConnectionStateEvents;
  identity?: TlsIdentity;
  stats?: Stats;
  /** Wait until the pipe is up. @default true */
  waitConnected?: boolean;
}

export async function startClient(server: RestPipeServer | { port: number }, setup: ClientSetup = {}): Promise<RestPipeClient> {
  const pki = await testPki();
  const port = server instanceof RestPipeServer ? server.pipeAddress.port : server.port;
  const config = await loadClientConfig({ ...TEST_ENV, RP_CLIENT_TARGET_PORT: String(port), ...setup.env });
  const client = new RestPipeClient({
    config,
    identity: setup.identity ?? (await pki.client(setup.name ?? 'agent-1')),
    handler: setup.handler,
    hooks: setup.hooks,
    log: quietLog,
    stats: setup.stats ?? nullStats,
  });
  onClose(() => client.close(0));
  await client.start();
  if (setup.waitConnected !== false) await client.waitForPipe(10_000);
  return client;
}

/** A server and one connected client named `agent-1` (or `name`). */
export async function startPair(setup: { server?: ServerSetup; client?: ClientSetup } = {}): Promise<{ server: RestPipeServer; client: RestPipeClient }> {
  const server = await startServer(setup.server);
  const client = await startClient(server, setup.client);
  await waitFor(() => server.registry.get(setup.client?.name ?? 'agent-1')?.ready === true);
  return { server, client };
}

/** A port that was free a moment ago, for a node that must come back on the same port or a child given a fixed one. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

/** Polls `check` every 10 ms until it is true; throws after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  code: number | undefined;
  json<T = unknown>(): T;
}

/** An HTTP client with its own connection pool, closed at teardown. */
export function httpClient(
  connections = 16,
): (method: string, url: string, opts?: { body?: string | Buffer; headers?: Record<string, string> }) => Promise<HttpAnswer> {
  const agent = new Agent({ connections, pipelining: 1 });
  onClose(() => agent.close());
  return async (method, url, opts = {}) => {
    const res = await request(url, { method: method as 'GET', body: opts.body, headers: opts.headers, dispatcher: agent });
    const text = await res.body.text();
    const codeHeader = res.headers['x-event-return-code'];
    return {
      status: res.statusCode,
      headers: res.headers,
      text,
      code: typeof codeHeader === 'string' ? Number(codeHeader) : undefined,
      json: <T>() => JSON.parse(text) as T,
    };
  };
}
