/**
 * The stats sink seam: the pipe reports counters, gauges and timings here.
 * `createStatsd` sends them to statsd with hot-shots; `nullStats` drops them;
 * `MemoryStats` keeps them for tests and the status endpoint.
 */
export interface Stats {
  increment(name: string, value?: number): void;
  gauge(name: string, value: number): void;
  timing(name: string, ms: number): void;
  close(): Promise<void>;
}

/** Drops every metric: statsd is disabled. */
export const nullStats: Stats = Object.freeze({
  increment() {},
  gauge() {},
  timing() {},
  close: async () => {},
});
