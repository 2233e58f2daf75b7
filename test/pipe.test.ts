/**
 * The pipe end to end over real mutual TLS on loopback: both directions,
 * the examples, arguments, query, bodies, every error code, forbidden
 * handler names, several clients, many requests in flight, refused identities.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ClientEventHandler, ClientConnectionStateEvents, type ClientStatusEvent } from '@restpipe/client';
import { ServerEventHandler } from '@restpipe/server';
import { createServerIdentity } from '@restpipe/certs-tool';
import type { EventContext, PostData } from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { foreignPki, testPki } from './helpers/identities.js';
import { closeAll, httpClient, startClient, startPair, startServer, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

class EchoServerHandler extends ServerEventHandler {
  handled: EventContext[] = [];
  get_time() {
    return { time_from_server: Date.now() / 1000 };
  }
  get_echo(ctx: EventContext, post: PostData, ...args: string[]) {
    return {
      peer: ctx.peer.name,
      query: ctx.query,
      rawQuery: ctx.rawQuery,
      custom: ctx.headers['x-custom'] ?? null,
      args,
      mimetype: post.mimetype,
      data: post.data,
    };
  }
  post_echo(_ctx: EventContext, post: PostData) {
    return { mimetype: post.mimetype, data: post.data };
  }
  get_nested_noun_here() {
    return 'nested';
  }
  get_fail() {
    throw new TypeError('the disk is on fire');
  }
  get_raw() {
    return ['text/plain', 7, 'seven'] as const;
  }
  async get_slow(ctx: EventContext) {
    this.handled.push(ctx);
    await sleep(5_000, undefined, { signal: ctx.signal }).catch(() => undefined);
    return { slow: true };
  }
}

class NamedClientHandler extends ClientEventHandler {
  constructor(readonly label: string) {
    super();
  }
  get_whoami() {
    return { label: this.label };
  }
  async get_echo_id(_ctx: EventContext, _post: PostData, id: string) {
    await sleep(Math.floor(Math.random() * 20));
    return { id };
  }
}

describe('client → server', () => {
  it('answers the example time and cat handlers', async () => {
    const { client } = await startPair();
    const http = httpClient();
    const before = Date.now() / 1000;
    const time = await http('GET', `${client.gatewayAddress}/server/time`);
    expect(time.status).toBe(200);
    expect(time.code).toBe(0);
    expect(time.headers['content-type']).toMatch(/^application\/json/);
    const t = time.json<{ time_from_server: number }>().time_from_server;
    expect(t).toBeGreaterThanOrEqual(before - 1);
    expect(t).toBeLessThanOrEqual(Date.now() / 1000 + 1);
    const cat = await http('GET', `${client.gatewayAddress}/server/cat//hello%20/world`);
    expect(cat.status).toBe(200);
    expect(cat.json()).toEqual({ result_from_server: 'hello world' });
  });

  it('passes arguments (percent-decoded), the query, headers and the caller identity', async () => {
    const { client } = await startPair({ server: { handler: new EchoServerHandler() } });
    const http = httpClient();
    const res = await http('GET', `${client.gatewayAddress}/server/echo//a%2Fb/%C3%A9t%C3%A9//x?k=1&k=2&s=t%20u`, { headers: { 'X-Custom': 'yes' } });
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({
      peer: 'agent-1',
      query: { k: ['1', '2'], s: 't u' },
      rawQuery: 'k=1&k=2&s=t%20u',
      custom: 'yes',
      args: ['a/b', 'été', '', 'x'],
      mimetype: '',
      data: '',
    });
  });

  it('maps a nested noun to an underscored method name', async () => {
    const { client } = await startPair({ server: { handler: new EchoServerHandler() } });
    const res = await httpClient()('GET', `${client.gatewayAddress}/server/nested/noun/here`);
    expect(res.status).toBe(200);
    expect(res.json()).toBe('nested');
  });

  it('parses a JSON POST body for the handler and passes other bodies as bytes or text', async () => {
    const { client } = await startPair({ server: { handler: new EchoServerHandler() } });
    const http = httpClient();
    const json = await http('POST', `${client.gatewayAddress}/server/echo`, {
      body: JSON.stringify({ a: [1, 2], b: 'c' }),
      headers: { 'content-type': 'application/json' },
    });
    expect(json.json()).toEqual({ mimetype: 'application/json', data: { a: [1, 2], b: 'c' } });
    const text = await http('POST', `${client.gatewayAddress}/server/echo`, { body: 'plain words', headers: { 'content-type': 'text/plain' } });
    expect(text.json()).toEqual({ mimetype: 'text/plain', data: 'plain words' });
  });

  it('passes a handler-chosen mimetype and code through', async () => {
    const { client } = await startPair({ server: { handler: new EchoServerHandler() } });
    const res = await httpClient()('GET', `${client.gatewayAddress}/server/raw`);
    expect(res.status).toBe(200);
    expect(res.code).toBe(7);
    expect(res.headers['content-type']).toBe('text/plain');
    expect(res.text).toBe('seven');
  });
});

describe('server → client', () => {
  it('answers the example time and cat handlers of the named client', async () => {
    const { server } = await startPair({ client: { name: 'fileserver-7' } });
    const http = httpClient();
    const time = await http('GET', `${server.gatewayAddress}/client/fileserver-7/time`);
    expect(time.status).toBe(200);
    expect(time.code).toBe(0);
    expect(typeof time.json<{ time_from_client: number }>().time_from_client).toBe('number');
    const cat = await http('GET', `${server.gatewayAddress}/client/fileserver-7/cat//hello%20/world`);
    expect(cat.json()).toEqual({ result_from_client: 'hello world' });
  });

  it('routes to each of two clients by certificate name, over one IP', async () => {
    const server = await startServer();
    await startClient(server, { name: 'alpha', handler: new NamedClientHandler('I am alpha') });
    await startClient(server, { name: 'beta', handler: new NamedClientHandler('I am beta') });
    await waitFor(() => server.registry.size === 2);
    const http = httpClient();
    expect((await http('GET', `${server.gatewayAddress}/client/alpha/whoami`)).json()).toEqual({ label: 'I am alpha' });
    expect((await http('GET', `${server.gatewayAddress}/client/beta/whoami`)).json()).toEqual({ label: 'I am beta' });
  });

  it('keeps 1,000 concurrent requests on one pipe apart, every reply matched to its request', async () => {
    const { server, client } = await startPair({ client: { handler: new NamedClientHandler('x') } });
    const http = httpClient(128);
    const ids = Array.from({ length: 1000 }, (_, i) => `req-${i}`);
    const answers = await Promise.all(ids.map((id) => http('GET', `${server.gatewayAddress}/client/agent-1/echo_id//${id}`)));
    expect(answers.map((a) => a.status)).toEqual(ids.map(() => 200));
    expect(answers.map((a) => a.json<{ id: string }>().id)).toEqual(ids);
    expect(client.exchange?.inFlight).toEqual({ outgoing: 0, incoming: 0, streams: 0 });
    expect(server.registry.get('agent-1')?.inFlight).toEqual({ outgoing: 0, incoming: 0, streams: 0 });
  });
});

describe('errors: event code and HTTP status', () => {
  it('404 / 255 for a missing handler', async () => {
    const { client } = await startPair();
    const res = await httpClient()('GET', `${client.gatewayAddress}/server/nope`);
    expect(res.status).toBe(404);
    expect(res.code).toBe(255);
    expect(res.json<{ exception: { message: string } }>().exception.message).toContain('get_nope');
  });

  it('404 / 255 for a verb the handler does not define', async () => {
    const { client } = await startPair();
    const res = await httpClient()('DELETE', `${client.gatewayAddress}/server/time`);
    expect(res.status).toBe(404);
    expect(res.code).toBe(255);
  });

  it('500 / 251 with message, traceback and class when the handler throws', async () => {
    const { client } = await startPair({ server: { handler: new EchoServerHandler() } });
    const res = await httpClient()('GET', `${client.gatewayAddress}/server/fail`);
    expect(res.status).toBe(500);
    expect(res.code).toBe(251);
    const { exception } = res.json<{ exception: { message: string; traceback: string; class: string } }>();
    expect(exception.message).toBe('the disk is on fire');
    expect(exception.class).toBe('TypeError');
    expect(exception.traceback).toContain('get_fail');
  });

  it('404 / 242 for a client that is not connected', async () => {
    const { server } = await startPair();
    const res = await httpClient()('GET', `${server.gatewayAddress}/client/nobody/time`);
    expect(res.status).toBe(404);
    expect(res.code).toBe(242);
    expect(res.json()).toEqual({ error: { code: 'RP_UNKNOWN_CLIENT', message: 'no client named "nobody" is connected' } });
  });

  it('503 / 243 when the pipe to the server is down', async () => {
    const server = await startServer();
    const port = server.pipeAddress.port;
    await server.close(0);
    const client = await startClient({ port }, { waitConnected: false, env: { RP_CLIENT_CONNECT_WAIT_S: '0.2' } });
    const res = await httpClient()('GET', `${client.gatewayAddress}/server/time`);
    expect(res.status).toBe(503);
    expect(res.code).toBe(243);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('RP_PEER_NOT_CONNECTED');
  });

  it('504 / 244 when the deadline passes, and the handler is told to stop', async () => {
    const handler = new EchoServerHandler();
    const { client } = await startPair({ server: { handler } });
    const res = await httpClient()('GET', `${client.gatewayAddress}/server/slow`, { headers: { 'X-RestPipe-Timeout-Ms': '200' } });
    expect(res.status).toBe(504);
    expect(res.code).toBe(244);
    await waitFor(() => handler.handled[0]?.signal.aborted === true, 2000, 'the handler signal to abort');
  });

  it('400 / 240 for a JSON body that does not parse, and for bad percent-encoding', async () => {
    const { client } = await startPair({ server: { handler: new EchoServerHandler() } });
    const http = httpClient();
    const bad = await http('POST', `${client.gatewayAddress}/server/echo`, { body: '{"a":', headers: { 'content-type': 'application/json' } });
    expect(bad.status).toBe(400);
    expect(bad.code).toBe(240);
    const enc = await http('GET', `${client.gatewayAddress}/server/echo//%E0%A4%A`);
    expect(enc.status).toBe(400);
    expect(enc.code).toBe(240);
  });

  it("413 / 241 for a body over the receiving side's RP_MAX_BODY_BYTES", async () => {
    const { client } = await startPair({ server: { handler: new EchoServerHandler(), env: { RP_MAX_BODY_BYTES: '1000' } } });
    const res = await httpClient()('POST', `${client.gatewayAddress}/server/echo`, { body: 'x'.repeat(2000), headers: { 'content-type': 'text/plain' } });
    expect(res.status).toBe(413);
    expect(res.code).toBe(241);
  });

  it('answers forbidden and malformed handler names like a missing handler', async () => {
    const { client, server } = await startPair({ server: { handler: new EchoServerHandler() } });
    const http = httpClient();
    const nouns = [
      'constructor',
      '__proto__',
      'toString',
      'valueOf',
      'hasOwnProperty',
      'handled',
      '..',
      '%2E%2E',
      'echo%2F..',
      'time%2Futc',
      '',
      'con structor',
    ];
    for (const noun of nouns) {
      const res = await http('GET', `${client.gatewayAddress}/server/${noun}`);
      expect([res.status, res.code], noun).toEqual([404, 255]);
    }
    // The same through the peer's dispatcher, bypassing the gateway's own check.
    const exchange = client.exchange;
    expect(exchange).toBeDefined();
    for (const noun of ['constructor', '__proto__', 'toString', '../x', 'handled']) {
      for (const verb of ['get', 'constructor', '__proto__']) {
        const reply = await exchange!.request({ verb, noun, args: [], query: '', headers: [], mimetype: '', body: Buffer.alloc(0), deadlineMs: 5000 });
        expect(reply.code, `${verb} ${noun}`).toBe(255);
      }
    }
    expect(server.registry.get('agent-1')?.state).toBe('open');
  });
});

describe('identities', () => {
  it('refuses a client whose certificate comes from another CA', async () => {
    const server = await startServer();
    const other = await foreignPki();
    const failures: Error[] = [];
    class Hooks extends ClientConnectionStateEvents {
      override connect_fail(_attempts: number, error: Error) {
        failures.push(error);
      }
    }
    const client = await startClient(server, { identity: await other.client('intruder'), hooks: new Hooks(), waitConnected: false });
    await waitFor(() => failures.length >= 1, 5000, 'a refused connection');
    expect(client.state).not.toBe('connected');
    expect(server.registry.size).toBe(0);
    await expect(client.waitForPipe(100)).rejects.toMatchObject({ code: 'RP_PEER_NOT_CONNECTED' });
  });

  it('refuses a server whose certificate names another host', async () => {
    const pki = await testPki();
    const wrong = await createServerIdentity(pki.ca, { commonName: 'elsewhere.example', dnsNames: ['elsewhere.example'] });
    const server = await startServer({ identity: { key: wrong.keyPem, cert: wrong.certPem, ca: pki.ca.certPem } });
    const events: ClientStatusEvent[] = [];
    const client = await startClient(server, { waitConnected: false });
    client.on('status', (e) => events.push(e));
    await waitFor(() => events.some((e) => e.type === 'connect_failed'), 5000, 'a refused server');
    const failed = events.find((e) => e.type === 'connect_failed') as Extract<ClientStatusEvent, { type: 'connect_failed' }>;
    expect(failed.error.message).toMatch(/elsewhere\.example|altnames|Hostname/i);
    expect(server.registry.size).toBe(0);
  });
});
