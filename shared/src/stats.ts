/**
 * The stats sink seam: the pipe reports counters, gauges and timings here.
 * `createStatsd` sends them to statsd with hot-shots; `nullStats` drops them.
 * Names are dotted (`requests.sent`); the sink adds its prefix. Callers
 * never wait on a sink and a sink never throws.
 */
export interface Stats {
  /** Adds `value` (default 1) to a counter. */
  increment(name: string, value?: number): void;
  /** Sets a gauge to `value`. */
  gauge(name: string, value: number): void;
  /** Records a duration in milliseconds. */
  timing(name: string, ms: number): void;
  /** Sends what is pending and releases the socket; later metrics are dropped. */
  close(): Promise<void>;
}

/** Drops every metric: statsd is disabled. */
export const nullStats: Stats = Object.freeze({
  increment() {},
  gauge() {},
  timing() {},
  close: async () => {},
});

/**
 * Sends every metric to both sinks (statsd and Prometheus); `close` closes
 * both. A `nullStats` side is left out, so one sink costs no extra call.
 */
export function teeStats(a: Stats, b: Stats): Stats {
  if (b === nullStats) return a;
  if (a === nullStats) return b;
  return {
    increment(name, value) {
      a.increment(name, value);
      b.increment(name, value);
    },
    gauge(name, value) {
      a.gauge(name, value);
      b.gauge(name, value);
    },
    timing(name, ms) {
      a.timing(name, ms);
      b.timing(name, ms);
    },
    close: async () => {
      await Promise.all([a.close(), b.close()]);
    },
  };
}
