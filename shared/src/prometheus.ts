/**
 * The Prometheus sink: the same measurements as statsd, as metric families
 * with labels, scraped from `GET /_restpipe/metrics` on the node's gateway.
 *
 * One table (`METRIC_MAPPINGS`) maps each dotted statsd name to a family:
 * `requests.code.<code>` → `restpipe_requests_handled_total{code}`, where
 * the `<code>` part of the name becomes the `code` label. The README's
 * Metrics section lists the same families; a test keeps both in step.
 *
 * The hot path (one `increment` per frame, a few per request) costs a Map
 * lookup and an addition: each name is resolved once, on first sight, to a
 * cell that holds its value; the text is rendered from the cells only when
 * scraped. (prom-client's own labelled counters and histograms hash their
 * labels on every call, about 0.3 µs and 1.7 µs here.) prom-client supplies
 * the standard process metrics (`process_*`, `nodejs_*`).
 *
 * Label sets are bounded: each label keeps at most `LABEL_CAPS[label]`
 * distinct values, and any later one is counted under `other`, so no input
 * from the network (a handler's own codes, many nouns) grows a scrape
 * without limit. A name no family maps is counted in
 * `restpipe_metrics_unmapped_total`; nothing here throws.
 */
import { createRequire } from 'node:module';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { Stats } from './stats.js';

/** Where the gateway answers scrapes. */
export const METRICS_PATH = '/_restpipe/metrics';

/** The content type of the text exposition format, version 0.0.4 (prom-client's `Registry.PROMETHEUS_CONTENT_TYPE`). */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Upper bounds of every duration histogram, in seconds: 100 µs to a minute. */
export const DURATION_BUCKETS_S: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Most distinct values a label keeps; later values are counted under `OTHER_LABEL_VALUE`. */
export const LABEL_CAPS: Readonly<Record<string, number>> = { method: 100, code: 20, status: 20 };

/** The label value that gathers everything past a label's cap (no handler method, code or status is named so). */
export const OTHER_LABEL_VALUE = 'other';

/** A label value longer than this is counted under `other` too. */
const MAX_LABEL_VALUE_LENGTH = 200;

/** Names resolved once and kept, per kind of call; past this (only hostile input gets there) a new name is resolved on every call. */
const MAX_CACHED_NAMES = 4096;

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** One statsd name and the Prometheus family it becomes. */
export interface MetricMapping {
  /** The statsd name as the README writes it; a `<label>` part becomes that label's value. */
  readonly statsd: string;
  /** Counters from `increment`, gauges from `gauge`, histograms (seconds) from `timing`. */
  readonly type: MetricType;
  readonly family: string;
  /** Which nodes report it; a node exposes only its own families. */
  readonly nodes: 'client' | 'server' | 'both';
  /** The `# HELP` text; the README's meaning column says the same. */
  readonly help: string;
}

/** Every statsd name the nodes report, in README order. */
// biome-ignore format: one line per name
export const METRIC_MAPPINGS: readonly MetricMapping[] = [
  { statsd: 'connect.attempts', type: 'counter', family: 'restpipe_connect_attempts_total', nodes: 'client', help: 'connection attempts (TCP + TLS + hello)' },
  { statsd: 'connect.successes', type: 'counter', family: 'restpipe_connect_successes_total', nodes: 'client', help: 'attempts that brought the pipe up' },
  { statsd: 'connect.failures', type: 'counter', family: 'restpipe_connect_failures_total', nodes: 'client', help: 'attempts that failed (refused, TLS or identity error, timeout)' },
  { statsd: 'connect.broken', type: 'counter', family: 'restpipe_connect_broken_total', nodes: 'client', help: 'pipes that were up and dropped (not counted on shutdown)' },
  { statsd: 'connect.resumed', type: 'counter', family: 'restpipe_connect_resumed_total', nodes: 'client', help: 'attempts that resumed the last TLS session (an abbreviated handshake)' },
  { statsd: 'connect.revoked', type: 'counter', family: 'restpipe_connect_revoked_total', nodes: 'client', help: "pipes closed because a reload no longer trusts the server's certificate" },
  { statsd: 'connections.added', type: 'counter', family: 'restpipe_connections_added_total', nodes: 'server', help: 'clients connected (TLS and identity accepted)' },
  { statsd: 'connections.removed', type: 'counter', family: 'restpipe_connections_removed_total', nodes: 'server', help: 'client connections closed, including one replaced by a newer connection with the same name' },
  { statsd: 'connections.refused', type: 'counter', family: 'restpipe_connections_refused_total', nodes: 'server', help: 'connections refused: TLS handshake failed or timed out, or a certificate revoked, expired, not yet valid, from another CA, without CN or without client usage' },
  { statsd: 'connections.queue_timeouts', type: 'counter', family: 'restpipe_connections_queue_timeouts_total', nodes: 'server', help: 'connections closed unhandshaken after waiting RP_SERVER_HANDSHAKE_QUEUE_S for a handshake slot (a reconnect storm); their clients retry' },
  { statsd: 'connections.resumed', type: 'counter', family: 'restpipe_connections_resumed_total', nodes: 'server', help: 'clients connected on a resumed TLS session' },
  { statsd: 'connections.revoked', type: 'counter', family: 'restpipe_connections_revoked_total', nodes: 'server', help: 'live client connections closed because a reload no longer trusts their certificate (revoked, or its CA dropped)' },
  { statsd: 'clients.connected', type: 'gauge', family: 'restpipe_clients_connected', nodes: 'server', help: 'clients connected now' },
  { statsd: 'frames.sent', type: 'counter', family: 'restpipe_frames_sent_total', nodes: 'both', help: 'frames written to the pipe, heartbeats included' },
  { statsd: 'frames.received', type: 'counter', family: 'restpipe_frames_received_total', nodes: 'both', help: 'frames read from the pipe, heartbeats included' },
  { statsd: 'bytes.sent', type: 'counter', family: 'restpipe_sent_bytes_total', nodes: 'both', help: 'frame bytes written to the TLS socket' },
  { statsd: 'bytes.received', type: 'counter', family: 'restpipe_received_bytes_total', nodes: 'both', help: 'frame bytes read from the TLS socket' },
  { statsd: 'frames.bad', type: 'counter', family: 'restpipe_frames_bad_total', nodes: 'both', help: 'frames that did not decode (too large, malformed, unknown); the connection is closed' },
  { statsd: 'requests.sent', type: 'counter', family: 'restpipe_requests_sent_total', nodes: 'both', help: 'requests sent to the peer (a fan-out counts one per client; notifications not included)' },
  { statsd: 'requests.received', type: 'counter', family: 'restpipe_requests_received_total', nodes: 'both', help: 'requests and notifications received from the peer' },
  { statsd: 'requests.code.<code>', type: 'counter', family: 'restpipe_requests_handled_total', nodes: 'both', help: 'requests handled here, by event code (0, 251, 255, ...)' },
  { statsd: 'requests.deadline_exceeded', type: 'counter', family: 'restpipe_requests_deadline_exceeded_total', nodes: 'both', help: 'requests sent that got no reply within their deadline' },
  { statsd: 'replies.unmatched', type: 'counter', family: 'restpipe_replies_unmatched_total', nodes: 'both', help: 'replies for requests no longer pending (late after a deadline or cancel)' },
  { statsd: 'replies.late', type: 'counter', family: 'restpipe_replies_late_total', nodes: 'both', help: 'results dropped because the request deadline had passed' },
  { statsd: 'requests.overloaded', type: 'counter', family: 'restpipe_requests_overloaded_total', nodes: 'both', help: "requests refused for RP_MAX_IN_FLIGHT: by this side's gateway before sending (503 / 247, Retry-After), or by this side as the handler's (247 to the peer)" },
  { statsd: 'chunks.unmatched', type: 'counter', family: 'restpipe_chunks_unmatched_total', nodes: 'both', help: 'body chunks for streams no longer open (late after a cancel)' },
  { statsd: 'notifications.sent', type: 'counter', family: 'restpipe_notifications_sent_total', nodes: 'both', help: 'fire-and-forget events sent (Prefer: respond-async)' },
  { statsd: 'notifications.failed', type: 'counter', family: 'restpipe_notifications_failed_total', nodes: 'both', help: 'notifications handled here whose handler answered a non-zero code' },
  { statsd: 'handler.<method>.calls', type: 'counter', family: 'restpipe_handler_calls_total', nodes: 'both', help: 'calls of each handler method' },
  { statsd: 'handler.<method>.time', type: 'histogram', family: 'restpipe_handler_duration_seconds', nodes: 'both', help: "time from receiving the request to the handler's answer" },
  { statsd: 'gateway.time', type: 'histogram', family: 'restpipe_gateway_request_duration_seconds', nodes: 'both', help: "time from the HTTP request to the gateway's answer, waiting for the pipe included" },
  { statsd: 'gateway.status.<status>', type: 'counter', family: 'restpipe_gateway_responses_total', nodes: 'both', help: 'gateway answers by HTTP status' },
  { statsd: 'gateway.caller_gone', type: 'counter', family: 'restpipe_gateway_callers_gone_total', nodes: 'both', help: 'HTTP callers that went away before the answer' },
  { statsd: 'gateway.fanout.requests', type: 'counter', family: 'restpipe_gateway_fanout_requests_total', nodes: 'server', help: 'fan-out requests (/clients/<selector>/<noun>)' },
  { statsd: 'gateway.fanout.time', type: 'histogram', family: 'restpipe_gateway_fanout_duration_seconds', nodes: 'server', help: "time to collect every client's answer for a fan-out request" },
  { statsd: 'heartbeat.rtt', type: 'histogram', family: 'restpipe_heartbeat_rtt_seconds', nodes: 'both', help: 'ping to pong round trip, measured by the side that pinged' },
  { statsd: 'heartbeat.timeouts', type: 'counter', family: 'restpipe_heartbeat_timeouts_total', nodes: 'both', help: 'links dropped because the peer was silent for RP_CLIENT_HEARTBEAT_TIMEOUT_S' },
  { statsd: 'identity.reloads', type: 'counter', family: 'restpipe_identity_reloads_total', nodes: 'both', help: 'reloads that put a new key, certificate, CA bundle or CRL in use (SIGHUP, folder change, reloadIdentity())' },
  { statsd: 'identity.reload_failed', type: 'counter', family: 'restpipe_identity_reload_failures_total', nodes: 'both', help: 'reloads that failed: the node kept the identity it had' },
  { statsd: 'identity.expires_in_s', type: 'gauge', family: 'restpipe_identity_expires_in_seconds', nodes: 'both', help: "seconds until the node's own certificate expires (sent at start, hourly and on reload)" },
  { statsd: 'identity.ca_expires_in_s', type: 'gauge', family: 'restpipe_identity_ca_expires_in_seconds', nodes: 'both', help: 'seconds until the first CA the node trusts expires' },
  { statsd: 'cluster.presence.sent', type: 'counter', family: 'restpipe_cluster_presence_sent_total', nodes: 'server', help: 'presence messages published (hello, heartbeats, connected, disconnected)' },
  { statsd: 'cluster.presence.received', type: 'counter', family: 'restpipe_cluster_presence_received_total', nodes: 'server', help: "other instances' presence messages received" },
  { statsd: 'cluster.presence.malformed', type: 'counter', family: 'restpipe_cluster_presence_malformed_total', nodes: 'server', help: 'presence messages or snapshot records dropped as malformed (bad JSON, types, sizes)' },
  { statsd: 'cluster.presence.publish_failures', type: 'counter', family: 'restpipe_cluster_presence_publish_failures_total', nodes: 'server', help: 'presence messages that could not be published (NATS down)' },
  { statsd: 'cluster.presence.resyncs', type: 'counter', family: 'restpipe_cluster_presence_resyncs_total', nodes: 'server', help: "instances' client lists read again (a gap, a new or restarted instance, NATS back)" },
  { statsd: 'cluster.presence.resync_failures', type: 'counter', family: 'restpipe_cluster_presence_resync_failures_total', nodes: 'server', help: 'client list reads that failed (retried on the next heartbeat)' },
  { statsd: 'cluster.presence.snapshot_pages_served', type: 'counter', family: 'restpipe_cluster_presence_snapshot_pages_served_total', nodes: 'server', help: "pages of this instance's client list sent to other instances" },
  { statsd: 'cluster.presence.instances_up', type: 'counter', family: 'restpipe_cluster_presence_instances_up_total', nodes: 'server', help: 'other instances that joined (or came back)' },
  { statsd: 'cluster.presence.instances_expired', type: 'counter', family: 'restpipe_cluster_presence_instances_expired_total', nodes: 'server', help: 'other instances that left: silent for 3.5 s' },
  { statsd: 'cluster.presence.replaced', type: 'counter', family: 'restpipe_cluster_presence_replaced_total', nodes: 'server', help: 'local connections closed because a newer one of the same name is on another instance' },
  { statsd: 'cluster.presence.stale_disconnects', type: 'counter', family: 'restpipe_cluster_presence_stale_disconnects_total', nodes: 'server', help: 'disconnects ignored because a newer connection of that name is known' },
  { statsd: 'cluster.presence.instances', type: 'gauge', family: 'restpipe_cluster_presence_instances', nodes: 'server', help: 'other instances seen now' },
  { statsd: 'cluster.presence.remote_clients', type: 'gauge', family: 'restpipe_cluster_presence_remote_clients', nodes: 'server', help: 'clients connected to the other instances now' },
  { statsd: 'cluster.links.opened', type: 'counter', family: 'restpipe_cluster_links_opened_total', nodes: 'server', help: 'links this instance opened to other instances' },
  { statsd: 'cluster.links.accepted', type: 'counter', family: 'restpipe_cluster_links_accepted_total', nodes: 'server', help: 'links other instances opened to this one' },
  { statsd: 'cluster.links.refused', type: 'counter', family: 'restpipe_cluster_links_refused_total', nodes: 'server', help: 'link opens refused (malformed, or this instance is closing)' },
  { statsd: 'cluster.links.open_failed', type: 'counter', family: 'restpipe_cluster_links_open_failed_total', nodes: 'server', help: 'link opens that failed: no instance answered, or NATS is down' },
  { statsd: 'cluster.links.closed', type: 'counter', family: 'restpipe_cluster_links_closed_total', nodes: 'server', help: 'links closed, either way' },
  { statsd: 'cluster.links.sequence_gaps', type: 'counter', family: 'restpipe_cluster_links_sequence_gaps_total', nodes: 'server', help: 'links closed because a message was missing or repeated' },
  { statsd: 'cluster.links.bad_messages', type: 'counter', family: 'restpipe_cluster_links_bad_messages_total', nodes: 'server', help: 'link messages without a valid sequence' },
  { statsd: 'cluster.links.late_messages', type: 'counter', family: 'restpipe_cluster_links_late_messages_total', nodes: 'server', help: 'messages for links already closed (about one per closed link is normal)' },
  { statsd: 'cluster.link.bytes.sent', type: 'counter', family: 'restpipe_cluster_link_bytes_sent_total', nodes: 'server', help: 'frame bytes sent on links' },
  { statsd: 'cluster.link.bytes.received', type: 'counter', family: 'restpipe_cluster_link_bytes_received_total', nodes: 'server', help: 'frame bytes received on links' },
  { statsd: 'cluster.link.frames.bad', type: 'counter', family: 'restpipe_cluster_link_frames_bad_total', nodes: 'server', help: 'frames on links that did not decode; the link is closed' },
  { statsd: 'cluster.link.heartbeat.rtt', type: 'histogram', family: 'restpipe_cluster_link_heartbeat_rtt_seconds', nodes: 'server', help: 'ping to pong round trip on links' },
  { statsd: 'cluster.link.heartbeat.timeouts', type: 'counter', family: 'restpipe_cluster_link_heartbeat_timeouts_total', nodes: 'server', help: 'links dropped because the other instance was silent for 3 s' },
  { statsd: 'cluster.link.requests.sent', type: 'counter', family: 'restpipe_cluster_link_requests_sent_total', nodes: 'server', help: 'requests sent to clients on other instances' },
  { statsd: 'cluster.link.requests.received', type: 'counter', family: 'restpipe_cluster_link_requests_received_total', nodes: 'server', help: "other instances' requests received for clients here" },
  { statsd: 'cluster.link.requests.deadline_exceeded', type: 'counter', family: 'restpipe_cluster_link_requests_deadline_exceeded_total', nodes: 'server', help: 'requests sent over links that got no reply within their deadline' },
  { statsd: 'cluster.link.requests.overloaded', type: 'counter', family: 'restpipe_cluster_link_requests_overloaded_total', nodes: 'server', help: 'requests refused on links for RP_MAX_IN_FLIGHT' },
  { statsd: 'cluster.forward.requests', type: 'counter', family: 'restpipe_cluster_forward_requests_total', nodes: 'server', help: 'requests from other instances forwarded to a client here' },
  { statsd: 'cluster.forward.notifications', type: 'counter', family: 'restpipe_cluster_forward_notifications_total', nodes: 'server', help: 'notifications from other instances forwarded to a client here' },
  { statsd: 'cluster.forward.unknown_client', type: 'counter', family: 'restpipe_cluster_forward_unknown_client_total', nodes: 'server', help: 'forwarded requests for a client no longer here (answered 242)' },
];

/** The family counting names that `METRIC_MAPPINGS` does not map. */
export const UNMAPPED_FAMILY: MetricMapping = {
  statsd: '',
  type: 'counter',
  family: 'restpipe_metrics_unmapped_total',
  nodes: 'both',
  help: 'stats calls whose name no family maps (a bug: please report it)',
};

/** The label a statsd pattern fills (`method` for `handler.<method>.calls`), if any. */
export function labelOf(mapping: MetricMapping): string | undefined {
  return /<([a-z_]+)>/.exec(mapping.statsd)?.[1];
}

/** One series: a counter's total or a gauge's value. */
interface ValueCell {
  value: number;
}

/** One histogram series: observations per bucket (the last is above every bound), their sum and count. */
interface HistogramCell {
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

type Cell = ValueCell | HistogramCell;

/** A family's series, by label value (`''` for a family without a label), capped. */
class Family<C extends Cell> {
  readonly label: string | undefined;
  private readonly cap: number;
  readonly cells = new Map<string, C>();

  constructor(
    readonly mapping: MetricMapping,
    private readonly newCell: () => C,
  ) {
    this.label = labelOf(mapping);
    this.cap = this.label === undefined ? 1 : (LABEL_CAPS[this.label] ?? 20);
    // A family without a label shows 0 from the first scrape.
    if (this.label === undefined) this.cells.set('', newCell());
  }

  /** The series for a label value; past the cap, the `other` series. */
  cell(labelValue: string): C {
    let cell = this.cells.get(labelValue);
    if (cell !== undefined) return cell;
    const key = this.cells.size < this.cap && labelValue.length <= MAX_LABEL_VALUE_LENGTH ? labelValue : OTHER_LABEL_VALUE;
    cell = this.cells.get(key);
    if (cell === undefined) {
      cell = this.newCell();
      this.cells.set(key, cell);
    }
    return cell;
  }
}

/** A statsd pattern as a matcher: `handler.<method>.calls` → /^handler\.(.+)\.calls$/. */
function patternOf(statsd: string): RegExp {
  const source = statsd
    .split(/<[a-z_]+>/)
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('(.+)');
  return new RegExp(`^${source}$`, 's');
}

interface Resolver<C extends Cell> {
  readonly exact: Map<string, Family<C>>;
  readonly patterns: { readonly pattern: RegExp; readonly family: Family<C> }[];
  /** Every name seen (up to `MAX_CACHED_NAMES`) and its series; null for a name no family maps. */
  readonly cache: Map<string, C | null>;
}

let processRegistry: Registry | undefined;

/**
 * prom-client's standard process metrics, made once per process (they watch
 * the event loop and the GC): every node in the process shows the same.
 */
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    // Loaded here, with the first scrape: a node that never serves /metrics never loads prom-client.
    const { Registry, collectDefaultMetrics } = createRequire(import.meta.url)('prom-client') as typeof import('prom-client');
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
    // Gauges whose names end in _total, which `promtool check metrics` refuses;
    // they are the sums of nodejs_active_handles, _requests and _resources.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      processRegistry.removeSingleMetric(name);
    }
  }
  return processRegistry;
}

export interface PrometheusStatsOptions {
  /** The node: it exposes the families of `METRIC_MAPPINGS` for this side and `both`. */
  side: 'client' | 'server';
  /** Add prom-client's process metrics (`process_*`, `nodejs_*`) to every scrape. @default true */
  processMetrics?: boolean;
}

/** A `Stats` sink that keeps every measurement as Prometheus families for `metrics()`. */
export class PrometheusStats implements Stats {
  private readonly families: Family<Cell>[] = [];
  private readonly counters: Resolver<ValueCell>;
  private readonly gauges: Resolver<ValueCell>;
  private readonly histograms: Resolver<HistogramCell>;
  private readonly unmapped: ValueCell;
  private readonly withProcessMetrics: boolean;

  constructor(opts: PrometheusStatsOptions) {
    this.withProcessMetrics = opts.processMetrics ?? true;
    const value = (): ValueCell => ({ value: 0 });
    const histogram = (): HistogramCell => ({ buckets: new Float64Array(DURATION_BUCKETS_S.length + 1), sum: 0, count: 0 });
    this.counters = this.resolver('counter', value, opts.side);
    this.gauges = this.resolver('gauge', value, opts.side);
    this.histograms = this.resolver('histogram', histogram, opts.side);
    const unmapped = new Family(UNMAPPED_FAMILY, value);
    this.families.push(unmapped);
    this.unmapped = unmapped.cell('');
  }

  private resolver<C extends Cell>(type: MetricType, newCell: () => C, side: 'client' | 'server'): Resolver<C> {
    const resolver: Resolver<C> = { exact: new Map(), patterns: [], cache: new Map() };
    for (const mapping of METRIC_MAPPINGS) {
      if (mapping.type !== type || (mapping.nodes !== side && mapping.nodes !== 'both')) continue;
      const family = new Family(mapping, newCell);
      this.families.push(family);
      if (family.label === undefined) resolver.exact.set(mapping.statsd, family);
      else resolver.patterns.push({ pattern: patternOf(mapping.statsd), family });
    }
    return resolver;
  }

  /** The series a name lands in (null when no family maps it), remembered up to `MAX_CACHED_NAMES` names. */
  private resolve<C extends Cell>(resolver: Resolver<C>, name: string): C | null {
    let cell: C | null = resolver.exact.get(name)?.cell('') ?? null;
    if (cell === null) {
      for (const { pattern, family } of resolver.patterns) {
        const m = pattern.exec(name);
        if (m) {
          cell = family.cell(m[1] as string);
          break;
        }
      }
    }
    if (resolver.cache.size < MAX_CACHED_NAMES) resolver.cache.set(name, cell);
    return cell;
  }

  increment(name: string, value = 1): void {
    let cell = this.counters.cache.get(name);
    if (cell === undefined) cell = this.resolve(this.counters, name);
    if (cell === null) this.unmapped.value += 1;
    else if (value >= 0 && value < Number.POSITIVE_INFINITY) cell.value += value;
  }

  gauge(name: string, value: number): void {
    let cell = this.gauges.cache.get(name);
    if (cell === undefined) cell = this.resolve(this.gauges, name);
    if (cell === null) this.unmapped.value += 1;
    else if (Number.isFinite(value)) cell.value = value;
  }

  timing(name: string, ms: number): void {
    let cell = this.histograms.cache.get(name);
    if (cell === undefined) cell = this.resolve(this.histograms, name);
    if (cell === null) {
      this.unmapped.value += 1;
      return;
    }
    if (!(ms >= 0 && ms < Number.POSITIVE_INFINITY)) return;
    const seconds = ms / 1000;
    let i = 0;
    while (i < DURATION_BUCKETS_S.length && seconds > (DURATION_BUCKETS_S[i] as number)) i++;
    (cell.buckets[i] as number)++;
    cell.sum += seconds;
    cell.count++;
  }

  /** Nothing to release: the values stay readable for scrapes while the node drains. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Distinct names resolved and remembered so far (bounded by `MAX_CACHED_NAMES` per kind of call). */
  get cachedNames(): number {
    return this.counters.cache.size + this.gauges.cache.size + this.histograms.cache.size;
  }

  /** Every family in the text exposition format, then the process metrics. */
  async metrics(): Promise<string> {
    const text = this.families.map(renderFamily).join('');
    return this.withProcessMetrics ? text + (await processMetrics().metrics()) : text;
  }
}

/** A family's `# HELP`, `# TYPE` and sample lines. */
function renderFamily(family: Family<Cell>): string {
  const { mapping, label } = family;
  const lines = [`# HELP ${mapping.family} ${escapeHelp(mapping.help)}`, `# TYPE ${mapping.family} ${mapping.type}`];
  for (const [labelValue, cell] of family.cells) {
    const pair = label === undefined ? '' : `${label}="${escapeLabelValue(labelValue)}"`;
    if ('buckets' in cell) {
      let cumulative = 0;
      for (let i = 0; i <= DURATION_BUCKETS_S.length; i++) {
        cumulative += cell.buckets[i] as number;
        const le = i < DURATION_BUCKETS_S.length ? String(DURATION_BUCKETS_S[i]) : '+Inf';
        lines.push(`${mapping.family}_bucket{${pair === '' ? '' : `${pair},`}le="${le}"} ${cumulative}`);
      }
      const braces = pair === '' ? '' : `{${pair}}`;
      lines.push(`${mapping.family}_sum${braces} ${cell.sum}`, `${mapping.family}_count${braces} ${cell.count}`);
    } else {
      lines.push(`${mapping.family}${pair === '' ? '' : `{${pair}}`} ${cell.value}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The exposition format's escapes: backslash and newline in help text, and the double quote in label values. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** Registers `GET /_restpipe/metrics`, answering `stats.metrics()` in the text format. */
export function registerMetricsRoute(app: FastifyInstance, stats: PrometheusStats): void {
  app.get(METRICS_PATH, async (_request, reply) => reply.type(METRICS_CONTENT_TYPE).send(await stats.metrics()));
}
