/**
 * Beyond one-to-one, over real sockets: fan-out, fire-and-forget
 * notifications, connection events and status, routing helpers; and the
 * in-process pair with no sockets at all.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ClientEventHandler } from '@restpipe/client';
import { ServerEventHandler } from '@restpipe/server';
import { createInProcessPair, type EventContext, type PostData } from '@restpipe/shared';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, httpClient, onClose, startClient, startPair, startServer, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

class Branch extends ClientEventHandler {
  received: string[] = [];
  constructor(
    readonly label: string,
    readonly hang = false,
  ) {
    super();
  }
  async get_status(ctx: EventContext) {
    if (this.hang) await sleep(60_000, undefined, { signal: ctx.signal }).catch(() => undefined);
    return { label: this.label };
  }
  get_fail() {
    throw new RangeError(`${this.label} broke`);
  }
  get_text() {
    return ['text/plain', 0, `plain ${this.label}`];
  }
  async post_log(_ctx: EventContext, post: PostData) {
    await sleep(Math.floor(Math.random() * 5));
    this.received.push((post.data as { n: string }).n);
    return 'ok';
  }
  post_bad_log() {
    throw new Error('cannot log');
  }
}

describe('fan-out', () => {
  it('sends to every selected client at once; a hung client is an error entry, never a missing one', async () => {
    const server = await startServer();
    await startClient(server, { name: 'alpha', handler: new Branch('A') });
    await startClient(server, { name: 'beta', handler: new Branch('B') });
    await startClient(server, { name: 'gamma', handler: new Branch('G', true) });
    await waitFor(() => server.registry.size === 3);
    const http = httpClient();
    const t0 = Date.now();
    const all = await http('GET', `${server.gatewayAddress}/clients/*/status`, { headers: { 'X-RestPipe-Timeout-Ms': '500' } });
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(all.status).toBe(200);
    expect(all.code).toBe(0);
    expect(all.json()).toEqual({
      alpha: { code: 0, status: 200, mimetype: 'application/json', data: { label: 'A' } },
      beta: { code: 0, status: 200, mimetype: 'application/json', data: { label: 'B' } },
      gamma: { code: 244, status: 504, error: { code: 'RP_DEADLINE_EXCEEDED', message: 'no reply within the deadline of 500 ms' } },
    });
  });

  it('takes comma lists and globs, reports listed names that are not connected, and carries exceptions and text', async () => {
    const server = await startServer();
    await startClient(server, { name: 'branch-1', handler: new Branch('1') });
    await startClient(server, { name: 'branch-2', handler: new Branch('2') });
    await startClient(server, { name: 'hq', handler: new Branch('H') });
    await waitFor(() => server.registry.size === 3);
    const http = httpClient();
    const globbed = await http('GET', `${server.gatewayAddress}/clients/branch-*/status`);
    expect(Object.keys(globbed.json<object>())).toEqual(['branch-1', 'branch-2']);
    const listed = await http('GET', `${server.gatewayAddress}/clients/hq,nowhere,branch-%3F/text`);
    expect(listed.json()).toEqual({
      'branch-1': { code: 0, status: 200, mimetype: 'text/plain', data: 'plain 1' },
      'branch-2': { code: 0, status: 200, mimetype: 'text/plain', data: 'plain 2' },
      hq: { code: 0, status: 200, mimetype: 'text/plain', data: 'plain H' },
      nowhere: { code: 242, status: 404, error: { code: 'RP_UNKNOWN_CLIENT', message: 'no client named "nowhere" is connected' } },
    });
    const failed = await http('GET', `${server.gatewayAddress}/clients/hq/fail`);
    const entry = failed.json<Record<string, { code: number; exception: { class: string; message: string } }>>().hq;
    expect(entry?.code).toBe(251);
    expect(entry?.exception.class).toBe('RangeError');
    expect(entry?.exception.message).toBe('H broke');
  });
});

describe('fire-and-forget notifications', () => {
  it('answers 202 at once and delivers to the handler in order', async () => {
    const branch = new Branch('A');
    const { server } = await startPair({ client: { name: 'alpha', handler: branch } });
    const http = httpClient(1);
    for (let i = 0; i < 50; i++) {
      const res = await http('POST', `${server.gatewayAddress}/client/alpha/log`, {
        body: JSON.stringify({ n: String(i) }),
        headers: { 'content-type': 'application/json', prefer: 'respond-async' },
      });
      expect(res.status).toBe(202);
      expect(res.headers['preference-applied']).toBe('respond-async');
    }
    await waitFor(() => branch.received.length === 50, 5000, 'all notifications');
    expect(branch.received).toEqual(Array.from({ length: 50 }, (_, i) => String(i)));
  });

  it('logs and counts a notification that fails', async () => {
    const { server, client } = await startPair({ client: { name: 'alpha', handler: new Branch('A') } });
    const http = httpClient();
    const res = await http('POST', `${server.gatewayAddress}/client/alpha/bad_log`, { headers: { prefer: 'respond-async' } });
    expect(res.status).toBe(202);
    await waitFor(() => (client.status().counters as Record<string, number>)['notifications.failed'] === 1, 5000, 'the failure to be counted');
  });
});

describe('connection events and status', () => {
  it('lists connected clients with address, connected-since, round-trip time, version and requests in flight', async () => {
    const hb = { RP_CLIENT_HEARTBEAT_INTERVAL_S: '0.05', RP_CLIENT_HEARTBEAT_TIMEOUT_S: '2' };
    const { server } = await startPair({ server: { env: hb }, client: { name: 'alpha', env: hb } });
    await waitFor(() => server.registry.get('alpha')?.rttMs !== undefined, 5000, 'a ping for a round-trip time');
    const list = await httpClient()('GET', `${server.gatewayAddress}/_restpipe/clients`);
    expect(list.status).toBe(200);
    const [entry] = list.json<Array<Record<string, unknown>>>();
    expect(entry).toMatchObject({ name: 'alpha', protocolVersion: 1, agent: 'restpipe-node', inFlight: { outgoing: 0, incoming: 0, streams: 0 } });
    expect(entry?.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(Date.parse(String(entry?.connectedSince))).toBeLessThanOrEqual(Date.now());
    expect(typeof entry?.rttMs).toBe('number');
  });

  it("the client learns the round-trip time too, from the server's pings, and reports it in status and statsd", async () => {
    const hb = { RP_CLIENT_HEARTBEAT_INTERVAL_S: '0.05', RP_CLIENT_HEARTBEAT_TIMEOUT_S: '2' };
    const timings: string[] = [];
    const stats = { increment() {}, gauge() {}, timing: (name: string) => void timings.push(name), async close() {} };
    const { client } = await startPair({ server: { env: hb }, client: { name: 'alpha', env: hb, stats } });
    await waitFor(() => client.status().rttMs !== null, 5000, 'the client to learn the round trip');
    const status = await httpClient()('GET', `${client.gatewayAddress}/_restpipe/status`);
    expect(typeof status.json<{ rttMs: unknown }>().rttMs).toBe('number');
    expect(timings).toContain('heartbeat.rtt');
  });

  it('streams connected and disconnected events (Server-Sent Events)', async () => {
    const server = await startServer();
    const agent = new Agent();
    onClose(() => agent.close());
    const ac = new AbortController();
    onClose(() => ac.abort());
    const res = await request(`${server.gatewayAddress}/_restpipe/events`, { dispatcher: agent, signal: ac.signal });
    expect(res.headers['content-type']).toBe('text/event-stream');
    let text = '';
    res.body.setEncoding('utf8').on('data', (d: string) => (text += d));
    res.body.on('error', () => undefined);
    const client = await startClient(server, { name: 'alpha' });
    await waitFor(() => text.includes('event: connected'), 5000, 'a connected event');
    await client.close(0);
    await waitFor(() => text.includes('event: disconnected'), 5000, 'a disconnected event');
    const events = text
      .split('\n\n')
      .filter((block) => block.startsWith('event:'))
      .map((block) => ({ type: block.split('\n')[0]?.slice(7), data: JSON.parse(block.split('\n')[1]?.slice(6) ?? '{}') as Record<string, unknown> }));
    expect(events.map((e) => [e.type, e.data.name, e.data.clients])).toEqual([
      ['connected', 'alpha', 1],
      ['disconnected', 'alpha', 0],
    ]);
    expect(Date.parse(String(events[0]?.data.time))).toBeGreaterThan(0);
  });

  it('a server that stops ends its event streams instead of waiting for them', async () => {
    const server = await startServer();
    const agent = new Agent();
    onClose(() => agent.close());
    const res = await request(`${server.gatewayAddress}/_restpipe/events`, { dispatcher: agent });
    const ended = res.body.text();
    await server.close(0);
    expect(await ended).toContain(': connected clients follow');
  });

  it('status is 200 while the pipe is up and 503 while it is down, so it works as a health check', async () => {
    const { server, client } = await startPair({ client: { env: { RP_CLIENT_RECONNECT_INITIAL_S: '30' } } });
    const http = httpClient();
    const up = await http('GET', `${client.gatewayAddress}/_restpipe/status`);
    expect(up.status).toBe(200);
    expect(up.json()).toMatchObject({ side: 'client', pipe: 'up', peer: { name: 'localhost' } });
    const srv = await http('GET', `${server.gatewayAddress}/_restpipe/status`);
    expect(srv.status).toBe(200);
    expect(srv.json()).toMatchObject({ side: 'server', pipe: 'listening', clients: 1 });
    expect(srv.json<{ counters: Record<string, number> }>().counters['connections.added']).toBe(1);
    await server.close(0);
    await waitFor(() => client.state !== 'connected', 5000, 'the client to notice');
    const down = await http('GET', `${client.gatewayAddress}/_restpipe/status`);
    expect(down.status).toBe(503);
    expect(down.json()).toMatchObject({ pipe: 'down' });
  });
});

class Routed extends ServerEventHandler {
  static override readonly parameters = { get_files: { args: ['path'], query: ['user'] } };
  get_files(_ctx: EventContext, _post: PostData, path: string) {
    return { path };
  }
  fallback(ctx: EventContext, _post: PostData, ...args: string[]) {
    return { fallback: `${ctx.verb} ${ctx.noun}`, args };
  }
}

describe('routing helpers', () => {
  it('a fallback answers nouns without a method; declared parameters answer 400 naming the missing one', async () => {
    const { client } = await startPair({ server: { handler: new Routed() } });
    const http = httpClient();
    expect((await http('GET', `${client.gatewayAddress}/server/any/thing//x`)).json()).toEqual({ fallback: 'get any/thing', args: ['x'] });
    const noArg = await http('GET', `${client.gatewayAddress}/server/files?user=u`);
    expect([noArg.status, noArg.code]).toEqual([400, 240]);
    expect(noArg.json<{ error: { message: string } }>().error.message).toContain('"path"');
    const noQuery = await http('GET', `${client.gatewayAddress}/server/files//etc`);
    expect([noQuery.status, noQuery.code]).toEqual([400, 240]);
    expect(noQuery.json<{ error: { message: string } }>().error.message).toContain('"user"');
    expect((await http('GET', `${client.gatewayAddress}/server/files//etc?user=u`)).json()).toEqual({ path: 'etc' });
  });
});

describe('in-process pair', () => {
  class Notes extends ServerEventHandler {
    get_time() {
      return { time_from_server: 12.5 };
    }
    post_notes(ctx: EventContext, post: PostData) {
      return { from: ctx.peer.name, got: post.data };
    }
    get_fail() {
      throw new Error('nope');
    }
  }

  it('runs the real exchange and dispatch with no sockets', async () => {
    const pair = createInProcessPair({ serverHandler: new Notes(), clientHandler: new Branch('local'), clientName: 'unit-test' });
    try {
      expect((await pair.server.get('time')).json()).toEqual({ time_from_server: 12.5 });
      expect((await pair.server.post('notes', { a: 1 })).json()).toEqual({ from: 'unit-test', got: { a: 1 } });
      const failed = await pair.server.get('fail');
      expect([failed.code, failed.status]).toEqual([251, 500]);
      expect(failed.json<{ exception: { message: string } }>().exception.message).toBe('nope');
      expect((await pair.server.get('missing')).code).toBe(255);
      expect((await pair.client.get('status')).json()).toEqual({ label: 'local' });
      expect(pair.exchanges.client.inFlight).toEqual({ outgoing: 0, incoming: 0, streams: 0 });
    } finally {
      await pair.close();
    }
  });
});
