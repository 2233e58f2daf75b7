/**
 * Unit-test helpers for the pipe core: two exchanges over an in-memory
 * duplex (no TLS, no ports), a clock the test moves by hand, and a stats
 * sink that counts.
 */
import { pino } from 'pino';
import { Dispatcher, EventHandler, MessageExchange, duplexPair, type PipeLimits } from '@restpipe/shared';
import { CountingStats as CountingSink } from '../../test/helpers/counting-stats.js';

export const LIMITS: PipeLimits = {
  maxFrameBytes: 1024 * 1024,
  maxBodyBytes: 8 * 1024 * 1024,
  streamChunkBytes: 64 * 1024,
  streamWindowBytes: 1024 * 1024,
  streamConnectionBufferBytes: 1024 * 1024,
  heartbeatIntervalMs: 60_000,
  heartbeatTimeoutMs: 120_000,
};

/** A clock for deadlines that moves only when the test says so. */
export class ManualClock {
  ms = 1_000_000;
  readonly now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

/** The test-wide counting sink, under the name these tests use. */
export { CountingStats as CountingSink } from '../../test/helpers/counting-stats.js';

export interface ExchangePair {
  client: MessageExchange;
  server: MessageExchange;
  clientStats: CountingSink;
  serverStats: CountingSink;
  close(): void;
}

/** A client and a server exchange wired back to back; both said hello once this resolves. */
export async function exchangePair(
  opts: {
    clientHandler?: EventHandler;
    serverHandler?: EventHandler;
    clientNow?: () => number;
    serverNow?: () => number;
    limits?: Partial<PipeLimits>;
    serverLimits?: Partial<PipeLimits>;
  } = {},
): Promise<ExchangePair> {
  const [a, b] = duplexPair();
  const log = pino({ level: 'silent' });
  const limits = { ...LIMITS, ...opts.limits };
  const clientStats = new CountingSink();
  const serverStats = new CountingSink();
  const client = new MessageExchange({
    socket: a,
    role: 'client',
    peer: { name: 'server', address: undefined },
    dispatcher: new Dispatcher(opts.clientHandler ?? new EventHandler()),
    log,
    stats: clientStats,
    limits,
    ...(opts.clientNow ? { now: opts.clientNow } : {}),
  });
  const server = new MessageExchange({
    socket: b,
    role: 'server',
    peer: { name: 'client-1', address: undefined },
    dispatcher: new Dispatcher(opts.serverHandler ?? new EventHandler()),
    log,
    stats: serverStats,
    limits: { ...limits, ...opts.serverLimits },
    ...(opts.serverNow ? { now: opts.serverNow } : {}),
  });
  await Promise.all([
    client.ready ? undefined : new Promise<void>((r) => client.once('ready', () => r())),
    server.ready ? undefined : new Promise<void>((r) => server.once('ready', () => r())),
  ]);
  return {
    client,
    server,
    clientStats,
    serverStats,
    close() {
      client.close();
      server.close();
    },
  };
}

/** A GET request with no body. */
export function get(noun: string, deadlineMs: number) {
  return { verb: 'get', noun, args: [], query: '', headers: [], mimetype: '', body: Buffer.alloc(0), deadlineMs };
}
