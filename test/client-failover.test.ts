/**
 * A client given several servers (the instances of a cluster) in
 * `RP_CLIENT_TARGET_HOSTNAME`: it dials past one that is not listening,
 * moves to the next at once when a server sends it away (GoAway) while the
 * old pipe finishes its requests in flight, keeps cycling while all are
 * down, keeps a TLS session per server, and a fleet spreads over the list
 * (the shuffle's random source injected, so nothing depends on luck).
 * Real TLS on loopback, real servers.
 */
import { ClientExampleHandler, RestPipeClient, loadClientConfig, type ClientStatusEvent } from '@restpipe/client';
import type { RestPipeServer } from '@restpipe/server';
import { createServerIdentity } from '@restpipe/certs-tool';
import { nullStats, type EventContext, type Logger, type PostData } from '@restpipe/shared';
import { pino } from 'pino';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { testPki } from './helpers/identities.js';
import { TEST_ENV, closeAll, freePort, httpClient, onClose, quietLog, startServer, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

/** Just under 1: the shuffle keeps the listed order, and a backoff wait is (almost) its whole ceiling. */
const KEEP_ORDER = () => 0.999999;

/** A backoff that would outlast every wait below: an attempt that waited for it could not pass. */
const SLOW_BACKOFF = { RP_CLIENT_RECONNECT_INITIAL_S: '60', RP_CLIENT_RECONNECT_MAX_S: '60' };
const FAST_BACKOFF = { RP_CLIENT_RECONNECT_INITIAL_S: '0.05', RP_CLIENT_RECONNECT_MAX_S: '0.2' };

const entry = (port: number) => `127.0.0.1:${port}`;
const at = (server: RestPipeServer) => entry(server.pipeAddress.port);

/** A client handler whose `get_slow` answers when the test says so. */
class HeldHandler extends ClientExampleHandler {
  started = 0;
  private release: (() => void) | undefined;
  private readonly released = new Promise<void>((resolve) => (this.release = resolve));
  async get_slow(_ctx: EventContext, _post: PostData) {
    this.started++;
    await this.released;
    return { slow: 'done' };
  }
  finish(): void {
    this.release?.();
  }
}

interface ListClient {
  client: RestPipeClient;
  events: ClientStatusEvent[];
  of<T extends ClientStatusEvent['type']>(type: T): Array<Extract<ClientStatusEvent, { type: T }>>;
}

/** A client over `targets` (a comma list), recording its status events; closed at teardown. */
async function startListClient(
  targets: string,
  opts: { name?: string; env?: Record<string, string>; random?: () => number; handler?: ClientExampleHandler; log?: Logger } = {},
): Promise<ListClient> {
  const pki = await testPki();
  const config = await loadClientConfig({ ...TEST_ENV, RP_CLIENT_TARGET_HOSTNAME: targets, ...opts.env });
  const client = new RestPipeClient({
    config,
    identity: await pki.client(opts.name ?? 'agent-1'),
    handler: opts.handler,
    log: opts.log ?? quietLog,
    stats: nullStats,
    random: opts.random ?? KEEP_ORDER,
  });
  const events: ClientStatusEvent[] = [];
  client.on('status', (e) => events.push(e));
  onClose(() => client.close(0));
  await client.start();
  const of = <T extends ClientStatusEvent['type']>(type: T) => events.filter((e): e is Extract<ClientStatusEvent, { type: T }> => e.type === type);
  return { client, events, of };
}

/** Log lines as objects, for the lines the client writes. */
function capturedLog(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines };
}

describe('a client with a list of servers', () => {
  it('dials past a server that is not listening to the next, in the same round (no backoff between them)', async () => {
    const dead = await freePort();
    const live = await startServer();
    const { log, lines } = capturedLog();
    const { client, of } = await startListClient(`${entry(dead)},${at(live)}`, { env: SLOW_BACKOFF, log });
    await client.waitForPipe(10_000);
    expect(of('connect_failed').map((e) => [e.target, e.attempts])).toEqual([[entry(dead), 1]]);
    expect(of('connected').map((e) => [e.target, e.attempts])).toEqual([[at(live), 2]]);
    await waitFor(() => live.registry.get('agent-1')?.ready === true, 5000, 'the server to register the client');
    expect(client.status()).toMatchObject({ pipe: 'up', server: at(live), targets: [entry(dead), at(live)] });
    const status = await httpClient()('GET', `${client.gatewayAddress}/_restpipe/status`);
    expect(status.json()).toMatchObject({ pipe: 'up', server: at(live), targets: [entry(dead), at(live)] });
    expect(lines.find((l) => l['msg'] === 'could not connect to the server')).toMatchObject({ server: entry(dead), attempts: 1 });
    expect(lines.find((l) => l['msg'] === 'connected to the server')).toMatchObject({ server: at(live), attempts: 2, tlsResumed: false });
  });

  it('moves to the other server at once when its server shuts down (GoAway), while the old pipe finishes a request in flight', async () => {
    const first = await startServer();
    const second = await startServer();
    const handler = new HeldHandler();
    // Taken now: a closed server has no address.
    const [firstAt, secondAt] = [at(first), at(second)];
    const { client, of } = await startListClient(`${firstAt},${secondAt}`, { env: SLOW_BACKOFF, handler });
    await client.waitForPipe(10_000);
    expect(of('connected').map((e) => e.target)).toEqual([firstAt]);
    await waitFor(() => first.registry.get('agent-1')?.ready === true, 5000, 'the first server to register the client');
    const http = httpClient();
    // A request from the first server's side, held by the client's handler across the move. Its own
    // HTTP connection, closed once answered: an idle keep-alive connection would hold the gateway's close.
    const heldAgent = new Agent();
    onClose(() => (heldAgent.closed ? undefined : heldAgent.close()));
    const held = request(`${first.gatewayAddress}/client/agent-1/slow`, { dispatcher: heldAgent }).then(async (r) => ({
      status: r.statusCode,
      body: await r.body.json(),
    }));
    await waitFor(() => handler.started === 1, 5000, 'the held request to reach the handler');
    const firstClosed = first.close(20_000);
    await waitFor(() => of('connected').length === 2, 10_000, 'the client to connect to the other server');
    expect(of('connected')[1]?.target).toBe(secondAt);
    expect(of('disconnected').map((e) => [e.target, e.error?.message])).toEqual([[firstAt, 'the server is shutting down']]);
    expect(client.status()).toMatchObject({ pipe: 'up', server: secondAt });
    await waitFor(() => second.registry.get('agent-1')?.ready === true, 5000, 'the second server to register the client');
    const res = await http('GET', `${second.gatewayAddress}/client/agent-1/time`);
    expect(res.status).toBe(200);
    expect(res.json<{ time_from_client: number }>().time_from_client).toBeGreaterThan(0);
    // The first server is still draining: the request it holds finishes on the old pipe.
    expect(handler.started).toBe(1);
    handler.finish();
    expect(await held).toEqual({ status: 200, body: { slow: 'done' } });
    await heldAgent.close();
    await firstClosed;
    expect(client.status()).toMatchObject({ pipe: 'up', server: secondAt });
  });

  it('keeps going round while every server is down, and connects to the one that comes back', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const { client, of } = await startListClient(`${entry(a)},${entry(b)}`, { env: FAST_BACKOFF });
    const failedOn = (port: number) => of('connect_failed').filter((e) => e.target === entry(port)).length;
    await waitFor(() => failedOn(a) >= 2 && failedOn(b) >= 2, 10_000, 'two failed rounds over both servers');
    expect(client.state).not.toBe('connected');
    const back = await startServer({ env: { RP_SERVER_BIND_PORT: String(b) } });
    await client.waitForPipe(10_000);
    const connected = of('connected');
    expect(connected.map((e) => e.target)).toEqual([entry(b)]);
    // Every try on either server counts: the attempts since the last pipe.
    expect(connected[0]?.attempts).toBe(of('connect_failed').length + 1);
    await waitFor(() => back.registry.get('agent-1')?.ready === true, 5000, 'the server to register the client');
    expect((await httpClient()('GET', `${back.gatewayAddress}/client/agent-1/time`)).status).toBe(200);
  });

  it('keeps a TLS session per server: back on the first one, it resumes the session that one gave', async () => {
    const pki = await testPki();
    // Another key: the second server's tickets mean nothing to the first, so one shared slot would never resume there.
    const other = await createServerIdentity(pki.ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyBits: 2048 });
    const first = await startServer();
    const second = await startServer({ identity: { key: other.keyPem, cert: other.certPem, ca: pki.ca.certPem } });
    const { client, of } = await startListClient(`${at(first)},${at(second)}`, { env: FAST_BACKOFF });
    await client.waitForPipe(10_000);
    const sendAway = async (server: RestPipeServer, connects: number) => {
      await waitFor(() => server.registry.get('agent-1')?.ready === true, 5000, 'the server to register the client');
      await server.registry.get('agent-1')?.drain('go elsewhere', 0);
      await waitFor(() => of('connected').length === connects, 10_000, 'the client to connect again');
    };
    await sendAway(first, 2);
    await sendAway(second, 3);
    expect(of('connected').map((e) => [e.target, e.resumed])).toEqual([
      [at(first), false],
      [at(second), false],
      [at(first), true],
    ]);
  });

  it('a fleet given the same list spreads over it: each client dials first what its own shuffle put first', async () => {
    const a = await startServer();
    const b = await startServer();
    const list = `${at(a)},${at(b)}`;
    // Below a half the two entries swap, above they stay (Fisher–Yates over two).
    const randoms = [0.1, 0.9, 0.2, 0.8];
    const fleet = await Promise.all(randoms.map((r, i) => startListClient(list, { name: `fleet-${i}`, random: () => r })));
    await Promise.all(fleet.map(({ client }) => client.waitForPipe(10_000)));
    await waitFor(() => a.registry.size + b.registry.size === fleet.length, 5000, 'every client to be registered');
    const firstChoice = (server: RestPipeServer) =>
      fleet
        .map(({ client }, i) => ({ name: `fleet-${i}`, first: (client.status()['targets'] as string[])[0] }))
        .filter((c) => c.first === at(server))
        .map((c) => c.name);
    const names = (server: RestPipeServer) => [...server.registry.entries()].map(([name]) => name).sort();
    expect(names(a)).toEqual(firstChoice(a));
    expect(names(b)).toEqual(firstChoice(b));
    expect(names(a)).toHaveLength(2);
    expect(names(b)).toHaveLength(2);
    for (const { of } of fleet) expect(of('connect_failed')).toEqual([]);
  });
});
