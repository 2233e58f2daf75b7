/**
 * Never wedge: reconnects, dead peers (half-open links for real with
 * iptables), deadlines and cancellation, pipe drops with requests in
 * flight, slow handlers, duplicate names, SIGTERM drain, and SIGKILL of
 * either node under load.
 */
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClientConnectionStateEvents, ClientEventHandler, type ClientStatusEvent } from '@restpipe/client';
import { ServerEventHandler } from '@restpipe/server';
import type { EventContext, PostData } from '@restpipe/shared';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { CLIENT_CLI, SERVER_CLI, installedIdentity, spawnNode } from './helpers/node-process.js';
import { testPki } from './helpers/identities.js';
import { TEST_ENV, closeAll, freePort, httpClient, onClose, startClient, startPair, startServer, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

class SlowServerHandler extends ServerEventHandler {
  started: EventContext[] = [];
  async get_sleep(ctx: EventContext, _post: PostData, ms: string) {
    this.started.push(ctx);
    await sleep(Number(ms), undefined, { signal: ctx.signal });
    return { slept: Number(ms) };
  }
  get_time() {
    return { time_from_server: Date.now() / 1000 };
  }
}

class Labelled extends ClientEventHandler {
  constructor(readonly label: string) {
    super();
  }
  get_whoami() {
    return { label: this.label };
  }
}

const FAST_RECONNECT = { RP_CLIENT_RECONNECT_INITIAL_S: '0.05', RP_CLIENT_RECONNECT_MAX_S: '0.3', RP_CLIENT_RECONNECT_STABLE_S: '0.5' };

describe('reconnect', () => {
  it('keeps trying while the server is down and connects as soon as it is back', async () => {
    const port = await freePort();
    const env = { RP_SERVER_BIND_PORT: String(port) };
    const first = await startServer({ env });
    const fails: number[] = [];
    const successes: Array<[number, Date | undefined]> = [];
    class Hooks extends ClientConnectionStateEvents {
      override connect_fail(attempts: number) {
        fails.push(attempts);
      }
      override connect_success(attempts: number, last: Date | undefined) {
        successes.push([attempts, last]);
      }
    }
    const client = await startClient(first, { env: FAST_RECONNECT, hooks: new Hooks() });
    await first.close(0);
    await waitFor(() => fails.length >= 5, 10_000, 'five failed attempts');
    expect(fails.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
    const second = await startServer({ env });
    await client.waitForPipe(5_000);
    expect(successes).toHaveLength(2);
    expect(successes[1]?.[0]).toBeGreaterThanOrEqual(5);
    expect(successes[1]?.[1]).toBeInstanceOf(Date);
    const res = await httpClient()('GET', `${client.gatewayAddress}/server/time`);
    expect(res.status).toBe(200);
    expect(second.registry.size).toBe(1);
  });

  it('holds a request while the pipe comes back, within RP_CLIENT_CONNECT_WAIT_S', async () => {
    const port = await freePort();
    const env = { RP_SERVER_BIND_PORT: String(port) };
    const first = await startServer({ env });
    const client = await startClient(first, { env: { ...FAST_RECONNECT, RP_CLIENT_CONNECT_WAIT_S: '10' } });
    await first.close(0);
    await waitFor(() => client.state !== 'connected', 5000, 'the client to notice');
    const pending = httpClient()('GET', `${client.gatewayAddress}/server/time`);
    await sleep(300);
    await startServer({ env });
    const res = await pending;
    expect(res.status).toBe(200);
  });
});

describe('deadlines and cancellation', () => {
  it('fails every request in flight at once with 502 when the pipe drops, and keeps no pending state', async () => {
    const handler = new SlowServerHandler();
    const { client, server } = await startPair({ server: { handler }, client: { env: { RP_CLIENT_RECONNECT_INITIAL_S: '5' } } });
    const http = httpClient(32);
    const calls = Array.from({ length: 20 }, () => http('GET', `${client.gatewayAddress}/server/sleep//20000`));
    await waitFor(() => handler.started.length === 20, 5000, 'all requests to reach the handler');
    const exchange = client.exchange;
    const t0 = Date.now();
    server.registry.get('agent-1')?.close();
    const answers = await Promise.all(calls);
    expect(Date.now() - t0).toBeLessThan(5000);
    for (const a of answers) {
      expect(a.status).toBe(502);
      expect(a.code).toBe(245);
      expect(a.json<{ error: { code: string; message: string } }>().error.code).toBe('RP_PIPE_BROKEN');
    }
    expect(exchange?.inFlight).toEqual({ outgoing: 0, incoming: 0, streams: 0 });
    await waitFor(() => handler.started.every((c) => c.signal.aborted), 2000, 'every handler to be told to stop');
  });

  it('cancels the request on the other side when the HTTP caller goes away', async () => {
    const handler = new SlowServerHandler();
    const { client, server } = await startPair({ server: { handler } });
    const agent = new Agent();
    onClose(() => agent.close());
    const ac = new AbortController();
    const call = request(`${client.gatewayAddress}/server/sleep//20000`, { dispatcher: agent, signal: ac.signal });
    await waitFor(() => handler.started.length === 1, 5000, 'the request to reach the handler');
    ac.abort();
    await expect(call).rejects.toThrow();
    await waitFor(() => handler.started[0]?.signal.aborted === true, 5000, 'the handler to be told to stop');
    await waitFor(() => server.registry.get('agent-1')?.inFlight.incoming === 0 && client.exchange?.inFlight.outgoing === 0, 5000, 'no pending state');
  });

  it('a slow handler delays neither other requests nor heartbeats, and the link stays up', async () => {
    const handler = new SlowServerHandler();
    const hb = { RP_CLIENT_HEARTBEAT_INTERVAL_S: '0.1', RP_CLIENT_HEARTBEAT_TIMEOUT_S: '0.4' };
    const { client, server } = await startPair({ server: { handler, env: hb }, client: { env: hb } });
    const exchange = client.exchange;
    const http = httpClient(8);
    const slow = http('GET', `${client.gatewayAddress}/server/sleep//2000`);
    for (let i = 0; i < 10; i++) {
      const res = await http('GET', `${client.gatewayAddress}/server/time`);
      expect(res.status).toBe(200);
      await sleep(100);
    }
    expect((await slow).status).toBe(200);
    // The same connection all along: no heartbeat timeout while the handler slept.
    expect(client.exchange).toBe(exchange);
    // Heartbeats kept flowing: the server (which pings first) measured round trips.
    expect(server.registry.get('agent-1')?.rttMs).toBeGreaterThanOrEqual(0);
  });
});

const canDropPackets = (() => {
  try {
    return process.getuid?.() === 0 && execFileSync('iptables', ['-L', 'INPUT', '-n'], { stdio: 'ignore' }) !== undefined;
  } catch {
    return false;
  }
})();

describe('dead peers', () => {
  it.skipIf(!canDropPackets && !process.env.CI)('both sides detect a half-open link (packets silently dropped) within the heartbeat timeout', async () => {
    const hb = {
      RP_CLIENT_HEARTBEAT_INTERVAL_S: '0.2',
      RP_CLIENT_HEARTBEAT_TIMEOUT_S: '1',
      RP_CLIENT_RECONNECT_INITIAL_S: '0.1',
      RP_CLIENT_RECONNECT_MAX_S: '0.3',
      RP_CLIENT_CONNECT_TIMEOUT_S: '1',
    };
    const { client, server } = await startPair({ server: { env: hb }, client: { env: hb } });
    const port = String(server.pipeAddress.port);
    const rules = [
      ['INPUT', '-p', 'tcp', '-i', 'lo', '--dport', port, '-j', 'DROP'],
      ['INPUT', '-p', 'tcp', '-i', 'lo', '--sport', port, '-j', 'DROP'],
    ];
    const events: ClientStatusEvent[] = [];
    client.on('status', (e) => events.push(e));
    for (const rule of rules) execFileSync('iptables', ['-I', ...rule]);
    let removed = false;
    const unblock = () => {
      if (removed) return;
      removed = true;
      for (const rule of rules) execFileSync('iptables', ['-D', ...rule]);
    };
    onClose(unblock);
    const t0 = Date.now();
    await waitFor(() => server.registry.size === 0, 5000, 'the server to drop the silent client');
    await waitFor(() => events.some((e) => e.type === 'disconnected'), 5000, 'the client to drop the silent server');
    // Detected at the heartbeat timeout (exactly, on fake timers: shared/test/heartbeat.test.ts), not at TCP's retransmission timeout (minutes).
    expect(Date.now() - t0).toBeLessThan(3000);
    unblock();
    await client.waitForPipe(10_000);
    expect((await httpClient()('GET', `${client.gatewayAddress}/server/time`)).status).toBe(200);
  });
});

describe('unanswered connects', () => {
  it.skipIf(!canDropPackets && !process.env.CI)(
    'an attempt to a host that drops the SYN ends at the TCP connect timeout, not the longer handshake one',
    async () => {
      const port = await freePort();
      const rule = ['INPUT', '-p', 'tcp', '-i', 'lo', '--dport', String(port), '--syn', '-j', 'DROP'];
      execFileSync('iptables', ['-I', ...rule]);
      onClose(() => execFileSync('iptables', ['-D', ...rule]));
      const failures: string[] = [];
      const client = await startClient(
        { port },
        { waitConnected: false, env: { RP_CLIENT_CONNECT_TIMEOUT_S: '0.3', RP_CLIENT_HANDSHAKE_TIMEOUT_S: '60', RP_CLIENT_RECONNECT_INITIAL_S: '0.01' } },
      );
      client.on('status', (e: ClientStatusEvent) => {
        if (e.type === 'connect_failed') failures.push(e.error.message);
      });
      await waitFor(() => failures.length >= 2, 20_000, 'two attempts that time out');
      await client.close(0);
      expect(failures.slice(0, 2)).toEqual([0, 1].map(() => `connecting to localhost:${port} took over 300 ms`));
    },
  );
});

describe('duplicate client names', () => {
  it('the newest connection wins: the older one is sent away and closed', async () => {
    const server = await startServer();
    const older = await startClient(server, { name: 'twin', handler: new Labelled('older'), env: { RP_CLIENT_RECONNECT_INITIAL_S: '30' } });
    const http = httpClient();
    expect((await http('GET', `${server.gatewayAddress}/client/twin/whoami`)).json()).toEqual({ label: 'older' });
    const olderEvents: ClientStatusEvent[] = [];
    older.on('status', (e) => olderEvents.push(e));
    await startClient(server, { name: 'twin', handler: new Labelled('newer') });
    await waitFor(() => olderEvents.some((e) => e.type === 'disconnected'), 5000, 'the older connection to close');
    expect(server.registry.size).toBe(1);
    expect((await http('GET', `${server.gatewayAddress}/client/twin/whoami`)).json()).toEqual({ label: 'newer' });
  });
});

describe('the real executables', () => {
  async function serverProcess(port: number, extra: Record<string, string> = {}) {
    const pki = await testPki();
    const dir = await installedIdentity('server', pki.server);
    const gatewayPort = await freePort();
    const proc = spawnNode(SERVER_CLI, {
      ...TEST_ENV,
      RP_LOG_LEVEL: 'info',
      RP_SERVER_CERT_PATH: dir,
      RP_SERVER_BIND_PORT: String(port),
      RP_SERVER_GATEWAY_PORT: String(gatewayPort),
      RP_EVENT_HANDLER_FQ_CLASS: './test/fixtures/slow-handlers.mjs#SlowServerHandlers',
      ...extra,
    });
    await proc.waitForLog('gateway listening');
    return { proc, gateway: `http://127.0.0.1:${gatewayPort}` };
  }

  it('SIGTERM drains: requests in flight finish, the client is sent away, exit code 0', async () => {
    const port = await freePort();
    const { proc, gateway } = await serverProcess(port, { RP_DRAIN_GRACE_S: '5' });
    const client = await startClient({ port }, { env: { RP_CLIENT_RECONNECT_INITIAL_S: '30' } });
    const http = httpClient();
    const inFlight = http('GET', `${client.gatewayAddress}/server/sleep//2000`);
    // SIGTERM once the server is handling the request (not after a guessed delay).
    let handling = false;
    while (!handling) {
      const clients = (await http('GET', `${gateway}/_restpipe/clients`)).json<Array<{ inFlight: { incoming: number } }>>();
      handling = clients[0]?.inFlight.incoming === 1;
      if (!handling) await sleep(10);
    }
    proc.child.kill('SIGTERM');
    const answer = await inFlight;
    expect(answer.status).toBe(200);
    expect(answer.json()).toEqual({ slept: 2000 });
    expect(await proc.exited).toEqual({ code: 0, signal: null });
  });

  it('SIGKILL of the server under load: every request gets a reply or a clear error, and traffic resumes without restarting the client', async () => {
    const port = await freePort();
    let server = await serverProcess(port);
    const client = await startClient({ port }, { env: { ...FAST_RECONNECT, RP_CLIENT_CONNECT_WAIT_S: '1', RP_REQUEST_TIMEOUT_S: '3' } });
    const http = httpClient(16);
    const statuses = new Map<number, number>();
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const res = await http('GET', `${client.gatewayAddress}/server/sleep//5`);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        expect([200, 502, 503, 504]).toContain(res.status);
        expect(res.code).toBeTypeOf('number');
        if (res.status !== 200) expect(res.json<{ error: { code: string } }>().error.code).toMatch(/^RP_/);
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    await sleep(500);
    server.proc.child.kill('SIGKILL');
    await server.proc.exited;
    await sleep(700);
    server = await serverProcess(port);
    await client.waitForPipe(10_000);
    const okBefore = statuses.get(200) ?? 0;
    await waitFor(() => (statuses.get(200) ?? 0) > okBefore + 50, 10_000, 'traffic to resume');
    stop = true;
    await Promise.all(workers);
    expect((statuses.get(502) ?? 0) + (statuses.get(503) ?? 0)).toBeGreaterThan(0);
  });

  it('SIGKILL of the client under load from the server side: clear errors, then traffic resumes when it is back', async () => {
    const server = await startServer();
    const pki = await testPki();
    const dir = await installedIdentity('client', await pki.client('branch-9'));
    const startAgent = () =>
      spawnNode(CLIENT_CLI, {
        ...TEST_ENV,
        RP_CLIENT_CERT_PATH: dir,
        RP_CLIENT_TARGET_PORT: String(server.pipeAddress.port),
        RP_EVENT_HANDLER_FQ_CLASS: './test/fixtures/slow-handlers.mjs#SlowClientHandlers',
      });
    let agent = startAgent();
    await waitFor(() => server.registry.get('branch-9')?.ready === true, 10_000, 'the agent to connect');
    const http = httpClient(16);
    const statuses = new Map<number, number>();
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const res = await http('GET', `${server.gatewayAddress}/client/branch-9/sleep//5`);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        expect([200, 404, 502]).toContain(res.status);
        if (res.status === 404) expect(res.code).toBe(242);
        if (res.status !== 200) await sleep(10);
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    await sleep(400);
    agent.child.kill('SIGKILL');
    await agent.exited;
    await waitFor(() => (statuses.get(404) ?? 0) > 0, 5000, 'unknown-client answers while it is down');
    agent = startAgent();
    await waitFor(() => server.registry.get('branch-9')?.ready === true, 10_000, 'the agent to come back');
    const okBefore = statuses.get(200) ?? 0;
    await waitFor(() => (statuses.get(200) ?? 0) > okBefore + 50, 10_000, 'traffic to resume');
    stop = true;
    await Promise.all(workers);
  });
});
