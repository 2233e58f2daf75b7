/**
 * The dashboard (issue 17): the recorder behind it, its routes over real
 * HTTP, and the pages in a real browser (Debian's chromium driven by
 * playwright-core) against a real server with real clients over TLS, one of
 * them a real `restpipe-client` process that is frozen, killed and restarted.
 *
 * The browser part needs /usr/bin/chromium (.ci/run installs it). Without it
 * that part is skipped with a message, except when CI is set: then it fails.
 *
 * `RP_UPDATE_SCREENSHOT=1` writes the screenshot to docs/dashboard.png;
 * otherwise it goes to a temp folder.
 */
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ClientExampleHandler, type EventContext } from '@restpipe/client';
import { ServerEventHandler, ServerExampleHandler } from '@restpipe/server';
import Fastify from 'fastify';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionHistory, registerClientDashboard, type ClientDashboardData } from '../client/src/dashboard.js';
import { ConnectionLog } from '../server/src/dashboard/connection-log.js';
import { RecentStats, type GatewayAnswer } from '../server/src/dashboard/recent-stats.js';
import { registerDashboardRoutes, type DashboardData } from '../server/src/dashboard/routes.js';
import { testPki } from './helpers/identities.js';
import { CLIENT_CLI, REPO_ROOT, installedIdentity, spawnNode, type NodeProcess } from './helpers/node-process.js';
import { TEST_ENV, closeAll, freePort, httpClient, onClose, quietLog, startClient, startServer, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

class FleetHandler extends ClientExampleHandler {
  get_boom(): never {
    throw new Error('boom on purpose');
  }
}

/** Resolves `called` when `slow` is called; answers only when the caller gives up (the pipe drains). */
function slowCall() {
  let called!: () => void;
  const whenCalled = new Promise<void>((resolve) => {
    called = resolve;
  });
  const slow = async (ctx: EventContext) => {
    called();
    await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
    return { late: true };
  };
  return { whenCalled, slow };
}

/** A plain TCP connection to a gateway, destroyed at teardown; `text` is what came back. */
async function rawConnection(gateway: string): Promise<{ socket: Socket; text: () => string; closed: Promise<unknown> }> {
  const url = new URL(gateway);
  const socket = connect(Number(url.port), url.hostname);
  onClose(() => socket.destroy());
  let text = '';
  socket.on('data', (chunk: Buffer) => {
    text += chunk.toString('latin1');
  });
  const closed = once(socket, 'close');
  await once(socket, 'connect');
  return { socket, text: () => text, closed };
}

/** `closing`, or a failure naming `what` if it is not done in `ms` (far below Node's 60 s headers timeout). */
function within<T>(closing: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} still waits after ${ms} ms`)), ms);
  });
  return Promise.race([closing, late]).finally(() => clearTimeout(timer));
}

/**
 * The page's globals, for the callbacks that run in the browser: the test
 * project is compiled without the DOM library.
 */
// biome-ignore lint/suspicious/noExplicitAny: browser objects, checked by the browser
declare const document: { querySelector(selector: string): any; querySelectorAll(selector: string): Iterable<any>; activeElement: any };

const answer = (over: Partial<GatewayAnswer> = {}): GatewayAnswer => ({
  client: 'branch-1',
  noun: 'time',
  verb: 'GET',
  code: 0,
  status: 200,
  ms: 1,
  ...over,
});

// ---------------------------------------------------------------------------
// The recorder.

describe('RecentStats', () => {
  it('counts answers in 10 s buckets by event code, and forgets what is older than the window', () => {
    let now = 1_000_000_000_000; // a bucket boundary
    const stats = new RecentStats({ now: () => now });
    stats.record(answer());
    stats.record(answer({ code: 255, status: 404 }));
    now += 10_000;
    stats.record(answer());
    stats.record(answer({ code: 7, status: 200 })); // the application's own code: not an error

    let series = stats.series();
    expect(series).toHaveLength(90);
    expect(series.at(-1)?.t).toBe(now);
    expect(series.at(-2)).toMatchObject({ requests: 2, errors: 1, codes: { '0': 1, '255': 1 }, errorCodes: { '255': 1 } });
    expect(series.at(-1)).toMatchObject({ requests: 2, errors: 0, codes: { '0': 1, '7': 1 }, errorCodes: {} });
    expect(series.slice(0, -2).every((b) => b.requests === 0 && b.p50Ms === null)).toBe(true);
    expect(stats.totals()).toMatchObject({ requests: 4, errors: 1, codes: { '0': 2, '7': 1, '255': 1 }, errorCodes: { '255': 1 } });

    now += 89 * 10_000; // the first bucket is now out of the window
    series = stats.series();
    expect(series.at(0)).toMatchObject({ requests: 2, codes: { '0': 1, '7': 1 } });
    expect(stats.totals()).toMatchObject({ requests: 2, errors: 0 });
    now += 10_000;
    expect(stats.totals().requests).toBe(0);
    expect(stats.series().every((b) => b.requests === 0)).toBe(true);
    // A bucket slot used again starts from zero.
    stats.record(answer());
    expect(stats.series().at(-1)).toMatchObject({ requests: 1, codes: { '0': 1 } });
  });

  it('reads p50 and p99 from a bounded histogram, at most 9 % above the true value', () => {
    let now = 0;
    const stats = new RecentStats({ now: () => now });
    for (let ms = 1; ms <= 100; ms++) stats.record(answer({ ms }));
    const bucket = stats.series().at(-1);
    expect(bucket?.p50Ms).toBeGreaterThanOrEqual(50);
    expect(bucket?.p50Ms).toBeLessThanOrEqual(50 * 1.091);
    expect(bucket?.p99Ms).toBeGreaterThanOrEqual(99);
    expect(bucket?.p99Ms).toBeLessThanOrEqual(99 * 1.091);
    now += 10_000;
    for (let i = 0; i < 100; i++) stats.record(answer({ ms: 1000 }));
    // Over both buckets: half near 1..100 ms, half at 1 s.
    const totals = stats.totals();
    expect(totals.p50Ms).toBeLessThanOrEqual(100 * 1.091);
    expect(totals.p99Ms).toBeGreaterThanOrEqual(1000);
    expect(totals.p99Ms).toBeLessThanOrEqual(1000 * 1.091);
    // Extremes land in the first and last histogram buckets.
    stats.record(answer({ ms: 0 }));
    stats.record(answer({ ms: 1e12 }));
    expect(stats.totals().requests).toBe(202);
  });

  it('keeps per-client counters for a bounded number of clients, and the last few errors of each', () => {
    let now = 0;
    const stats = new RecentStats({ now: () => now, maxClients: 2, recentErrorsPerClient: 3 });
    stats.record(answer({ client: 'a' }));
    stats.record(answer({ client: 'b' }));
    stats.record(answer({ client: 'a' })); // a is now the most recent
    stats.record(answer({ client: 'c' })); // b goes
    expect(Object.keys(stats.clientCounters())).toEqual(['a', 'c']);
    for (let i = 0; i < 5; i++) {
      now = i * 1000;
      stats.record(answer({ client: 'a', noun: `n${i}`, code: 251, status: 500 }));
    }
    stats.record(answer({ client: 'a', code: 7, status: 200 }));
    stats.record(answer({ client: undefined, noun: undefined })); // a fan-out: no client
    const a = stats.clientCounters()['a'];
    expect(a).toMatchObject({ requests: 8, errors: 5, codes: { '0': 2, '7': 1, '251': 5 } });
    expect(a?.recentErrors.map((e) => e.noun)).toEqual(['n4', 'n3', 'n2']);
    expect(a?.recentErrors[0]).toEqual({ time: new Date(4000).toISOString(), verb: 'GET', noun: 'n4', code: 251, status: 500 });
    expect(stats.totals().requests).toBe(11);
  });
});

describe('ConnectionLog', () => {
  const event = (type: 'connected' | 'disconnected', name: string, time: string) => ({ type, name, address: '127.0.0.1:1', time, clients: 1 });

  it('lists clients that left and have not come back, newest first; a replaced connection is not gone', () => {
    const log = new ConnectionLog(3, 2);
    log.add(event('disconnected', 'a', 't1'), false);
    log.add(event('disconnected', 'b', 't2'), true); // replaced by a newer connection: still there
    log.add(event('disconnected', 'c', 't3'), false);
    expect(log.disconnected(() => false).map((c) => c.name)).toEqual(['c', 'a']);
    log.add(event('disconnected', 'd', 't4'), false); // over the bound: the oldest (a) goes
    expect(log.disconnected(() => false).map((c) => [c.name, c.time])).toEqual([
      ['d', 't4'],
      ['c', 't3'],
    ]);
    log.add(event('connected', 'c', 't5'), false);
    expect(log.disconnected(() => false).map((c) => c.name)).toEqual(['d']);
    expect(log.disconnected((name) => name === 'd')).toEqual([]);
    expect(log.recentEvents().map((e) => e.time)).toEqual(['t5', 't4', 't3']);
  });
});

describe('ConnectionHistory (client)', () => {
  it('folds consecutive failed attempts into one line', () => {
    let now = 0;
    const history = new ConnectionHistory(3, () => now);
    history.add({ type: 'connect_failed', attempts: 1, error: new Error('refused') });
    now = 1000;
    history.add({ type: 'connect_failed', attempts: 2, error: new Error('still refused') });
    history.add({ type: 'state', from: 'waiting', to: 'connecting' });
    now = 2000;
    history.add({ type: 'connected', attempts: 3, exchange: undefined as never });
    history.add({ type: 'disconnected', error: new Error('the pipe broke') });
    expect(history.list()).toEqual([
      { type: 'disconnected', time: new Date(2000).toISOString(), reason: 'the pipe broke' },
      { type: 'connected', time: new Date(2000).toISOString(), attempts: 3 },
      { type: 'connect_failed', time: new Date(1000).toISOString(), since: new Date(0).toISOString(), failures: 2, error: 'still refused' },
    ]);
  });
});

// ---------------------------------------------------------------------------
// The routes, over real HTTP.

describe('dashboard routes', () => {
  it('serve the page with a strict content security policy, and each file it loads', async () => {
    const server = await startServer();
    const http = httpClient();
    const page = await http('GET', `${server.gatewayAddress}/_restpipe/ui`);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    const loads = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string).filter((u) => !u.startsWith('data:'));
    expect(loads.sort()).toEqual(['ui/dashboard.css', 'ui/dashboard.js']);
    for (const [file, type] of [
      ['dashboard.css', 'text/css; charset=utf-8'],
      ['dashboard.js', 'text/javascript; charset=utf-8'],
      ['charts.js', 'text/javascript; charset=utf-8'],
    ]) {
      const res = await http('GET', `${server.gatewayAddress}/_restpipe/ui/${file}`);
      expect(res.status, file).toBe(200);
      expect(res.headers['content-type'], file).toBe(type);
      // Nothing from elsewhere (no CDN, no remote font); the SVG namespace is a name, not a load.
      expect(res.text.replaceAll('http://www.w3.org/2000/svg', '')).not.toMatch(/https?:\/\//);
    }
    const missing = await http('GET', `${server.gatewayAddress}/_restpipe/ui/secret.txt`);
    expect(missing.status).toBe(404);
    expect(missing.code).toBe(255);
    const slash = await http('GET', `${server.gatewayAddress}/_restpipe/ui/`);
    expect(slash.status).toBe(308);
    expect(slash.headers.location).toBe('../ui');
  });

  it('/_restpipe/ui/data: answers by code per client, recent errors, fan-outs, connection events and who left', async () => {
    const server = await startServer({ handler: new ServerExampleHandler() });
    await startClient(server, { name: 'branch-1', handler: new FleetHandler() });
    const leaver = await startClient(server, { name: 'branch-2' });
    await waitFor(() => server.registry.size === 2);
    const http = httpClient();
    const gw = server.gatewayAddress as string;
    for (let i = 0; i < 3; i++) expect((await http('GET', `${gw}/client/branch-1/time`)).code).toBe(0);
    expect((await http('GET', `${gw}/client/branch-1/boom//x?y=1`)).code).toBe(251);
    expect((await http('GET', `${gw}/client/branch-1/nothing`)).code).toBe(255);
    expect((await http('GET', `${gw}/client/nobody/time`)).code).toBe(242);
    expect((await http('GET', `${gw}/clients/*/time`)).code).toBe(0);
    expect((await http('GET', `${gw}/_restpipe/status`)).status).toBe(200); // not a gateway answer: not counted
    await leaver.close(0);
    await waitFor(() => server.registry.size === 1);

    const data = (await http('GET', `${gw}/_restpipe/ui/data`)).json<DashboardData>();
    expect(data.bucketS).toBe(10);
    expect(data.windowS).toBe(900);
    expect(data.codeNames['255']).toBe('NO_HANDLER');
    expect(data.totals).toMatchObject({
      requests: 7,
      errors: 3,
      codes: { '0': 4, '242': 1, '251': 1, '255': 1 },
      errorCodes: { '242': 1, '251': 1, '255': 1 },
    });
    expect(data.totals.p50Ms).toBeGreaterThan(0);
    expect(data.totals.p99Ms).toBeGreaterThanOrEqual(data.totals.p50Ms as number);
    expect(data.series.reduce((n, b) => n + b.requests, 0)).toBe(7);
    expect(Object.keys(data.clients)).toEqual(['branch-1', 'nobody']);
    expect(data.clients['branch-1']).toMatchObject({ requests: 5, errors: 2, codes: { '0': 3, '251': 1, '255': 1 } });
    expect(data.clients['branch-1']?.recentErrors.map((e) => [e.verb, e.noun, e.code, e.status])).toEqual([
      ['GET', 'nothing', 255, 404],
      ['GET', 'boom', 251, 500],
    ]);
    expect(data.clients['nobody']).toMatchObject({ requests: 1, errors: 1, codes: { '242': 1 } });
    expect(data.disconnected).toEqual([{ name: 'branch-2', address: expect.stringMatching(/^127\.0\.0\.1:\d+$/), time: expect.any(String) }]);
    expect(data.events.map((e) => `${e.type} ${e.name}`)).toEqual(['disconnected branch-2', 'connected branch-2', 'connected branch-1']);

    await startClient(server, { name: 'branch-2' });
    await waitFor(() => server.registry.size === 2);
    const again = (await http('GET', `${gw}/_restpipe/ui/data`)).json<DashboardData>();
    expect(again.disconnected).toEqual([]);
  });

  it('a missing page folder loses the page (500, logged), not the node', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'restpipe-no-ui-'));
    onClose(() => rm(empty, { recursive: true, force: true }));
    const warnings: string[] = [];
    const log = quietLog.child({});
    log.warn = ((_obj: unknown, msg: string) => warnings.push(msg)) as unknown as typeof log.warn;
    const assetsDir = pathToFileURL(`${empty}/`);
    const serverApp = Fastify();
    onClose(() => serverApp.close());
    registerDashboardRoutes(serverApp, { log, clients: () => [], hasClient: () => false, on: () => undefined }, { assetsDir });
    const clientApp = Fastify();
    onClose(() => clientApp.close());
    registerClientDashboard(clientApp, { log, status: () => ({}), on: () => undefined }, { assetsDir });
    for (const app of [serverApp, clientApp]) {
      const page = await app.inject('/_restpipe/ui');
      expect(page.statusCode).toBe(500);
      expect(page.body).toContain("the dashboard's files are missing");
      expect((await app.inject('/_restpipe/ui/data')).statusCode).toBe(200);
    }
    expect(warnings).toEqual(["the dashboard's files are missing; /_restpipe/ui answers 500", "the dashboard's files are missing; /_restpipe/ui answers 500"]);
  });

  // A browser keeps connections to the page's gateway: spare ones it never sends on, and
  // kept-alive ones. Closing the node must not wait on them (Node's server.close() would:
  // a connection that never carried a request until the headers timeout, 60 to 90 s; one
  // whose answer went out during the close for the keep-alive timeout, 72 s).
  it("closing a client does not wait on its gateway's spare connections or on one answered during the close", async () => {
    const { whenCalled, slow } = slowCall();
    const handler = new (class extends ServerEventHandler {
      get_slow(ctx: EventContext) {
        return slow(ctx);
      }
    })();
    const server = await startServer({ handler });
    const client = await startClient(server, { name: 'branch-1' });
    const gw = client.gatewayAddress as string;
    const spare = await rawConnection(gw);
    const kept = await rawConnection(gw);
    kept.socket.write('GET /server/slow HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await whenCalled;
    await within(client.close(0), 10_000, 'client.close(0)');
    await within(Promise.all([spare.closed, kept.closed]), 5000, 'the gateway ending its connections');
    expect(spare.text()).toBe('');
    // The request in flight got its whole answer (the pipe closed under it), saying the
    // connection closes, before it did.
    expect(kept.text()).toMatch(/^HTTP\/1\.1 503 [\s\S]*\r\n\r\n\{[\s\S]*\}$/);
    expect(kept.text()).toMatch(/\r\nconnection: close\r\n/i);
  });

  it("closing a server does not wait on its gateway's spare connections or on one answered during the close", async () => {
    const { whenCalled, slow } = slowCall();
    const handler = new (class extends ClientExampleHandler {
      get_slow(ctx: EventContext) {
        return slow(ctx);
      }
    })();
    const server = await startServer();
    await startClient(server, { name: 'branch-1', handler });
    const gw = server.gatewayAddress as string;
    const spare = await rawConnection(gw);
    const kept = await rawConnection(gw);
    kept.socket.write('GET /client/branch-1/slow HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await whenCalled;
    await within(server.close(0), 10_000, 'server.close(0)');
    await within(Promise.all([spare.closed, kept.closed]), 5000, 'the gateway ending its connections');
    expect(spare.text()).toBe('');
    expect(kept.text()).toMatch(/^HTTP\/1\.1 503 [\s\S]*\r\n\r\n\{[\s\S]*\}$/);
    expect(kept.text()).toMatch(/\r\nconnection: close\r\n/i);
  });

  it('the client gateway serves its own page and data', async () => {
    const server = await startServer();
    const client = await startClient(server, { name: 'branch-1' });
    const http = httpClient();
    const page = await http('GET', `${client.gatewayAddress}/_restpipe/ui`);
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    expect(page.text).toContain('ui/client.js');
    for (const file of ['client.css', 'client.js']) expect((await http('GET', `${client.gatewayAddress}/_restpipe/ui/${file}`)).status).toBe(200);
    const data = (await http('GET', `${client.gatewayAddress}/_restpipe/ui/data`)).json<ClientDashboardData>();
    expect(data.status).toMatchObject({ side: 'client', pipe: 'up', server: `localhost:${server.pipeAddress.port}` });
    expect(data.history).toEqual([{ type: 'connected', time: expect.any(String), attempts: 1 }]);
  });
});

// ---------------------------------------------------------------------------
// In a real browser.

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const onCi = Boolean(process.env.CI) && process.env.CI !== 'false';
if (!haveChromium && !onCi) {
  console.warn(`test/dashboard.test.ts: SKIPPING the browser tests: ${CHROMIUM} not found (install Debian's chromium package: apt-get install chromium)`);
}

describe.runIf(!haveChromium && onCi)('chromium on CI', () => {
  it('is installed', () => {
    throw new Error(`${CHROMIUM} not found, and CI is set: the dashboard's browser tests must run in CI (.ci/run installs Debian's chromium package)`);
  });
});

/** Short heartbeats: a frozen client is dropped within HEARTBEAT_TIMEOUT_MS. */
const HEARTBEAT_TIMEOUT_MS = 2000;
const HEARTBEAT_INTERVAL_MS = 250;
const FLEET_ENV = {
  RP_CLIENT_HEARTBEAT_INTERVAL_S: String(HEARTBEAT_INTERVAL_MS / 1000),
  RP_CLIENT_HEARTBEAT_TIMEOUT_S: String(HEARTBEAT_TIMEOUT_MS / 1000),
  RP_CLIENT_RECONNECT_INITIAL_S: '0.1',
  RP_CLIENT_RECONNECT_MAX_S: '0.5',
};
/** The page reads the server every 2 s; a wait on it allows that and a loaded machine. */
const PAGE_WAIT_MS = 15_000;

/** The time left of `ms` from now (at least 1 ms): waits that share it end in time together. */
function budget(ms: number): () => number {
  const end = Date.now() + ms;
  return () => Math.max(1, end - Date.now());
}

describe.skipIf(!haveChromium)(`in a real browser${haveChromium ? '' : ` (skipped: no ${CHROMIUM})`}`, () => {
  let browser: BrowserContext;
  let userDataDir: string;

  beforeAll(async () => {
    userDataDir = await mkdtemp(join(tmpdir(), 'restpipe-chromium-'));
    browser = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 900 },
      locale: 'en-GB',
      timezoneId: 'UTC',
    });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  }, 30_000);

  /** A page whose every request is recorded, closed at teardown. */
  async function openPage(url: string, timeout?: number): Promise<{ page: Page; requested: string[]; problems: string[] }> {
    const page = await browser.newPage();
    onClose(() => page.close());
    const requested: string[] = [];
    const problems: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (m) => {
      // Chromium logs every 4xx/5xx answer; those are checked through `requested` instead.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
    });
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
    });
    await page.goto(url, { timeout });
    return { page, requested, problems };
  }

  /** The names in a table's body, in order. */
  const names = (page: Page, table: string) => page.$$eval(`#${table} tbody tr`, (rows) => rows.map((r) => r.cells[0]?.textContent ?? ''));

  const waitForNames = (page: Page, table: string, expected: string[]) =>
    page.waitForFunction(
      ([id, want]) => JSON.stringify([...document.querySelectorAll(`#${id} tbody tr`)].map((r) => r.cells[0]?.textContent)) === want,
      [table, JSON.stringify(expected)] as const,
      { timeout: PAGE_WAIT_MS },
    );

  /** A server and three clients: two in this process, `branch-c` a real `restpipe-client` process. */
  async function startFleet() {
    const server = await startServer({ env: FLEET_ENV });
    await startClient(server, { name: 'branch-a', handler: new FleetHandler(), env: FLEET_ENV });
    await startClient(server, { name: 'branch-b', handler: new FleetHandler(), env: FLEET_ENV });
    const dir = await installedIdentity('client', await (await testPki()).client('branch-c'));
    const startC = (): NodeProcess =>
      spawnNode(CLIENT_CLI, { ...TEST_ENV, ...FLEET_ENV, RP_CLIENT_CERT_PATH: dir, RP_CLIENT_TARGET_PORT: String(server.pipeAddress.port) });
    const c = startC();
    await waitFor(() => server.registry.get('branch-c')?.ready === true, 15_000, 'branch-c to connect');
    return { server, startC, c, gw: server.gatewayAddress as string };
  }

  it('lists the three clients and follows them live: frozen and killed ones grey out and move, and come back, without a reload', async () => {
    const fleet = await startFleet();
    const { page, requested, problems } = await openPage(`${fleet.gw}/_restpipe/ui`);
    await waitForNames(page, 'clients', ['branch-a', 'branch-b', 'branch-c']);
    await page.waitForFunction(() => document.querySelector('#live')?.classList.contains('on'), undefined, { timeout: PAGE_WAIT_MS });
    const cells = await page.$$eval('#clients tbody tr:first-child td', (tds) => tds.map((td) => td.textContent));
    expect(cells[1]).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(cells[2]).toMatch(/^\d\d:\d\d:\d\d \(\d+s ago\)$/);
    expect(cells[4]).toBe('0 out, 0 in');
    expect(cells[7]).toBe('1'); // protocol version
    expect(cells[8]).toMatch(/^restpipe-node/);
    expect(cells[9]).toMatch(/^\d{4}-\d\d-\d\d \(in \d+ days\)$/); // certNotAfter from /_restpipe/clients
    expect(await page.isHidden('#clients th[data-key="instance"]')).toBe(true);
    // RTT arrives with the first heartbeats and the next read of the status.
    await page.waitForFunction(() => /ms$/.test(document.querySelector('#clients tbody tr td:nth-child(4)')?.textContent ?? ''), undefined, {
      timeout: PAGE_WAIT_MS,
    });

    // Rows the event stream greys out (before the next read of the server moves them): only
    // the `disconnected` event does that, so this shows the stream at work, not the polling.
    await page.evaluate(`
      window.greyed = [];
      new MutationObserver((records) => {
        for (const r of records) if (r.target.classList.contains('gone')) window.greyed.push(r.target.dataset.name);
      }).observe(document.querySelector('#clients tbody'), { attributes: true, attributeFilter: ['class'], subtree: true });
    `);
    const greyed = () => page.evaluate('window.greyed');

    // Frozen (SIGSTOP): the socket stays open, only the heartbeat finds it.
    const frozenAt = Date.now();
    fleet.c.child.kill('SIGSTOP');
    await waitForNames(page, 'disconnected', ['branch-c']);
    // It was the heartbeat, not a closed socket: silence for the timeout (less the last ping's interval).
    expect(Date.now() - frozenAt).toBeGreaterThanOrEqual(HEARTBEAT_TIMEOUT_MS - HEARTBEAT_INTERVAL_MS - 100);
    await waitForNames(page, 'clients', ['branch-a', 'branch-b']);
    expect(await greyed()).toEqual(['branch-c']);
    expect(await page.textContent('#disconnected tbody tr td:nth-child(3)')).toMatch(/^\d\d:\d\d:\d\d \(\d+s ago\)$/);
    await page.waitForFunction(() => document.querySelector('#events li')?.textContent?.includes('disconnected branch-c'), undefined, {
      timeout: PAGE_WAIT_MS,
    });
    fleet.c.child.kill('SIGCONT'); // it finds its pipe gone and reconnects
    await waitForNames(page, 'clients', ['branch-a', 'branch-b', 'branch-c']);
    expect(await names(page, 'disconnected')).toEqual([]);

    // Killed (SIGKILL), then restarted.
    fleet.c.child.kill('SIGKILL');
    await fleet.c.exited;
    await waitForNames(page, 'disconnected', ['branch-c']);
    await waitForNames(page, 'clients', ['branch-a', 'branch-b']);
    expect(await greyed()).toEqual(['branch-c', 'branch-c']);
    fleet.startC();
    await waitForNames(page, 'clients', ['branch-a', 'branch-b', 'branch-c']);
    await waitForNames(page, 'disconnected', []);

    expect(problems).toEqual([]);
    expect(requested.filter((u) => !u.startsWith(`${fleet.gw}/`))).toEqual([]); // nothing from elsewhere
  }, 90_000);

  it('charts the traffic, opens a client by keyboard, and its "try it" box shows the answer and the event code', async () => {
    const fleet = await startFleet();
    const leaver = await startClient(fleet.server, { name: 'branch-old', env: FLEET_ENV });
    await waitFor(() => fleet.server.registry.size === 4);
    await leaver.close(0);
    const { page, requested, problems } = await openPage(`${fleet.gw}/_restpipe/ui`);
    await waitForNames(page, 'clients', ['branch-a', 'branch-b', 'branch-c']);
    await waitForNames(page, 'disconnected', ['branch-old']);

    const http = httpClient();
    const send = async (path: string, code: number, times = 1) => {
      for (let i = 0; i < times; i++) expect((await http('GET', `${fleet.gw}${path}`)).code, path).toBe(code);
    };
    await send('/client/branch-a/time', 0, 20);
    await send('/client/branch-b/time', 0, 12);
    await send('/client/branch-c/cat//hello%20/world', 0, 6);
    await send('/client/branch-a/boom', 251, 3);
    await send('/client/branch-b/missing', 255, 4);
    await send('/client/branch-gone/time', 242, 2);

    // The request chart: bars of answers per second per 10 s (one bar, or two if the
    // traffic crossed a bucket's end) that add up to the 47 answers; errors by code; latency lines.
    await page.waitForFunction(
      () => Math.round([...document.querySelectorAll('#chart-requests rect')].reduce((sum, r) => sum + 10 * Number(r.dataset.value), 0)) === 47,
      undefined,
      { timeout: PAGE_WAIT_MS },
    );
    const errorSeries = await page.$$eval('#chart-errors rect', (rects) => [...new Set(rects.map((r) => r.dataset.series))].sort());
    expect(errorSeries).toEqual(['242', '251', '255']);
    expect(await page.$$eval('#chart-errors rect', (rects) => Math.max(...rects.map((r) => Number(r.dataset.value))))).toBeGreaterThan(0);
    expect(await page.textContent('#chart-errors .legend')).toContain('255 NO_HANDLER: 4');
    expect(await page.getAttribute('#chart-latency path[data-series="p50"]', 'd')).toMatch(/^M/);
    expect(await page.textContent('#chart-latency .chart-summary')).toMatch(/^p50 [\d.]+ m?s · p99 [\d.]+ m?s over 15 min$/);
    expect(await page.textContent('#chart-requests .chart-summary')).toMatch(/^47 in 15 min · 47 in the last minute · peak [\d.]+\/s$/);
    await page.waitForFunction(() => document.querySelector('#clients tbody tr:first-child td:nth-child(6)')?.textContent === '23', undefined, {
      timeout: PAGE_WAIT_MS,
    });

    // Sort and filter.
    await page.click('#clients th[data-key="requests"] button');
    expect(await page.getAttribute('#clients th[data-key="requests"]', 'aria-sort')).toBe('ascending');
    expect(await names(page, 'clients')).toEqual(['branch-c', 'branch-b', 'branch-a']);
    await page.click('#clients th[data-key="requests"] button');
    expect(await names(page, 'clients')).toEqual(['branch-a', 'branch-b', 'branch-c']);
    await page.fill('#filter', 'b-');
    expect(await names(page, 'clients')).toEqual([]);
    expect(await page.textContent('#no-clients')).toBe('No connected client matches the filter.');
    await page.fill('#filter', 'branch-b');
    expect(await names(page, 'clients')).toEqual(['branch-b']);
    expect(await page.textContent('#client-count')).toBe('(1 of 3)');
    await page.fill('#filter', '');
    await page.click('#clients th[data-key="name"] button');
    expect(await page.getAttribute('#clients th[data-key="name"]', 'aria-sort')).toBe('ascending');
    expect(await names(page, 'clients')).toEqual(['branch-a', 'branch-b', 'branch-c']);

    // Keyboard only: from the filter box, Tab to the first row, Enter opens its detail.
    await page.focus('#filter');
    let focused = '';
    for (let i = 0; i < 30 && focused !== 'branch-a'; i++) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate(() => (document.activeElement?.tagName === 'TR' ? (document.activeElement.dataset.name ?? '') : ''));
    }
    expect(focused).toBe('branch-a');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#detail[open]');
    expect(await page.textContent('#detail-title')).toBe('branch-a');
    expect(await page.textContent('#detail-state')).toBe('Connected');
    expect(await page.$$eval('#detail-codes tbody tr', (rows) => rows.map((r) => r.textContent))).toEqual(['0 OK20', '251 HANDLER_THREW3']);
    expect(await page.$$eval('#detail-errors tbody tr td:nth-child(2)', (tds) => tds.map((td) => td.textContent))).toEqual([
      'GET boom',
      'GET boom',
      'GET boom',
    ]);

    // "Try it": the noun box has the focus; type and press Enter.
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('try-noun');
    await page.fill('#try-noun', 'time');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('#try-code')?.textContent === '0 OK', undefined, { timeout: PAGE_WAIT_MS });
    expect(await page.textContent('#try-status')).toBe('200');
    expect(await page.textContent('#try-type')).toBe('application/json');
    const body = JSON.parse((await page.textContent('#try-body')) ?? '') as { time_from_client: number };
    expect(Math.abs(body.time_from_client - Date.now() / 1000)).toBeLessThan(60);
    await page.fill('#try-noun', 'missing');
    await page.click('#try button[type="submit"]');
    await page.waitForFunction(() => document.querySelector('#try-code')?.textContent === '255 NO_HANDLER', undefined, { timeout: PAGE_WAIT_MS });
    expect(await page.textContent('#try-status')).toBe('404');
    expect(await page.textContent('#try-body')).toContain('"class": "NoHandlerError"');
    // The answers of the box are counted like any other (the detail follows live).
    await page.waitForFunction(() => document.querySelector('#detail-errors tbody tr td:nth-child(2)')?.textContent === 'GET missing', undefined, {
      timeout: PAGE_WAIT_MS,
    });
    // A noun that would leave /client/<name>/ is refused in the page.
    await page.fill('#try-noun', '../../_restpipe/status');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('#try-body')?.textContent?.startsWith('The noun must stay under'), undefined, {
      timeout: PAGE_WAIT_MS,
    });
    await page.keyboard.press('Escape');
    await page.waitForSelector('#detail', { state: 'hidden' });

    // A disconnected client opens too, and says so.
    await page.click('#disconnected tbody tr');
    await page.waitForSelector('#detail[open]');
    expect(await page.textContent('#detail-state')).toMatch(/^Disconnected at \d\d:\d\d:\d\d$/);
    await page.click('#detail-close');
    await page.waitForSelector('#detail', { state: 'hidden' });

    const update = process.env.RP_UPDATE_SCREENSHOT === '1';
    const shotDir = update ? join(REPO_ROOT, 'docs') : await mkdtemp(join(tmpdir(), 'restpipe-dashboard-'));
    if (!update) onClose(() => rm(shotDir, { recursive: true, force: true }));
    const shot = await page.screenshot({ fullPage: true });
    await writeFile(join(shotDir, 'dashboard.png'), shot);
    expect(shot.subarray(1, 4).toString()).toBe('PNG');

    expect(problems).toEqual([`HTTP 404 for ${fleet.gw}/client/branch-a/missing`]); // the "try it" above
    expect(requested.filter((u) => !u.startsWith(`${fleet.gw}/`))).toEqual([]);
  }, 90_000);

  it('shows certificate expiry and the instance once /_restpipe/clients has them', async () => {
    const server = await startServer({ env: FLEET_ENV });
    await startClient(server, { name: 'branch-a', env: FLEET_ENV });
    await startClient(server, { name: 'branch-b', env: FLEET_ENV });
    await waitFor(() => server.registry.size === 2);
    const gw = server.gatewayAddress as string;
    const soon = new Date(Date.now() + 10.5 * 86_400_000).toISOString();
    const later = new Date(Date.now() + 400.5 * 86_400_000).toISOString();
    const page = await browser.newPage();
    onClose(() => page.close());
    // The server's real answer, with the fields a later version adds.
    await page.route(`${gw}/_restpipe/clients`, async (route) => {
      const res = await route.fetch();
      const clients = (await res.json()) as Array<{ name: string }>;
      const more = { 'branch-a': { certNotAfter: soon, instance: 'hq-2' }, 'branch-b': { certNotAfter: later, instance: 'hq-1' } };
      await route.fulfill({ response: res, json: clients.map((c) => ({ ...c, ...more[c.name as keyof typeof more] })) });
    });
    await page.goto(`${gw}/_restpipe/ui`);
    await waitForNames(page, 'clients', ['branch-a', 'branch-b']);
    await page.waitForSelector('#clients th[data-key="instance"]', { state: 'visible', timeout: PAGE_WAIT_MS });
    const rows = await page.$$eval('#clients tbody tr', (trs) => trs.map((tr) => [...tr.cells].slice(9).map((td) => [td.textContent, td.className])));
    expect(rows).toEqual([
      [
        [`${soon.slice(0, 10)} (in 10 days)`, 'warn'],
        ['hq-2', ''],
      ],
      [
        [`${later.slice(0, 10)} (in 400 days)`, ''],
        ['hq-1', ''],
      ],
    ]);
    await page.click('#clients th[data-key="instance"] button');
    expect(await names(page, 'clients')).toEqual(['branch-b', 'branch-a']);
    await page.click('#clients th[data-key="certNotAfter"] button');
    expect(await names(page, 'clients')).toEqual(['branch-a', 'branch-b']);
  }, 60_000);

  it('the client page shows the pipe going down and up again, with its history and counters', async () => {
    // Only the server going away and coming back moves this pipe: heartbeats, which could
    // time out on a loaded machine and add a drop of their own, are set far beyond this test.
    const env = {
      RP_CLIENT_HEARTBEAT_INTERVAL_S: '1',
      RP_CLIENT_HEARTBEAT_TIMEOUT_S: '600',
      RP_CLIENT_RECONNECT_INITIAL_S: '0.1',
      RP_CLIENT_RECONNECT_MAX_S: '0.5',
    };
    // Every wait takes what is left of one budget, so together they end before the test's timeout.
    const left = budget(50_000);
    const port = await freePort();
    const serverEnv = { ...env, RP_SERVER_BIND_PORT: String(port) };
    const first = await startServer({ env: serverEnv });
    const client = await startClient({ port }, { name: 'branch-a', env });
    const { page, requested, problems } = await openPage(`${client.gatewayAddress}/_restpipe/ui`, left());
    /** The pipe line and the history's events (newest first, failed attempts left out), as the page shows them now. */
    const shows = (pipe: string, events: string[]) =>
      page.waitForFunction(
        ([pipe, events]) =>
          document.querySelector('#pipe')?.textContent?.startsWith(pipe) &&
          JSON.stringify(
            [...document.querySelectorAll('#history tbody tr td:nth-child(2)')].map((td) => td.textContent).filter((t) => t !== 'connect failed'),
          ) === events,
        [pipe, JSON.stringify(events)] as const,
        { timeout: left() },
      );

    await shows('Pipe up', ['connected']);
    const info = await page.$$eval('#info dd', (dds) => dds.map((dd) => dd.textContent));
    expect(info[0]).toBe(`localhost:${port}`);
    expect(info[1]).toMatch(/^localhost at 127\.0\.0\.1:\d+$/);
    expect(info[7]).toBe('0 out, 0 in');

    await first.close(0);
    await shows('Pipe down', ['disconnected', 'connected']);
    await startServer({ env: serverEnv });
    await shows('Pipe up', ['connected', 'disconnected', 'connected']);
    const counters = await page.$$eval('#counters tbody tr', (rows) =>
      Object.fromEntries(rows.map((r) => [r.children[0]?.textContent, r.children[1]?.textContent])),
    );
    expect(counters['connect.successes']).toBe('2');
    expect(counters['connect.broken']).toBe('1');
    expect(problems).toEqual([]);
    expect(requested.filter((u) => !u.startsWith(`${client.gatewayAddress}/`))).toEqual([]);
  }, 60_000);
});
