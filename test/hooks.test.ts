/**
 * Connection hooks over real pipes: the server's connection_added /
 * connection_removed / idle and the client's connect_success / connect_fail
 * fire with the documented arguments (across a server restart on the same
 * port); a hook that throws, sync or async, is logged and the pipe keeps
 * serving; and the real executables load hooks classes from the environment.
 */
import { RestPipeClient, ClientConnectionStateEvents, loadClientConfig } from '@restpipe/client';
import { RestPipeServer, ServerConnectionStateEvents, loadServerConfig } from '@restpipe/server';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { testPki } from './helpers/identities.js';
import { TEST_ENV, closeAll, httpClient, onClose, startClient, startServer, waitFor } from './helpers/pipe.js';
import { CLIENT_CLI, SERVER_CLI, installedIdentity, runToExit, spawnNode } from './helpers/node-process.js';

afterEach(closeAll);

type Call = { hook: string; args: unknown[]; at: number };

class RecordingServerHooks extends ServerConnectionStateEvents {
  readonly calls: Call[] = [];
  override connection_added(clientName: string, count: number): void {
    this.calls.push({ hook: 'connection_added', args: [clientName, count], at: Date.now() });
  }
  override connection_removed(clientName: string, count: number): void {
    this.calls.push({ hook: 'connection_removed', args: [clientName, count], at: Date.now() });
  }
  override idle(since: Date, seconds: number): void {
    this.calls.push({ hook: 'idle', args: [since, seconds], at: Date.now() });
  }
  of(hook: string): Call[] {
    return this.calls.filter((c) => c.hook === hook);
  }
}

class RecordingClientHooks extends ClientConnectionStateEvents {
  readonly calls: Call[] = [];
  override connect_success(attempts: number, lastDisconnectedAt: Date | undefined): void {
    this.calls.push({ hook: 'connect_success', args: [attempts, lastDisconnectedAt], at: Date.now() });
  }
  override connect_fail(attempts: number, error: Error): void {
    this.calls.push({ hook: 'connect_fail', args: [attempts, error], at: Date.now() });
  }
  of(hook: string): Call[] {
    return this.calls.filter((c) => c.hook === hook);
  }
}

/** Reconnect fast: the first wait is under 50 ms, none over 200 ms. */
const FAST_RECONNECT = { RP_CLIENT_RECONNECT_INITIAL_S: '0.05', RP_CLIENT_RECONNECT_MAX_S: '0.2' };

/** A TCP port on loopback that nothing listens on: a server's, after it closed. */
async function closedPipePort(): Promise<number> {
  const server = await startServer();
  const { port } = server.pipeAddress;
  await server.close(0);
  return port;
}

function recordingLog(): { log: pino.Logger; records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, records };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('server hooks', () => {
  it('connection_added and connection_removed carry the client name and how many are connected now', async () => {
    const hooks = new RecordingServerHooks();
    const server = await startServer({ hooks });
    const alpha = await startClient(server, { name: 'alpha' });
    await waitFor(() => hooks.of('connection_added').length === 1, 5000, 'alpha added');
    const beta = await startClient(server, { name: 'beta' });
    await waitFor(() => hooks.of('connection_added').length === 2, 5000, 'beta added');
    await alpha.close(0);
    await waitFor(() => hooks.of('connection_removed').length === 1, 5000, 'alpha removed');
    await beta.close(0);
    await waitFor(() => hooks.of('connection_removed').length === 2, 5000, 'beta removed');
    expect(hooks.calls.filter((c) => c.hook !== 'idle').map((c) => [c.hook, ...c.args])).toEqual([
      ['connection_added', 'alpha', 1],
      ['connection_added', 'beta', 2],
      ['connection_removed', 'alpha', 1],
      ['connection_removed', 'beta', 0],
    ]);
  });

  it('idle fires every interval while no client is connected, and stops while one is', async () => {
    const hooks = new RecordingServerHooks();
    const started = Date.now();
    const server = await startServer({ hooks, env: { RP_SERVER_IDLE_HOOK_INTERVAL_S: '0.05' } });
    await waitFor(() => hooks.of('idle').length >= 3, 5000, 'three idle calls');
    const first = hooks.of('idle');
    for (const call of first) {
      const [since, seconds] = call.args as [Date, number];
      expect(since).toBeInstanceOf(Date);
      expect(since.getTime()).toBeGreaterThanOrEqual(started - 5);
      expect(since.getTime()).toBeLessThanOrEqual(call.at);
      expect(Number.isInteger(seconds)).toBe(true);
      expect(Math.abs(seconds - (call.at - since.getTime()) / 1000)).toBeLessThanOrEqual(1);
    }
    // The same idle stretch: the same start.
    expect(new Set(first.map((c) => (c.args[0] as Date).getTime())).size).toBe(1);

    const client = await startClient(server, { name: 'alpha' });
    await waitFor(() => hooks.of('connection_added').length === 1, 5000, 'connected');
    const whileConnected = hooks.of('idle').length;
    await sleep(400); // eight intervals
    expect(hooks.of('idle').length).toBe(whileConnected);

    await client.close(0);
    await waitFor(() => hooks.of('connection_removed').length === 1, 5000, 'disconnected');
    const removedAt = hooks.of('connection_removed')[0]?.at as number;
    await waitFor(() => hooks.of('idle').length >= whileConnected + 2, 5000, 'idle again');
    const again = hooks.of('idle').slice(whileConnected);
    const since = (again[0]!.args[0] as Date).getTime();
    // A new idle stretch, starting when the last client left.
    expect(since).toBeGreaterThan((first[0]!.args[0] as Date).getTime());
    expect(Math.abs(since - removedAt)).toBeLessThanOrEqual(50);
  });
});

describe('client hooks', () => {
  it('connect_success and connect_fail across a server restart on the same port', async () => {
    const hooks = new RecordingClientHooks();
    const first = await startServer();
    const port = first.pipeAddress.port;
    await startClient(first, { hooks, env: FAST_RECONNECT });
    await waitFor(() => hooks.of('connect_success').length === 1, 5000, 'connected');
    expect(hooks.calls.map((c) => [c.hook, ...c.args])).toEqual([['connect_success', 1, undefined]]);

    const down = Date.now();
    await first.close(0);
    await waitFor(() => hooks.of('connect_fail').length >= 3, 10_000, 'three failed attempts');
    const fails = hooks.of('connect_fail');
    fails.forEach((call, i) => {
      const [attempts, error] = call.args as [number, Error];
      expect(attempts).toBe(i + 1);
      expect(error).toBeInstanceOf(Error);
      expect(error.message).toMatch(/ECONNREFUSED|closed the connection/);
    });

    const second = await startServer({ env: { RP_SERVER_BIND_PORT: String(port) } });
    expect(second.pipeAddress.port).toBe(port);
    await waitFor(() => hooks.of('connect_success').length === 2, 10_000, 'reconnected');
    const [attempts, lastDisconnectedAt] = hooks.of('connect_success')[1]!.args as [number, Date];
    // Every failed try since the break, plus the one that worked.
    expect(attempts).toBe(hooks.of('connect_fail').length + 1);
    expect(lastDisconnectedAt).toBeInstanceOf(Date);
    expect(lastDisconnectedAt.getTime()).toBeGreaterThanOrEqual(down);
    expect(lastDisconnectedAt.getTime()).toBeLessThanOrEqual(hooks.of('connect_fail')[0]?.at as number);
  });

  it('connect_fail counts tries before the first connection, and connect_success then has no last disconnect', async () => {
    const port = await closedPipePort();
    const hooks = new RecordingClientHooks();
    await startClient({ port }, { hooks, env: FAST_RECONNECT, waitConnected: false });
    await waitFor(() => hooks.of('connect_fail').length >= 2, 10_000, 'failed attempts');
    await startServer({ env: { RP_SERVER_BIND_PORT: String(port) } });
    await waitFor(() => hooks.of('connect_success').length === 1, 10_000, 'connected');
    const fails = hooks.of('connect_fail').map((c) => c.args[0]);
    expect(fails).toEqual(fails.map((_, i) => i + 1));
    expect(hooks.of('connect_success')[0]?.args).toEqual([fails.length + 1, undefined]);
  });
});

describe('a hook that throws', () => {
  class ThrowingServerHooks extends ServerConnectionStateEvents {
    override connection_added(): void {
      throw new Error('connection_added exploded');
    }
    override async connection_removed(): Promise<void> {
      throw new Error('connection_removed exploded');
    }
    override idle(): void {
      throw new Error('idle exploded');
    }
  }
  class ThrowingClientHooks extends ClientConnectionStateEvents {
    override async connect_success(): Promise<void> {
      throw new Error('connect_success exploded');
    }
    override connect_fail(): void {
      throw new Error('connect_fail exploded');
    }
  }

  it('is logged, sync or async, and the pipe keeps connecting and serving', async () => {
    const pki = await testPki();
    const port = await closedPipePort();
    const { log, records } = recordingLog();
    const logged = (hook: string) => records.filter((r) => r['msg'] === 'a connection hook threw' && r['hook'] === hook);

    // The client starts first: its connect_fail throws on every try, yet it keeps trying.
    const clientConfig = await loadClientConfig({ ...TEST_ENV, ...FAST_RECONNECT, RP_CLIENT_TARGET_PORT: String(port) });
    const client = new RestPipeClient({ config: clientConfig, identity: await pki.client('alpha'), hooks: new ThrowingClientHooks(), log });
    onClose(() => client.close(0));
    await client.start();
    await waitFor(() => logged('connect_fail').length >= 2, 10_000, 'connect_fail logged twice');

    const serverConfig = await loadServerConfig({ ...TEST_ENV, RP_SERVER_BIND_PORT: String(port), RP_SERVER_IDLE_HOOK_INTERVAL_S: '0.05' });
    const server = new RestPipeServer({ config: serverConfig, identity: pki.server, hooks: new ThrowingServerHooks(), log });
    onClose(() => server.close(0));
    await server.start();
    await client.waitForPipe(10_000);
    await waitFor(() => logged('connect_success').length === 1 && logged('connection_added').length === 1, 5000, 'connect hooks logged');

    const http = httpClient();
    expect((await http('GET', `${client.gatewayAddress}/server/time`)).status).toBe(200);
    expect((await http('GET', `${server.gatewayAddress}/client/alpha/time`)).status).toBe(200);

    await client.close(0);
    await waitFor(() => logged('connection_removed').length === 1, 5000, 'connection_removed logged');
    await waitFor(() => logged('idle').length >= 2, 5000, 'idle logged');
    expect(logged('connect_fail')[0]?.['err']).toMatchObject({ message: 'connect_fail exploded', type: 'Error' });
    expect(logged('connect_success')[0]?.['err']).toMatchObject({ message: 'connect_success exploded' });
    expect(logged('connection_added')[0]?.['err']).toMatchObject({ message: 'connection_added exploded' });
    expect(logged('connection_removed')[0]?.['err']).toMatchObject({ message: 'connection_removed exploded' });
    expect(logged('idle')[0]?.['level']).toBe(50); // error

    // Still serving: a new client connects and is answered.
    const beta = await startClient(server, { name: 'beta' });
    expect((await http('GET', `${beta.gatewayAddress}/server/time`)).status).toBe(200);
  });
});

describe('hooks classes from the environment, in the real executables', () => {
  const HOOKS = './test/fixtures/hooks.mjs';

  it('restpipe-server calls RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS', async () => {
    const pki = await testPki();
    const node = spawnNode(SERVER_CLI, {
      RP_SERVER_CERT_PATH: await installedIdentity('server', pki.server),
      RP_SERVER_BIND_INTERFACE: '127.0.0.1',
      RP_SERVER_BIND_PORT: '0',
      RP_SERVER_GATEWAY_PORT: '0',
      RP_STATSD_HOST: '',
      RP_LOG_LEVEL: 'info',
      RP_SERVER_IDLE_HOOK_INTERVAL_S: '0.1',
      RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS: `${HOOKS}#PrintingServerHooks`,
    });
    const { port } = await node.waitForLog('pipe listening for clients');
    await node.waitForStderr(/^HOOK idle Date \d+$/);
    const client = await startClient({ port: port as number }, { name: 'alpha' });
    await node.waitForStderr(/^HOOK connection_added alpha 1$/);
    await client.close(0);
    await node.waitForStderr(/^HOOK connection_removed alpha 0$/);
  });

  it('restpipe-client calls RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS', async () => {
    const pki = await testPki();
    const port = await closedPipePort();
    const node = spawnNode(CLIENT_CLI, {
      RP_CLIENT_CERT_PATH: await installedIdentity('client', await pki.client('alpha')),
      RP_CLIENT_TARGET_HOSTNAME: 'localhost',
      RP_CLIENT_TARGET_PORT: String(port),
      RP_CLIENT_GATEWAY_PORT: '0',
      RP_STATSD_HOST: '',
      RP_LOG_LEVEL: 'info',
      ...FAST_RECONNECT,
      RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS: `${HOOKS}#PrintingClientHooks`,
    });
    await node.waitForStderr(/^HOOK connect_fail 2 Error$/);
    await startServer({ env: { RP_SERVER_BIND_PORT: String(port) } });
    const line = await node.waitForStderr(/^HOOK connect_success \d+ undefined$/);
    const fails = node
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('HOOK connect_fail')).length;
    expect(line).toBe(`HOOK connect_success ${fails + 1} undefined`);
  });

  it('exit 2 for a class that is not a hooks class, naming the variable', async () => {
    const common = { RP_SERVER_BIND_PORT: '0', RP_SERVER_GATEWAY_PORT: '0', RP_CLIENT_GATEWAY_PORT: '0', RP_STATSD_HOST: '', RP_LOG_LEVEL: 'info' };
    const server = await runToExit(SERVER_CLI, { ...common, RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS: `${HOOKS}#NotHooks` });
    expect(server.code).toBe(2);
    expect(server.stderr).toBe(
      'restpipe-server: RP_CONFIG: RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS="./test/fixtures/hooks.mjs#NotHooks": NotHooks must extend ServerConnectionStateEvents\n',
    );
    // The client's hooks given to the server, and the other way round.
    const wrongSide = await runToExit(SERVER_CLI, { ...common, RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS: `${HOOKS}#PrintingClientHooks` });
    expect(wrongSide.code).toBe(2);
    expect(wrongSide.stderr).toMatch(/PrintingClientHooks must extend ServerConnectionStateEvents\n$/);
    const client = await runToExit(CLIENT_CLI, { ...common, RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS: `${HOOKS}#PrintingServerHooks` });
    expect(client.code).toBe(2);
    expect(client.stderr).toBe(
      'restpipe-client: RP_CONFIG: RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS="./test/fixtures/hooks.mjs#PrintingServerHooks": PrintingServerHooks must extend ClientConnectionStateEvents\n',
    );
    expect(client.stdout).not.toMatch(/listening/);
  });
});
