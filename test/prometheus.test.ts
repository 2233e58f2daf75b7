/**
 * Prometheus for real (issue 16): a running pair answers
 * `GET /_restpipe/metrics` on both gateways after real traffic (requests, a
 * 404, a handler that throws, a fan-out), the text is parsed and its families
 * and labelled values checked against the traffic and against what the
 * statsd sink got, and `promtool check metrics` (Debian's `prometheus`
 * package) accepts it. Also: every statsd name of the README and of the
 * sources maps to a family and the README lists the families; label sets stay
 * capped under 5,000 hostile nouns; `RP_PROMETHEUS=0` answers 404.
 *
 * The promtool part needs /usr/bin/promtool. Without it that part is skipped
 * with a message, except when CI is set: then it fails.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClientEventHandler, loadClientConfig } from '@restpipe/client';
import { ServerEventHandler, loadServerConfig } from '@restpipe/server';
import {
  ConfigError,
  DURATION_BUCKETS_S,
  LABEL_CAPS,
  METRIC_MAPPINGS,
  METRICS_CONTENT_TYPE,
  OTHER_LABEL_VALUE,
  PrometheusStats,
  UNMAPPED_FAMILY,
  labelOf,
  nullStats,
  teeStats,
  type EventContext,
  type Stats,
} from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, httpClient, startPair, waitFor, type HttpAnswer } from './helpers/pipe.js';

afterEach(closeAll);

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const METRICS_SECTION = README.slice(README.indexOf('\n## Metrics'), README.indexOf('\n## ', README.indexOf('\n## Metrics') + 1));

const PROMTOOL = '/usr/bin/promtool';
const havePromtool = existsSync(PROMTOOL);
const onCi = Boolean(process.env.CI) && process.env.CI !== 'false';
if (!havePromtool && !onCi) {
  console.warn(`test/prometheus.test.ts: SKIPPING promtool checks: ${PROMTOOL} not found (install Debian's prometheus package: apt-get install prometheus)`);
}

// ---------------------------------------------------------------------------
// The text exposition format, read back (https://prometheus.io/docs/instrumenting/exposition_formats/).

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface ParsedFamily {
  type: string | undefined;
  help: string | undefined;
  samples: Sample[];
}

/** Parses the text format strictly: a line it does not understand throws. */
function parseExposition(text: string): Map<string, ParsedFamily> {
  const families = new Map<string, ParsedFamily>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) {
      f = { type: undefined, help: undefined, samples: [] };
      families.set(name, f);
    }
    return f;
  };
  expect(text.endsWith('\n'), 'the text ends with a newline').toBe(true);
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      const f = family(meta[2] as string);
      if (meta[1] === 'TYPE') f.type = meta[3];
      else f.help = (meta[3] as string).replace(/\\(\\|n)/g, (_m, c: string) => (c === 'n' ? '\n' : '\\'));
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!sample) throw new Error(`not a metrics line: ${JSON.stringify(line)}`);
    const name = sample[1] as string;
    const labels: Record<string, string> = {};
    const pairs = sample[2] ?? '';
    const pair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/y;
    let at = 0;
    while (at < pairs.length) {
      pair.lastIndex = at;
      const m = pair.exec(pairs);
      if (!m) throw new Error(`bad labels in ${JSON.stringify(line)}`);
      labels[m[1] as string] = (m[2] as string).replace(/\\(\\|n|")/g, (_m, c: string) => (c === 'n' ? '\n' : c));
      at = pair.lastIndex;
    }
    const raw = sample[3] as string;
    // Go's ParseFloat, as Prometheus reads values: NaN and Inf in any case (prom-client writes `Nan`).
    const value = /^nan$/i.test(raw) ? Number.NaN : /^[+-]?inf$/i.test(raw) ? (raw.startsWith('-') ? -1 : 1) * Number.POSITIVE_INFINITY : Number(raw);
    if (Number.isNaN(value) && !/^nan$/i.test(raw)) throw new Error(`bad value in ${JSON.stringify(line)}`);
    const base = families.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    family(base).samples.push({ name, labels, value });
  }
  return families;
}

/** The value of one sample: `name` with exactly `labels`; undefined when absent. */
function sampleValue(families: Map<string, ParsedFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  const base = families.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
  const want = JSON.stringify(Object.entries(labels).sort());
  return families.get(base)?.samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want)?.value;
}

/** The values of a family's one label, e.g. every `code` of restpipe_requests_handled_total. */
function labelValues(families: Map<string, ParsedFamily>, name: string, label: string): string[] {
  return [
    ...new Set(
      families
        .get(name)
        ?.samples.map((s) => s.labels[label])
        .filter((v) => v !== undefined),
    ),
  ] as string[];
}

function promtoolCheck(text: string): { status: number | null; output: string } {
  const run = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 20_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

async function scrape(http: ReturnType<typeof httpClient>, gateway: string | undefined): Promise<{ answer: HttpAnswer; families: Map<string, ParsedFamily> }> {
  const answer = await http('GET', `${gateway}/_restpipe/metrics`);
  expect(answer.status, answer.text).toBe(200);
  return { answer, families: parseExposition(answer.text) };
}

/** A statsd stand-in that keeps every call, to compare with what Prometheus shows. */
class RecordingStats implements Stats {
  readonly counters = new Map<string, number>();
  readonly gauges = new Map<string, number>();
  readonly timings = new Map<string, number[]>();
  closed = false;
  increment(name: string, value = 1): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + value);
  }
  gauge(name: string, value: number): void {
    this.gauges.set(name, value);
  }
  timing(name: string, ms: number): void {
    this.timings.set(name, [...(this.timings.get(name) ?? []), ms]);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

// ---------------------------------------------------------------------------
// The mapping, the README and the sources.

interface StatsdRow {
  name: string;
  type: string;
  node: string;
}

/** The rows of the README's statsd table, one per name (`frames.sent`, `frames.received` are two). */
function readmeStatsdNames(): StatsdRow[] {
  const rows: StatsdRow[] = [];
  for (const line of METRICS_SECTION.split('\n')) {
    const m = /^\|\s*(`[^|]+`)\s*\|\s*(c|g|ms)\s*\|\s*(client|server|both)\s*\|/.exec(line);
    if (!m) continue;
    for (const name of (m[1] as string).matchAll(/`([^`]+)`/g)) rows.push({ name: name[1] as string, type: m[2] as string, node: m[3] as string });
  }
  return rows;
}

/** The rows of the README's Prometheus families table. */
function readmeFamilies(): { family: string; type: string; labels: string; statsd: string; meaning: string }[] {
  const rows = [];
  for (const line of METRICS_SECTION.split('\n')) {
    const m = /^\|\s*`(restpipe_[a-z_]+)`\s*\|\s*([a-z]+)\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*(.+?)\s*\|\s*$/.exec(line);
    if (m) rows.push({ family: m[1] as string, type: m[2] as string, labels: m[3] as string, statsd: m[4] as string, meaning: m[5] as string });
  }
  return rows;
}

type StatsCall = 'increment' | 'gauge' | 'timing';

/**
 * Every metric name the nodes' sources report: literal names in stats calls,
 * with their kind, and the dotted names built in templates
 * (`handler.${method}.calls`, kind unknown), `${…}` replaced by a sample value.
 */
function namesReportedInSource(): { name: string; kind: StatsCall | undefined }[] {
  const found: { name: string; kind: StatsCall | undefined }[] = [];
  for (const pkg of ['shared', 'server', 'client']) {
    const dir = join(REPO_ROOT, pkg, 'src');
    for (const file of readdirSync(dir, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(join(dir, file), 'utf8');
      for (const m of text.matchAll(/stats\.(increment|gauge|timing)\(\s*'([^']+)'/g)) found.push({ kind: m[1] as StatsCall, name: m[2] as string });
      for (const m of text.matchAll(/`([a-z_]+(?:\.[a-z_]+)*\.\$\{[^}]+\}(?:\.[a-z_]+)*)`/g)) {
        found.push({ kind: undefined, name: (m[1] as string).replace(/\$\{[^}]*\}/, 'x1') });
      }
    }
  }
  return found;
}

const TYPE_OF_STATSD: Record<string, string> = { c: 'counter', g: 'gauge', ms: 'histogram' };

describe('the mapping', () => {
  it("answers with prom-client's content type of the text format (written out, so prom-client loads only with a scrape)", async () => {
    const { Registry } = await import('prom-client');
    expect(METRICS_CONTENT_TYPE).toBe(Registry.PROMETHEUS_CONTENT_TYPE);
  });

  it('gives every statsd name of the README a family of the same type and node', () => {
    const rows = readmeStatsdNames();
    expect(rows.length).toBeGreaterThan(25);
    for (const row of rows) {
      const mapping = METRIC_MAPPINGS.find((m) => m.statsd === row.name);
      expect(mapping, `${row.name} (README Metrics) has no Prometheus family in METRIC_MAPPINGS`).toBeDefined();
      expect(mapping?.type, row.name).toBe(TYPE_OF_STATSD[row.type]);
      expect(mapping?.nodes, row.name).toBe(row.node);
    }
    expect(
      METRIC_MAPPINGS.map((m) => m.statsd).filter((name) => !rows.some((r) => r.name === name)),
      'mapped but not in the README statsd table',
    ).toEqual([]);
  });

  it('is the README families table, row by row', () => {
    const expected = [...METRIC_MAPPINGS, UNMAPPED_FAMILY].map((m) => {
      const label = labelOf(m);
      return { family: m.family, type: m.type, labels: label ? `\`${label}\`` : '–', statsd: m.statsd ? `\`${m.statsd}\`` : '–', meaning: m.help };
    });
    expect(readmeFamilies().map((r) => ({ ...r, meaning: r.meaning.replaceAll('`', '') }))).toEqual(expected);
  });

  it('follows the naming rules: unique, snake case, counters in _total, histograms in seconds, capped labels', () => {
    const families = [...METRIC_MAPPINGS, UNMAPPED_FAMILY].map((m) => m.family);
    expect(new Set(families).size).toBe(families.length);
    for (const m of [...METRIC_MAPPINGS, UNMAPPED_FAMILY]) {
      expect(m.family).toMatch(/^restpipe_[a-z][a-z0-9_]*[a-z0-9]$/);
      expect(m.family.endsWith('_total'), m.family).toBe(m.type === 'counter');
      if (m.type === 'histogram') expect(m.family, m.family).toMatch(/_seconds$/);
      const label = labelOf(m);
      if (label !== undefined) expect(LABEL_CAPS[label], `${m.family}: a cap for ${label}`).toBeGreaterThan(0);
    }
    expect(DURATION_BUCKETS_S[0]).toBeLessThan(0.001);
    expect(DURATION_BUCKETS_S.at(-1)).toBeGreaterThanOrEqual(10);
    expect([...DURATION_BUCKETS_S].sort((a, b) => a - b)).toEqual(DURATION_BUCKETS_S);
  });

  it('maps every name the sources report on some node (none counts as unmapped)', async () => {
    const names = namesReportedInSource();
    expect(names.length).toBeGreaterThan(30);
    expect(names.filter((n) => n.kind === undefined).map((n) => n.name)).toEqual(
      expect.arrayContaining(['handler.x1.calls', 'requests.code.x1', 'gateway.status.x1']),
    );
    /** Whether `name`, reported as `kind`, lands in a family on `side`. */
    const mappedOn = async (side: 'client' | 'server', name: string, kind: StatsCall) => {
      const prom = new PrometheusStats({ side, processMetrics: false });
      if (kind === 'increment') prom.increment(name);
      else if (kind === 'gauge') prom.gauge(name, 1);
      else prom.timing(name, 1);
      return sampleValue(parseExposition(await prom.metrics()), 'restpipe_metrics_unmapped_total') === 0;
    };
    for (const { name, kind } of names) {
      let mapped = false;
      for (const k of kind === undefined ? (['increment', 'gauge', 'timing'] as const) : [kind]) {
        for (const side of ['client', 'server'] as const) mapped ||= await mappedOn(side, name, k);
      }
      expect(mapped, `${kind ?? 'a stats call'}('${name}') maps to no family`).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------
// The sink on its own.

describe('PrometheusStats', () => {
  it('keeps counters, gauges and histograms in seconds, by label', async () => {
    const prom = new PrometheusStats({ side: 'server', processMetrics: false });
    prom.increment('frames.sent');
    prom.increment('frames.sent', 2);
    prom.increment('bytes.sent', 1500);
    prom.increment('requests.code.0', 3);
    prom.increment('requests.code.251');
    prom.increment('handler.get_time.calls');
    prom.gauge('clients.connected', 4);
    prom.gauge('clients.connected', 3);
    prom.timing('handler.get_time.time', 0.3); // 300 µs
    prom.timing('handler.get_time.time', 1.5);
    prom.timing('gateway.time', 120_000); // above every bucket
    const f = parseExposition(await prom.metrics());
    expect(sampleValue(f, 'restpipe_frames_sent_total')).toBe(3);
    expect(sampleValue(f, 'restpipe_sent_bytes_total')).toBe(1500);
    expect(sampleValue(f, 'restpipe_requests_handled_total', { code: '0' })).toBe(3);
    expect(sampleValue(f, 'restpipe_requests_handled_total', { code: '251' })).toBe(1);
    expect(sampleValue(f, 'restpipe_handler_calls_total', { method: 'get_time' })).toBe(1);
    expect(sampleValue(f, 'restpipe_clients_connected')).toBe(3);
    expect(f.get('restpipe_handler_duration_seconds')?.type).toBe('histogram');
    const bucket = (le: string) => sampleValue(f, 'restpipe_handler_duration_seconds_bucket', { method: 'get_time', le });
    expect([bucket('0.00025'), bucket('0.0005'), bucket('0.001'), bucket('0.0025'), bucket('+Inf')]).toEqual([0, 1, 1, 2, 2]);
    expect(sampleValue(f, 'restpipe_handler_duration_seconds_sum', { method: 'get_time' })).toBeCloseTo(0.0018, 9);
    expect(sampleValue(f, 'restpipe_handler_duration_seconds_count', { method: 'get_time' })).toBe(2);
    expect(sampleValue(f, 'restpipe_gateway_request_duration_seconds_bucket', { le: '60' })).toBe(0);
    expect(sampleValue(f, 'restpipe_gateway_request_duration_seconds_bucket', { le: '+Inf' })).toBe(1);
    expect(sampleValue(f, 'restpipe_gateway_request_duration_seconds_sum')).toBe(120);
    // Families without a label show 0 from the start; the other node's families are absent.
    expect(sampleValue(f, 'restpipe_heartbeat_timeouts_total')).toBe(0);
    expect(sampleValue(f, 'restpipe_heartbeat_rtt_seconds_count')).toBe(0);
    expect(f.has('restpipe_connect_attempts_total')).toBe(false);
    expect(sampleValue(f, 'restpipe_metrics_unmapped_total')).toBe(0);
    for (const [name, family] of f) {
      expect(family.help, name).toBeTruthy();
      expect(family.type, name).toBeTruthy();
    }
  });

  it('counts names it does not map, and drops values that are not numbers, without throwing', async () => {
    const prom = new PrometheusStats({ side: 'client', processMetrics: false });
    prom.increment('no.such.counter');
    prom.increment('no.such.counter', 5);
    prom.gauge('frames.sent', 3); // a counter's name as a gauge
    prom.timing('connect.attempts', 1); // a counter's name as a timer
    prom.increment('clients.connected'); // the server's gauge, on a client
    prom.increment('frames.sent', Number.NaN);
    prom.increment('frames.sent', -1);
    prom.increment('frames.sent', Number.POSITIVE_INFINITY);
    prom.timing('gateway.time', Number.NaN);
    prom.timing('gateway.time', -5);
    prom.increment('frames.sent');
    const f = parseExposition(await prom.metrics());
    expect(sampleValue(f, 'restpipe_metrics_unmapped_total')).toBe(5);
    expect(sampleValue(f, 'restpipe_frames_sent_total')).toBe(1);
    expect(sampleValue(f, 'restpipe_gateway_request_duration_seconds_count')).toBe(0);
  });

  it('keeps each label to its cap, the rest under "other", and remembers a bounded number of names', async () => {
    const prom = new PrometheusStats({ side: 'server', processMetrics: false });
    const feed = (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const noun = `n${i}_${'x'.repeat(i % 50)}`;
        prom.increment(`handler.get_${noun}.calls`);
        prom.timing(`handler.get_${noun}.time`, 1);
        prom.increment(`requests.code.${1000 + i}`);
        prom.increment(`gateway.status.${noun}`);
      }
    };
    feed(0, 5000);
    prom.increment(`handler.get_${'y'.repeat(500)}.calls`);
    const text = await prom.metrics();
    const f = parseExposition(text);
    const methods = labelValues(f, 'restpipe_handler_calls_total', 'method');
    expect(methods).toHaveLength((LABEL_CAPS.method as number) + 1);
    expect(methods).toContain(OTHER_LABEL_VALUE);
    expect(sampleValue(f, 'restpipe_handler_calls_total', { method: OTHER_LABEL_VALUE })).toBe(5001 - (LABEL_CAPS.method as number));
    expect(labelValues(f, 'restpipe_handler_duration_seconds', 'method')).toHaveLength((LABEL_CAPS.method as number) + 1);
    expect(sampleValue(f, 'restpipe_handler_duration_seconds_count', { method: OTHER_LABEL_VALUE })).toBe(5000 - (LABEL_CAPS.method as number));
    expect(labelValues(f, 'restpipe_requests_handled_total', 'code')).toHaveLength((LABEL_CAPS.code as number) + 1);
    expect(labelValues(f, 'restpipe_gateway_responses_total', 'status')).toHaveLength((LABEL_CAPS.status as number) + 1);
    const total = f.get('restpipe_requests_handled_total')?.samples.reduce((sum, s) => sum + s.value, 0);
    expect(total, 'nothing is lost, only gathered').toBe(5000);
    expect(prom.cachedNames).toBeLessThanOrEqual(3 * 4096);
    // 5,000 more names add nothing but counts.
    feed(5000, 10_000);
    const later = await prom.metrics();
    expect(later.split('\n').length).toBe(text.split('\n').length);
    expect(prom.cachedNames).toBeLessThanOrEqual(3 * 4096);
    expect(sampleValue(parseExposition(later), 'restpipe_handler_calls_total', { method: OTHER_LABEL_VALUE })).toBe(10_001 - (LABEL_CAPS.method as number));
  });

  it('a label value over 200 characters is counted under "other" from the start', async () => {
    const prom = new PrometheusStats({ side: 'client', processMetrics: false });
    prom.increment(`handler.get_${'z'.repeat(300)}.calls`);
    const f = parseExposition(await prom.metrics());
    expect(labelValues(f, 'restpipe_handler_calls_total', 'method')).toEqual([OTHER_LABEL_VALUE]);
  });

  it('escapes label values', async () => {
    const prom = new PrometheusStats({ side: 'client', processMetrics: false });
    const odd = 'get_a"b\\c\nd';
    prom.increment(`handler.${odd}.calls`, 7);
    const text = await prom.metrics();
    expect(text).toContain('restpipe_handler_calls_total{method="get_a\\"b\\\\c\\nd"} 7\n');
    expect(sampleValue(parseExposition(text), 'restpipe_handler_calls_total', { method: odd })).toBe(7);
    if (havePromtool) expect(promtoolCheck(text)).toEqual({ status: 0, output: '' });
  });

  it('adds the process metrics once per process, under their standard names', async () => {
    const a = parseExposition(await new PrometheusStats({ side: 'client' }).metrics());
    const b = parseExposition(await new PrometheusStats({ side: 'server' }).metrics());
    for (const f of [a, b]) {
      expect(f.get('process_cpu_user_seconds_total')?.type).toBe('counter');
      expect(f.get('process_resident_memory_bytes')?.type).toBe('gauge');
      expect(f.get('nodejs_eventloop_lag_seconds')?.type).toBe('gauge');
      expect(f.get('nodejs_heap_size_used_bytes')?.type).toBe('gauge');
      expect(f.has('nodejs_active_handles_total')).toBe(false);
    }
    expect(sampleValue(a, 'process_start_time_seconds')).toBe(sampleValue(b, 'process_start_time_seconds'));
  });

  it('is cheap on the hot path: a named counter or timer costs well under a microsecond', () => {
    const prom = new PrometheusStats({ side: 'server', processMetrics: false });
    const n = 200_000;
    const started = performance.now();
    for (let i = 0; i < n; i++) {
      prom.increment('frames.sent');
      prom.increment('bytes.sent', 100);
      prom.increment('handler.get_time.calls');
      prom.timing('handler.get_time.time', i % 100);
    }
    const nsPerCall = ((performance.now() - started) * 1e6) / (4 * n);
    // About 10-30 ns here; a regex or label hashing per call would be 10 times that.
    expect(nsPerCall).toBeLessThan(1000);
  });
});

describe('teeStats', () => {
  it('sends every call to both sinks and closes both; a null side costs nothing', async () => {
    const a = new RecordingStats();
    const b = new RecordingStats();
    const tee = teeStats(a, b);
    tee.increment('frames.sent');
    tee.increment('bytes.sent', 10);
    tee.gauge('clients.connected', 2);
    tee.timing('gateway.time', 3);
    await tee.close();
    for (const sink of [a, b]) {
      expect(Object.fromEntries(sink.counters)).toEqual({ 'frames.sent': 1, 'bytes.sent': 10 });
      expect(Object.fromEntries(sink.gauges)).toEqual({ 'clients.connected': 2 });
      expect(Object.fromEntries(sink.timings)).toEqual({ 'gateway.time': [3] });
      expect(sink.closed).toBe(true);
    }
    expect(teeStats(a, nullStats)).toBe(a);
    expect(teeStats(nullStats, b)).toBe(b);
  });
});

// ---------------------------------------------------------------------------
// A real pair.

class MetricsServerHandler extends ServerEventHandler {
  get_time() {
    return { time: Date.now() };
  }
  get_boom() {
    throw new Error('boom');
  }
}

class MetricsClientHandler extends ClientEventHandler {
  get_time() {
    return { time: Date.now() };
  }
}

/** The statsd counter total of every name matching `prefix`, by the rest of the name. */
function countersUnder(stats: RecordingStats, prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of stats.counters) if (name.startsWith(prefix)) out[name.slice(prefix.length)] = value;
  return out;
}

/** A family's samples as `{ labelValue: value }`. */
function byLabel(families: Map<string, ParsedFamily>, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of families.get(name)?.samples ?? []) out[s.labels[label] as string] = s.value;
  return out;
}

describe('GET /_restpipe/metrics on a running pair', () => {
  it('shows the traffic on both gateways, as statsd got it, in text promtool accepts', async () => {
    const serverStatsd = new RecordingStats();
    const clientStatsd = new RecordingStats();
    const { server, client } = await startPair({
      server: { handler: new MetricsServerHandler(), stats: serverStatsd },
      client: { handler: new MetricsClientHandler(), stats: clientStatsd },
    });
    const http = httpClient();
    const toServer = client.gatewayAddress as string;
    const toClient = server.gatewayAddress as string;
    for (let i = 0; i < 5; i++) expect((await http('GET', `${toServer}/server/time`)).status).toBe(200);
    expect((await http('GET', `${toServer}/server/nothing_here`)).code).toBe(255);
    expect((await http('GET', `${toServer}/server/boom`)).code).toBe(251);
    for (let i = 0; i < 3; i++) expect((await http('GET', `${toClient}/client/agent-1/time`)).status).toBe(200);
    expect((await http('GET', `${toClient}/client/nobody/time`)).code).toBe(242);
    const fan = await http('GET', `${toClient}/clients/*/time`);
    expect(fan.json<Record<string, { code: number }>>()).toMatchObject({ 'agent-1': { code: 0 } });
    // The fan-out's reply reached the server before its answer went out; its
    // timing lands in onResponse, after the answer: wait for it.
    await waitFor(() => serverStatsd.timings.get('gateway.time')?.length === 5, 5000, 'the fan-out timing');

    const c = await scrape(http, toServer);
    const s = await scrape(http, toClient);
    expect(c.answer.headers['content-type']).toBe(METRICS_CONTENT_TYPE);

    // Client gateway: what it answered its callers.
    expect(byLabel(c.families, 'restpipe_gateway_responses_total', 'status')).toEqual({ 200: 5, 404: 1, 500: 1 });
    expect(sampleValue(c.families, 'restpipe_gateway_request_duration_seconds_count')).toBe(7);
    // Client as handler: three direct requests and one fan-out.
    expect(byLabel(c.families, 'restpipe_handler_calls_total', 'method')).toEqual({ get_time: 4 });
    expect(sampleValue(c.families, 'restpipe_handler_duration_seconds_count', { method: 'get_time' })).toBe(4);
    expect(byLabel(c.families, 'restpipe_requests_handled_total', 'code')).toEqual({ 0: 4 });
    expect(sampleValue(c.families, 'restpipe_connect_successes_total')).toBe(1);
    expect(sampleValue(c.families, 'restpipe_requests_sent_total')).toBe(7);
    expect(c.families.has('restpipe_clients_connected')).toBe(false);

    // Server as handler: five times, a missing handler (no method), a throw.
    expect(byLabel(s.families, 'restpipe_handler_calls_total', 'method')).toEqual({ get_time: 5, get_boom: 1 });
    expect(byLabel(s.families, 'restpipe_requests_handled_total', 'code')).toEqual({ 0: 5, 251: 1, 255: 1 });
    expect(sampleValue(s.families, 'restpipe_requests_received_total')).toBe(7);
    // Server gateway: three direct, one unknown client, one fan-out.
    expect(byLabel(s.families, 'restpipe_gateway_responses_total', 'status')).toEqual({ 200: 4, 404: 1 });
    expect(sampleValue(s.families, 'restpipe_gateway_request_duration_seconds_count')).toBe(5);
    expect(sampleValue(s.families, 'restpipe_gateway_fanout_requests_total')).toBe(1);
    expect(sampleValue(s.families, 'restpipe_gateway_fanout_duration_seconds_count')).toBe(1);
    expect(sampleValue(s.families, 'restpipe_requests_sent_total')).toBe(4);
    expect(sampleValue(s.families, 'restpipe_clients_connected')).toBe(1);
    expect(sampleValue(s.families, 'restpipe_connections_added_total')).toBe(1);
    expect(sampleValue(s.families, 'restpipe_frames_received_total')).toBeGreaterThanOrEqual(8);
    expect(sampleValue(s.families, 'restpipe_received_bytes_total')).toBeGreaterThan(0);

    // The same measurements statsd got.
    for (const [families, statsd] of [
      [c.families, clientStatsd],
      [s.families, serverStatsd],
    ] as const) {
      expect(byLabel(families, 'restpipe_gateway_responses_total', 'status')).toEqual(countersUnder(statsd, 'gateway.status.'));
      expect(byLabel(families, 'restpipe_requests_handled_total', 'code')).toEqual(countersUnder(statsd, 'requests.code.'));
      const calls = Object.fromEntries(Object.entries(countersUnder(statsd, 'handler.')).map(([k, v]) => [k.replace(/\.calls$/, ''), v]));
      expect(byLabel(families, 'restpipe_handler_calls_total', 'method')).toEqual(calls);
      const gatewayMs = statsd.timings.get('gateway.time') ?? [];
      expect(sampleValue(families, 'restpipe_gateway_request_duration_seconds_sum')).toBeCloseTo(gatewayMs.reduce((a, b) => a + b, 0) / 1000, 9);
      expect(sampleValue(families, 'restpipe_metrics_unmapped_total')).toBe(0);
      expect(families.get('process_cpu_user_seconds_total')?.type).toBe('counter');
    }

    // Scrapes are not counted as gateway answers, and do not change the counters.
    const again = await scrape(http, toServer);
    expect(byLabel(again.families, 'restpipe_gateway_responses_total', 'status')).toEqual({ 200: 5, 404: 1, 500: 1 });

    if (havePromtool) {
      for (const text of [c.answer.text, s.answer.text]) expect(promtoolCheck(text)).toEqual({ status: 0, output: '' });
    }
  });

  it.runIf(!havePromtool && onCi)('has promtool on CI', () => {
    throw new Error(`${PROMTOOL} not found, and CI is set: .ci/run must install Debian's prometheus package`);
  });

  it('keeps label sets capped under 5,000 requests with distinct nouns and codes', async () => {
    class Hostile extends ServerEventHandler {
      fallback(ctx: EventContext) {
        return ['application/json', 1000 + Number(/\d+/.exec(ctx.noun)?.[0]), '{}'] as const;
      }
    }
    const { server, client } = await startPair({ server: { handler: new Hostile() } });
    const http = httpClient(32);
    const n = 5000;
    let next = 0;
    const worker = async () => {
      while (next < n) {
        const i = next++;
        const answer = await http('GET', `${client.gatewayAddress}/server/h${i}_${'q'.repeat(i % 40)}/x${i}`);
        expect(answer.code).toBe(1000 + i);
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    const onClient = (await scrape(http, client.gatewayAddress)).families;
    expect(byLabel(onClient, 'restpipe_gateway_responses_total', 'status')).toEqual({ 200: n });
    const onServer = (await scrape(http, server.gatewayAddress)).families;
    // Every noun reached the one fallback method; the codes were all distinct.
    expect(byLabel(onServer, 'restpipe_handler_calls_total', 'method')).toEqual({ fallback: n });
    const codes = byLabel(onServer, 'restpipe_requests_handled_total', 'code');
    expect(Object.keys(codes)).toHaveLength((LABEL_CAPS.code as number) + 1);
    expect(codes[OTHER_LABEL_VALUE]).toBe(n - (LABEL_CAPS.code as number));
    expect(Object.values(codes).reduce((a, b) => a + b, 0)).toBe(n);
  }, 90_000);

  it('answers 404 on both gateways with RP_PROMETHEUS=0, while statsd still gets everything', async () => {
    const serverStatsd = new RecordingStats();
    const { server, client } = await startPair({
      server: { env: { RP_PROMETHEUS: '0' }, stats: serverStatsd },
      client: { env: { RP_PROMETHEUS: '0' } },
    });
    const http = httpClient();
    expect((await http('GET', `${client.gatewayAddress}/server/time`)).status).toBe(200);
    for (const gateway of [client.gatewayAddress, server.gatewayAddress]) {
      const answer = await http('GET', `${gateway}/_restpipe/metrics`);
      expect(answer.status).toBe(404);
      expect(answer.code).toBe(255);
      expect(answer.json()).toMatchObject({ error: { code: 'RP_NO_ROUTE' } });
    }
    expect(serverStatsd.counters.get('handler.get_time.calls')).toBe(1);
    expect((server.status().counters as Record<string, number>)['handler.get_time.calls']).toBe(1);
  });
});

describe('RP_PROMETHEUS', () => {
  it('is on by default, 0 turns it off, and anything else is refused naming the variable', async () => {
    expect((await loadServerConfig({})).prometheus).toBe('1');
    expect((await loadClientConfig({ RP_PROMETHEUS: '0' })).prometheus).toBe('0');
    const err = await loadClientConfig({ RP_PROMETHEUS: 'maybe' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('RP_PROMETHEUS="maybe"');
  });
});
