/**
 * statsd through hot-shots. The host is resolved once at start, so no metric
 * ever waits on DNS; counters are summed in memory and sent once a second,
 * so a busy pipe costs a few datagrams a second, not one per frame; send
 * errors are swallowed (logged at debug), so metrics never break the pipe.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import StatsD from 'hot-shots';
import type { Logger } from 'pino';
import type { StatsdConfig } from './config.js';
import type { Stats } from './stats.js';

const FLUSH_INTERVAL_MS = 1000;

export async function createStatsd(config: StatsdConfig, log: Logger): Promise<Stats> {
  let host = config.host;
  if (isIP(host) === 0) {
    try {
      host = (await lookup(host)).address;
    } catch (err) {
      log.warn({ err, host }, 'statsd host does not resolve; metrics are off');
      return (await import('./stats.js')).nullStats;
    }
  }
  const client = new StatsD({
    host,
    port: config.port,
    prefix: config.prefix,
    protocol: 'udp',
    udpSocketOptions: { type: isIP(host) === 6 ? 'udp6' : 'udp4' },
    maxBufferSize: 1400,
    bufferFlushInterval: 200,
    errorHandler: (err: Error) => log.debug({ err }, 'statsd send failed'),
  });
  const counters = new Map<string, number>();
  const flush = () => {
    for (const [name, value] of counters) client.increment(name, value);
    counters.clear();
  };
  const timer = setInterval(flush, FLUSH_INTERVAL_MS);
  timer.unref();
  return {
    increment(name, value = 1) {
      counters.set(name, (counters.get(name) ?? 0) + value);
    },
    gauge(name, value) {
      client.gauge(name, value);
    },
    timing(name, ms) {
      client.timing(name, ms);
    },
    close() {
      clearInterval(timer);
      flush();
      return new Promise<void>((resolve) => client.close(() => resolve()));
    },
  };
}
