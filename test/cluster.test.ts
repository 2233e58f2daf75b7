/**
 * A cluster of server instances over a real nats-server: any instance's
 * gateway reaches any client, bodies of any size cross the hop, deadlines
 * and cancellation cross it, fan-out and the views cover the cluster, and
 * the newest connection of a name wins across instances.
 */
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClientEventHandler } from '@restpipe/client';
import { ServerEventHandler } from '@restpipe/server';
import type { EventContext, PostData } from '@restpipe/shared';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { patternSource, sha256Of, startInstance, waitNatsUp, waitVisible } from './helpers/cluster.js';
import { startNatsServer } from './helpers/nats.js';
import { closeAll, httpClient, onClose, startClient, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

const MiB = 1024 * 1024;

class Branch extends ClientEventHandler {
  static override readonly streamedBodies = ['put_upload'];
  readonly signals: AbortSignal[] = [];
  constructor(readonly label: string) {
    super();
  }
  get_where(ctx: EventContext, post: PostData, ...args: string[]) {
    return { label: this.label, args, query: ctx.query, header: ctx.headers['x-test'] ?? null, mimetype: post.mimetype, data: post.data };
  }
  post_where(ctx: EventContext, post: PostData, ...args: string[]) {
    return this.get_where(ctx, post, ...args);
  }
  async get_hang(ctx: EventContext) {
    this.signals.push(ctx.signal);
    await sleep(60_000, undefined, { signal: ctx.signal }).catch(() => undefined);
    return { late: true };
  }
  async put_upload(_ctx: EventContext, post: PostData) {
    return sha256Of(post.stream as Readable);
  }
  get_download(_ctx: EventContext, _post: PostData, size: string) {
    return ['application/octet-stream', 0, patternSource(Number(size)).stream];
  }
}

class Hub extends ServerEventHandler {
  constructor(readonly instance: string) {
    super();
  }
  get_instance() {
    return { instance: this.instance };
  }
}

async function threeInstances() {
  const nats = await startNatsServer();
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => startInstance(nats.url, n, { handler: new Hub(n) })));
  await waitNatsUp([a!, b!, c!]);
  return { nats, a: a!, b: b!, c: c! };
}

describe('a cluster of server instances', () => {
  it("answers at instance B's gateway for a client on instance A, with args, query, headers and body", async () => {
    const { a, b, c } = await threeInstances();
    await startClient(a, { name: 'branch-01', handler: new Branch('on-a') });
    await waitVisible([a, b, c], 'branch-01');
    const http = httpClient();
    const got = await http('POST', `${b.gatewayAddress}/client/branch-01/where//x/y?k=v&k=w`, {
      body: JSON.stringify({ hello: 'world' }),
      headers: { 'content-type': 'application/json', 'x-test': 'yes' },
    });
    expect(got.status).toBe(200);
    expect(got.code).toBe(0);
    expect(got.json()).toEqual({
      label: 'on-a',
      args: ['x', 'y'],
      query: { k: ['v', 'w'] },
      header: 'yes',
      mimetype: 'application/json',
      data: { hello: 'world' },
    });

    // A handler's own failure keeps its code across the hop; a noun nobody handles too.
    const none = await http('GET', `${c.gatewayAddress}/client/branch-01/nothing_here`);
    expect({ status: none.status, code: none.code }).toEqual({ status: 404, code: 255 });

    // No instance holds it: 404 / 242 at once, not at the deadline.
    const unknown = await http('GET', `${b.gatewayAddress}/client/nobody/where`, { headers: { 'x-restpipe-timeout-ms': '60000' } });
    expect({ status: unknown.status, code: unknown.code }).toEqual({ status: 404, code: 242 });
  });

  it('keeps client-to-server requests on the instance the client is connected to', async () => {
    const { a, b } = await threeInstances();
    const client = await startClient(b, { name: 'branch-02', handler: new Branch('on-b') });
    await waitVisible([a, b], 'branch-02');
    const http = httpClient();
    const got = await http('GET', `${client.gatewayAddress}/server/instance`);
    expect(got.json()).toEqual({ instance: 'b' });
  });

  it('carries 100 MiB each way through the remote hop, intact', async () => {
    const { a, b } = await threeInstances();
    await startClient(a, { name: 'branch-03', handler: new Branch('on-a') });
    await waitVisible([a, b], 'branch-03');
    const agent = new Agent({ connections: 2, bodyTimeout: 120_000, headersTimeout: 120_000 });
    onClose(() => agent.close());
    const size = 100 * MiB;

    const up = patternSource(size);
    const upRes = await request(`${b.gatewayAddress}/client/branch-03/upload`, { method: 'PUT', body: up.stream, dispatcher: agent });
    expect(upRes.statusCode).toBe(200);
    expect(await upRes.body.json()).toEqual({ hex: up.digest(), bytes: size });

    const downRes = await request(`${b.gatewayAddress}/client/branch-03/download//${size}`, { dispatcher: agent });
    expect(downRes.statusCode).toBe(200);
    const expected = patternSource(size);
    const [got, want] = await Promise.all([sha256Of(downRes.body), sha256Of(expected.stream)]);
    expect(got).toEqual(want);
  }, 120_000);

  it('carries deadlines and cancellation across the hop', async () => {
    const { a, b } = await threeInstances();
    const branch = new Branch('on-a');
    await startClient(a, { name: 'branch-04', handler: branch });
    await waitVisible([a, b], 'branch-04');
    const http = httpClient();

    const late = await http('GET', `${b.gatewayAddress}/client/branch-04/hang`, { headers: { 'x-restpipe-timeout-ms': '300' } });
    expect({ status: late.status, code: late.code }).toEqual({ status: 504, code: 244 });
    await waitFor(() => branch.signals[0]?.aborted === true, 5000, 'the handler to see the deadline');

    // The caller at B goes away: the handler on the client held by A is stopped.
    const caller = new AbortController();
    const pending = request(`${b.gatewayAddress}/client/branch-04/hang`, { signal: caller.signal }).catch((err: Error) => err);
    await waitFor(() => branch.signals.length === 2, 5000, 'the second call to reach the handler');
    caller.abort();
    await pending;
    await waitFor(() => branch.signals[1]?.aborted === true, 5000, 'the handler to be cancelled');
  });

  it('fans out to the clients of every instance; a hung one answers 244 in its entry', async () => {
    const { a, b, c } = await threeInstances();
    await startClient(a, { name: 'shop-a', handler: new Branch('on-a') });
    await startClient(b, { name: 'shop-b', handler: new Branch('on-b') });
    await startClient(c, { name: 'shop-c', handler: new Branch('on-c') });
    for (const name of ['shop-a', 'shop-b', 'shop-c']) await waitVisible([a, b, c], name);
    const http = httpClient();

    const all = await http('GET', `${b.gatewayAddress}/clients/shop-*/where`);
    expect(all.status).toBe(200);
    const entries = all.json<Record<string, { code: number; data: { label: string } }>>();
    expect(Object.keys(entries)).toEqual(['shop-a', 'shop-b', 'shop-c']);
    expect(Object.values(entries).map((e) => [e.code, e.data.label])).toEqual([
      [0, 'on-a'],
      [0, 'on-b'],
      [0, 'on-c'],
    ]);

    const hung = await http('GET', `${a.gatewayAddress}/clients/shop-a,shop-c,nobody/hang`, { headers: { 'x-restpipe-timeout-ms': '400' } });
    const parts = hung.json<Record<string, { code: number }>>();
    expect({ a: parts['shop-a']?.code, c: parts['shop-c']?.code, nobody: parts.nobody?.code }).toEqual({ a: 244, c: 244, nobody: 242 });
  });

  it('lists, streams and counts the clients of the whole cluster', async () => {
    const { a, b, c } = await threeInstances();
    const http = httpClient();
    const events = await request(`${c.gatewayAddress}/_restpipe/events`);
    onClose(() => events.body.destroy());
    let text = '';
    events.body.setEncoding('utf8').on('data', (d: string) => (text += d));

    await startClient(a, { name: 'till-1', handler: new Branch('on-a') });
    await startClient(b, { name: 'till-2', handler: new Branch('on-b') });
    await waitVisible([a, b, c], 'till-1');
    await waitVisible([a, b, c], 'till-2');

    const listed = (await http('GET', `${c.gatewayAddress}/_restpipe/clients`)).json<Array<{ name: string; instance: string }>>();
    expect(listed.map((x) => [x.name, x.instance]).sort()).toEqual([
      ['till-1', 'a'],
      ['till-2', 'b'],
    ]);
    await waitFor(
      () => /"name":"till-1"[^\n]*"instance":"a"/.test(text) && /"name":"till-2"[^\n]*"instance":"b"/.test(text),
      5000,
      'the events of both clients',
    );

    const status = (await http('GET', `${c.gatewayAddress}/_restpipe/status`)).json<{
      instance: string;
      clusterClients: number;
      cluster: { nats: { state: string }; instances: Array<{ name: string }> };
    }>();
    expect(status.instance).toBe('c');
    expect(status.clusterClients).toBe(2);
    expect(status.cluster.nats.state).toBe('connected');
    expect(status.cluster.instances.map((i) => i.name).sort()).toEqual(['a', 'b']);
  });

  it('lets the newest connection of a name win across instances', async () => {
    const { a, b, c } = await threeInstances();
    // The older one must not come back during the test (it would be the newest then).
    const slow = { RP_CLIENT_RECONNECT_INITIAL_S: '60', RP_CLIENT_RECONNECT_MAX_S: '60' };
    await startClient(a, { name: 'twin', handler: new Branch('older-on-a'), env: slow });
    await waitVisible([a, b, c], 'twin');
    await startClient(b, { name: 'twin', handler: new Branch('newer-on-b') });
    await waitFor(() => a.registry.get('twin') === undefined, 10_000, 'the older connection on a to close');
    const http = httpClient();
    await waitFor(() => c.cluster?.remoteClients().find((r) => r.name === 'twin')?.instance === 'b', 10_000, 'c to see twin on b');
    const got = await http('GET', `${c.gatewayAddress}/client/twin/where`);
    expect(got.json<{ label: string }>().label).toBe('newer-on-b');
  });
});
