/**
 * statsd through hot-shots. The host is resolved once at start, so no metric
 * ever waits on DNS; counters are summed in memory and sent once a second,
 * so a busy pipe costs a few datagrams a second, not one per frame; send
 * errors are swallowed (logged at debug), so metrics never break the pipe.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { StatsdConfig } from './config.js';
import { nullStats, type Stats } from './stats.js';

export interface StatsdOptions {
  /** How often summed counters are sent. @default 1000 */
  flushIntervalMs?: number;
}

/** How often summed counters are sent, unless `StatsdOptions` says otherwise. */
export const STATSD_FLUSH_INTERVAL_MS = 1000;

/**
 * A `Stats` sink sending plain statsd datagrams (`name:value|c`, `|g`,
 * `|ms`) over UDP to `config.host:config.port`, every name prefixed with
 * `config.prefix`. Resolves to `nullStats` (and warns) when the host does
 * not resolve.
 */
export async function createStatsd(config: StatsdConfig, log: Logger, opts: StatsdOptions = {}): Promise<Stats> {
  let host = config.host;
  if (isIP(host) === 0) {
    try {
      // IPv4 first: `localhost` is ::1 first on many systems, while statsd
      // daemons usually listen on IPv4 only, and UDP would drop silently.
      host = (await lookup(host, { order: 'ipv4first' })).address;
    } catch (err) {
      log.warn({ err, host }, 'statsd host does not resolve; metrics are off');
      return nullStats;
    }
  }
  // Loaded here, not with the module: a node with statsd off never loads hot-shots.
  const { default: StatsD } = await import('hot-shots');
  const client = new StatsD({
    host,
    port: config.port,
    prefix: config.prefix,
    protocol: 'udp',
    udpSocketOptions: { type: isIP(host) === 6 ? 'udp6' : 'udp4' },
    // Plain statsd: no Datadog tags or telemetry, whatever DD_* variables the
    // environment holds, so the documented names are exactly what arrives.
    datadog: false,
    includeDataDogTags: false,
    includeDatadogTelemetry: false,
    maxBufferSize: 1400,
    bufferFlushInterval: 200,
    errorHandler: (err: Error) => log.debug({ err }, 'statsd send failed'),
  });
  const counters = new Map<string, number>();
  let closed = false;
  // hot-shots reports send errors to errorHandler; this guards the rest
  // (a closed socket, a bad value), so a metric never throws into the pipe.
  const safely = (send: () => void) => {
    try {
      send();
    } catch (err) {
      log.debug({ err }, 'statsd send failed');
    }
  };
  const flush = () => {
    for (const [name, value] of counters) safely(() => client.increment(name, value));
    counters.clear();
  };
  const timer = setInterval(flush, opts.flushIntervalMs ?? STATSD_FLUSH_INTERVAL_MS);
  timer.unref();
  return {
    increment(name, value = 1) {
      if (closed) return;
      counters.set(name, (counters.get(name) ?? 0) + value);
    },
    gauge(name, value) {
      if (!closed) safely(() => client.gauge(name, value));
    },
    timing(name, ms) {
      // Microseconds are plenty and keep datagrams short.
      if (!closed) safely(() => client.timing(name, Math.round(ms * 1000) / 1000));
    },
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      clearInterval(timer);
      flush();
      return new Promise<void>((resolve) =>
        client.close((err) => {
          if (err) log.debug({ err }, 'statsd close failed');
          resolve();
        }),
      );
    },
  };
}
