/**
 * statsd for real: a UDP socket on loopback receives what `createStatsd`
 * sends while requests travel a real pipe, and the test reads the datagrams
 * (`name:value|type`, one per line). Also: counters are summed before they
 * are sent, an empty host or port sends nothing (the real executable, with a
 * socket where a wrong fallback would land), and a statsd that is down or
 * refuses datagrams never breaks a request.
 */
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { ServerEventHandler } from '@restpipe/server';
import { createStatsd, nullStats, type EventContext, type PostData, type Stats } from '@restpipe/shared';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { foreignPki, testPki } from './helpers/identities.js';
import { closeAll, httpClient, onClose, startClient, startPair, startServer, waitFor } from './helpers/pipe.js';
import { SERVER_CLI, installedIdentity, spawnNode } from './helpers/node-process.js';

afterEach(closeAll);

interface Metric {
  name: string;
  value: number;
  type: string;
}

/** A statsd daemon stand-in: a UDP socket on 127.0.0.1 and every line it got. */
async function statsdSink(port = 0): Promise<{ socket: Socket; port: number; metrics: Metric[]; lines: string[] }> {
  const socket = createSocket('udp4');
  const lines: string[] = [];
  const metrics: Metric[] = [];
  socket.on('message', (msg) => {
    for (const line of msg.toString('utf8').split('\n')) {
      if (line === '') continue;
      lines.push(line);
      const m = /^([^:|]+):([^|]+)\|([a-z]+)$/.exec(line);
      if (m) metrics.push({ name: m[1] as string, value: Number(m[2]), type: m[3] as string });
    }
  });
  socket.bind(port, '127.0.0.1');
  try {
    await once(socket, 'listening');
  } catch (err) {
    socket.close();
    throw err;
  }
  onClose(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return { socket, port: socket.address().port, metrics, lines };
}

/** A UDP port on 127.0.0.1 that nothing listens on (bound, then closed). */
async function closedUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

/** A log that keeps its records, to see what statsd reported. */
function recordingLog(level = 'debug'): { log: pino.Logger; records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = [];
  const log = pino({ level }, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, records };
}

async function statsTo(port: number, opts: { host?: string; log?: pino.Logger; flushIntervalMs?: number } = {}): Promise<Stats> {
  const stats = await createStatsd(
    { host: opts.host ?? '127.0.0.1', port, prefix: 'restpipe.' },
    opts.log ?? recordingLog().log,
    opts.flushIntervalMs ? { flushIntervalMs: opts.flushIntervalMs } : undefined,
  );
  onClose(() => stats.close());
  return stats;
}

const of = (metrics: Metric[], name: string, type?: string) => metrics.filter((m) => m.name === name && (type === undefined || m.type === type));
const sum = (metrics: Metric[], name: string) => of(metrics, name, 'c').reduce((a, m) => a + m.value, 0);

describe('statsd over a real UDP socket', () => {
  it('gets counters, gauges and timers from both nodes while requests travel the pipe', async () => {
    const serverSink = await statsdSink();
    const clientSink = await statsdSink();
    // Datadog variables in the environment must not turn the datagrams into DogStatsD.
    const saved = { DD_ENV: process.env.DD_ENV, DD_TAGS: process.env.DD_TAGS };
    process.env.DD_ENV = 'ci';
    process.env.DD_TAGS = 'team:pipes';
    let serverStats: Stats;
    let clientStats: Stats;
    try {
      // Exactly as the executables make them (default one-second counter flush).
      serverStats = await statsTo(serverSink.port);
      clientStats = await statsTo(clientSink.port);
    } finally {
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
    const server = await startServer({ stats: serverStats });
    const statsClient = await startClient(server, { name: 'agent-2', stats: clientStats });
    const http = httpClient();
    const N = 12;
    for (let i = 0; i < N; i++) {
      const res = await http('GET', `${statsClient.gatewayAddress}/server/time`);
      expect(res.status).toBe(200);
    }
    const missing = await http('GET', `${statsClient.gatewayAddress}/server/no_such_thing`);
    expect(missing.code).toBe(255);
    const back = await http('GET', `${server.gatewayAddress}/client/agent-2/time`);
    expect(back.status).toBe(200);
    // A fan-out answer and one refused before the pipe count like any other gateway answer.
    const fan = await http('GET', `${server.gatewayAddress}/clients/*/time`);
    expect(fan.status).toBe(200);
    const badNoun = await http('GET', `${server.gatewayAddress}/client/agent-2/no.such`);
    expect(badNoun.status).toBe(404);

    const s = serverSink.metrics;
    const c = clientSink.metrics;
    await waitFor(
      () =>
        sum(s, 'restpipe.requests.code.0') === N &&
        sum(c, 'restpipe.requests.sent') === N + 1 &&
        sum(c, 'restpipe.handler.get_time.calls') === 2 &&
        sum(s, 'restpipe.gateway.status.404') === 1,
      5000,
      'the counters',
    );

    // The server handled N + 1 requests: N answered by get_time, one had no handler.
    expect(sum(s, 'restpipe.requests.received')).toBe(N + 1);
    expect(sum(s, 'restpipe.requests.code.0')).toBe(N);
    expect(sum(s, 'restpipe.requests.code.255')).toBe(1);
    expect(sum(s, 'restpipe.handler.get_time.calls')).toBe(N);
    const handlerTimes = of(s, 'restpipe.handler.get_time.time', 'ms');
    expect(handlerTimes).toHaveLength(N);
    for (const t of handlerTimes) expect(t.value).toBeGreaterThanOrEqual(0);
    expect(of(s, 'restpipe.clients.connected', 'g').map((m) => m.value)).toContain(1);
    expect(sum(s, 'restpipe.connections.added')).toBe(1);
    expect(sum(s, 'restpipe.requests.sent')).toBe(2);
    expect(of(s, 'restpipe.gateway.time', 'ms')).toHaveLength(3);
    expect(sum(s, 'restpipe.gateway.status.200')).toBe(2);
    expect(sum(s, 'restpipe.gateway.status.404')).toBe(1);
    expect(sum(s, 'restpipe.gateway.fanout.requests')).toBe(1);
    expect(sum(s, 'restpipe.frames.received')).toBeGreaterThanOrEqual(N + 2);
    expect(sum(s, 'restpipe.bytes.received')).toBeGreaterThan(0);
    expect(sum(s, 'restpipe.bytes.sent')).toBeGreaterThan(0);

    // The client: one attempt, one success, N + 1 requests through its gateway.
    expect(sum(c, 'restpipe.connect.attempts')).toBe(1);
    expect(sum(c, 'restpipe.connect.successes')).toBe(1);
    expect(sum(c, 'restpipe.requests.sent')).toBe(N + 1);
    expect(of(c, 'restpipe.gateway.time', 'ms')).toHaveLength(N + 1);
    expect(sum(c, 'restpipe.gateway.status.200')).toBe(N);
    expect(sum(c, 'restpipe.gateway.status.404')).toBe(1);
    expect(sum(c, 'restpipe.handler.get_time.calls')).toBe(2);
    expect(sum(c, 'restpipe.requests.code.0')).toBe(2);
    expect(sum(c, 'restpipe.frames.sent')).toBeGreaterThanOrEqual(N + 2);
    expect(sum(c, 'restpipe.bytes.sent')).toBeGreaterThan(0);
    expect(sum(c, 'restpipe.bytes.received')).toBeGreaterThan(0);

    // Plain statsd: every line parses, carries the prefix, and no DogStatsD tags.
    for (const line of [...serverSink.lines, ...clientSink.lines]) {
      expect(line).toMatch(/^restpipe\.[a-z0-9_.]+:[0-9.]+\|(c|g|ms)$/);
    }
    // Summed in memory: far fewer counter datagrams than increments.
    expect(of(s, 'restpipe.requests.code.0').length).toBeLessThanOrEqual(3);
  });

  it('gets heartbeat round trips, deadlines, refused connections and broken pipes', async () => {
    class SlowHandler extends ServerEventHandler {
      async get_slow(ctx: EventContext, _post: PostData) {
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
        return { late: true };
      }
    }
    const serverSink = await statsdSink();
    const clientSink = await statsdSink();
    const strangerSink = await statsdSink();
    const fast = { flushIntervalMs: 50 };
    const heartbeat = { RP_CLIENT_HEARTBEAT_INTERVAL_S: '0.05', RP_CLIENT_HEARTBEAT_TIMEOUT_S: '5' };
    const server = await startServer({ stats: await statsTo(serverSink.port, fast), handler: new SlowHandler(), env: heartbeat });
    const client = await startClient(server, { stats: await statsTo(clientSink.port, fast), env: heartbeat });
    const http = httpClient();
    const late = await http('GET', `${client.gatewayAddress}/server/slow`, { headers: { 'X-RestPipe-Timeout-Ms': '100' } });
    expect(late.status).toBe(504);
    // A client whose certificate another CA signed is refused by the server, at every attempt.
    // It tries again after a random wait (full jitter: anywhere in 0..5 s, so possibly before
    // the first refusal's counters even arrive): what is certain is at least one refusal, on
    // both sides, and never a success.
    const stranger = await startClient(server, {
      name: 'stranger',
      identity: await (await foreignPki()).client('stranger'),
      waitConnected: false,
      stats: await statsTo(strangerSink.port, fast),
      env: { RP_CLIENT_RECONNECT_INITIAL_S: '5' },
    });
    const s = serverSink.metrics;
    const c = clientSink.metrics;
    const refused = strangerSink.metrics;
    await waitFor(() => of(s, 'restpipe.heartbeat.rtt', 'ms').length > 0 && of(c, 'restpipe.heartbeat.rtt', 'ms').length > 0, 5000, 'heartbeat round trips');
    await waitFor(() => sum(c, 'restpipe.requests.deadline_exceeded') === 1 && sum(c, 'restpipe.gateway.status.504') === 1, 5000, 'the deadline');
    await waitFor(() => sum(s, 'restpipe.connections.refused') >= 1 && sum(refused, 'restpipe.connect.failures') >= 1, 5000, 'the refused client');
    await stranger.close(0);
    // What the stranger counted, statsd gets in full (summed, at the next flush).
    const counted = stranger.status().counters as Record<string, number>;
    expect(counted['connect.failures']).toBeGreaterThanOrEqual(1);
    expect(counted['connect.successes']).toBeUndefined();
    await waitFor(
      () =>
        sum(refused, 'restpipe.connect.attempts') === counted['connect.attempts'] && sum(refused, 'restpipe.connect.failures') === counted['connect.failures'],
      5000,
      "the stranger's counters",
    );
    expect(server.registry.get('stranger')).toBeUndefined();
    // The server goes away: the client's pipe breaks.
    await server.close(0);
    await waitFor(() => sum(c, 'restpipe.connect.broken') === 1, 5000, 'the broken pipe');
    // The gauge goes out at once, the counter with the next flush: wait for both.
    await waitFor(
      () => of(s, 'restpipe.clients.connected', 'g').at(-1)?.value === 0 && sum(s, 'restpipe.connections.removed') === 1,
      5000,
      'the gauge back to 0 and the connection removed',
    );
    expect(sum(s, 'restpipe.heartbeat.timeouts') + sum(c, 'restpipe.heartbeat.timeouts')).toBe(0);
  }, 45_000); // six waits of at most 5 s, and the nodes' start

  it('sums counters for the flush interval and sends the rest on close', async () => {
    const sink = await statsdSink();
    const stats = await statsTo(sink.port, { flushIntervalMs: 60_000 });
    for (let i = 0; i < 500; i++) stats.increment('frames.sent');
    stats.increment('bytes.sent', 1200);
    stats.increment('bytes.sent', 34);
    stats.gauge('clients.connected', 3);
    stats.timing('gateway.time', 1.23456789);
    await waitFor(() => sink.metrics.length >= 2, 3000, 'gauge and timer');
    // Gauges and timers go at once; the counters wait for the flush.
    expect(sink.metrics.filter((m) => m.type === 'c')).toEqual([]);
    await stats.close();
    await waitFor(() => sink.metrics.length >= 4, 3000, 'the counters');
    expect(sink.lines.sort()).toEqual([
      'restpipe.bytes.sent:1234|c',
      'restpipe.clients.connected:3|g',
      'restpipe.frames.sent:500|c',
      'restpipe.gateway.time:1.235|ms',
    ]);
    // After close nothing is sent and nothing throws.
    stats.increment('frames.sent');
    stats.gauge('clients.connected', 1);
    stats.timing('gateway.time', 1);
    await stats.close();
    await new Promise((r) => setTimeout(r, 300));
    expect(sink.lines).toHaveLength(4);
  });

  it('resolves a host name once, preferring IPv4 (localhost reaches a 127.0.0.1 daemon)', async () => {
    const sink = await statsdSink();
    const stats = await statsTo(sink.port, { host: 'localhost', flushIntervalMs: 20 });
    stats.increment('connect.attempts');
    await waitFor(() => sink.lines.includes('restpipe.connect.attempts:1|c'), 3000, 'the datagram');
  });

  it('turns itself off, with a warning, when the host does not resolve', async () => {
    const { log, records } = recordingLog('warn');
    const stats = await createStatsd({ host: 'no-such-host.invalid', port: 8125, prefix: 'restpipe.' }, log);
    expect(stats).toBe(nullStats);
    expect(records.some((r) => r['msg'] === 'statsd host does not resolve; metrics are off' && r['host'] === 'no-such-host.invalid')).toBe(true);
  });
});

describe('a statsd that is down or refuses datagrams', () => {
  it('never breaks a request: a closed port', async () => {
    const port = await closedUdpPort();
    const { log } = recordingLog();
    const serverStats = await statsTo(port, { log, flushIntervalMs: 20 });
    const clientStats = await statsTo(port, { log, flushIntervalMs: 20 });
    const server = await startServer({ stats: serverStats });
    const client = await startClient(server, { stats: clientStats });
    const http = httpClient();
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(Array.from({ length: 20 }, () => http('GET', `${client.gatewayAddress}/server/time`)));
      expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
      await new Promise((r) => setTimeout(r, 60)); // a few flushes into the void
    }
  });

  it('never breaks a request: sends that fail (a broadcast address without permission) are logged at debug', async () => {
    const { log, records } = recordingLog('debug');
    const stats = await statsTo(9, { host: '255.255.255.255', log, flushIntervalMs: 20 });
    const { client } = await startPair({ server: { stats } });
    const http = httpClient();
    for (let i = 0; i < 10; i++) expect((await http('GET', `${client.gatewayAddress}/server/time`)).status).toBe(200);
    await waitFor(() => records.some((r) => r['msg'] === 'statsd send failed'), 3000, 'a failed send');
    expect(records.find((r) => r['msg'] === 'statsd send failed')?.['level']).toBe(20); // debug
    expect((await http('GET', `${client.gatewayAddress}/server/time`)).status).toBe(200);
  });
});

describe('statsd switched off', () => {
  /** Starts the real server executable with `statsdEnv`, connects a client and makes requests. */
  async function runServerCli(statsdEnv: Record<string, string>) {
    const pki = await testPki();
    const certPath = await installedIdentity('server', pki.server);
    const node = spawnNode(SERVER_CLI, {
      RP_SERVER_CERT_PATH: certPath,
      RP_SERVER_BIND_INTERFACE: '127.0.0.1',
      RP_SERVER_BIND_PORT: '0',
      RP_SERVER_GATEWAY_PORT: '0',
      RP_LOG_LEVEL: 'info',
      ...statsdEnv,
    });
    const listening = await node.waitForLog('pipe listening for clients');
    const client = await startClient({ port: listening['port'] as number });
    const http = httpClient();
    for (let i = 0; i < 5; i++) expect((await http('GET', `${client.gatewayAddress}/server/time`)).status).toBe(200);
    return { node, client };
  }

  it('sends to the configured socket when on (the control for the cases below)', async () => {
    const sink = await statsdSink();
    const { node } = await runServerCli({ RP_STATSD_HOST: '127.0.0.1', RP_STATSD_PORT: String(sink.port) });
    expect(node.logs().find((l) => l['msg'] === 'sending metrics to statsd')).toMatchObject({ host: '127.0.0.1', port: sink.port, prefix: 'restpipe.' });
    await waitFor(
      () => sink.lines.includes('restpipe.clients.connected:1|g') && sum(sink.metrics, 'restpipe.requests.code.0') === 5,
      5000,
      'metrics from the executable',
    );
  });

  it('with an empty port sends nothing, not even to the default port 8125', async (ctx) => {
    let sink: Awaited<ReturnType<typeof statsdSink>> | undefined;
    try {
      sink = await statsdSink(8125);
    } catch {
      ctx.skip(); // 8125 is taken on this machine: nothing to observe
      return;
    }
    const { node } = await runServerCli({ RP_STATSD_HOST: '127.0.0.1', RP_STATSD_PORT: '' });
    expect(node.logs().some((l) => l['msg'] === 'statsd is off (RP_STATSD_HOST or RP_STATSD_PORT is empty)')).toBe(true);
    await new Promise((r) => setTimeout(r, 1500)); // over one counter flush
    expect(sink.lines).toEqual([]);
  });

  it('with a host that does not resolve warns once and serves without metrics', async () => {
    const { node } = await runServerCli({ RP_STATSD_HOST: 'no-such-host.invalid', RP_STATSD_PORT: '8125' });
    const logs = node.logs();
    expect(logs.filter((l) => l['msg'] === 'statsd host does not resolve; metrics are off')).toHaveLength(1);
    expect(logs.some((l) => l['msg'] === 'sending metrics to statsd')).toBe(false);
  });

  it('with an empty host sends nothing, not even to localhost', async () => {
    const sink = await statsdSink();
    const { node } = await runServerCli({ RP_STATSD_HOST: '', RP_STATSD_PORT: String(sink.port) });
    expect(node.logs().some((l) => l['msg'] === 'statsd is off (RP_STATSD_HOST or RP_STATSD_PORT is empty)')).toBe(true);
    await new Promise((r) => setTimeout(r, 1500));
    expect(sink.lines).toEqual([]);
  });
});
