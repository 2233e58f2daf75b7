/**
 * The client's dashboard: `GET /_restpipe/ui` (a small page of plain HTML,
 * CSS and JS from `client/ui/`, read once at start) and
 * `GET /_restpipe/ui/data` (the client's status, as `/_restpipe/status`
 * answers it, and its recent connection history). It shows nothing the
 * gateway does not already answer.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from '@restpipe/shared';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * The status events the history reads: the part of the client's
 * `DashboardStatusEvent` union it needs, named here so this module does not
 * import the client that registers it.
 */
export type DashboardStatusEvent =
  | { type: 'connected'; attempts: number; exchange?: unknown }
  | { type: 'disconnected'; error: Error | undefined }
  | { type: 'connect_failed'; attempts: number; error: Error }
  | { type: 'state'; from: string; to: string }
  | { type: 'identity' };

/** What the dashboard needs of the client (a `RestPipeClient` has it all). */
export interface ClientDashboardSource {
  readonly log: Logger;
  status(): Record<string, unknown>;
  on(event: 'status', listener: (event: DashboardStatusEvent) => void): unknown;
}

/** One line of the connection history; consecutive failed attempts fold into one. */
export type HistoryEntry =
  | { type: 'connected'; time: string; attempts: number }
  | { type: 'disconnected'; time: string; reason: string | null }
  | { type: 'connect_failed'; time: string; since: string; failures: number; error: string };

/** The pipe's ups and downs, newest first, at most `max` lines. */
export class ConnectionHistory {
  private readonly entries: HistoryEntry[] = [];

  constructor(
    private readonly max = 50,
    private readonly now: () => number = Date.now,
  ) {}

  add(event: DashboardStatusEvent): void {
    const time = new Date(this.now()).toISOString();
    const newest = this.entries[0];
    if (event.type === 'connected') this.push({ type: 'connected', time, attempts: event.attempts });
    else if (event.type === 'disconnected') this.push({ type: 'disconnected', time, reason: event.error?.message ?? null });
    else if (event.type === 'connect_failed') {
      if (newest?.type === 'connect_failed') {
        newest.time = time;
        newest.failures++;
        newest.error = event.error.message;
      } else {
        this.push({ type: 'connect_failed', time, since: time, failures: 1, error: event.error.message });
      }
    }
  }

  private push(entry: HistoryEntry): void {
    this.entries.unshift(entry);
    if (this.entries.length > this.max) this.entries.length = this.max;
  }

  list(): HistoryEntry[] {
    return this.entries.map((e) => ({ ...e }));
  }
}

/** What `GET /_restpipe/ui/data` answers on the client. */
export interface ClientDashboardData {
  now: string;
  /** As `/_restpipe/status` answers it. */
  status: Record<string, unknown>;
  /** Newest first. */
  history: HistoryEntry[];
}

const ASSETS: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'client.css': 'text/css; charset=utf-8',
  'client.js': 'text/javascript; charset=utf-8',
};

/** Everything the page loads comes from this gateway. */
const PAGE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
});

/**
 * Registers the client dashboard's routes and starts recording the
 * connection history. Call it from the gateway's `routes` option.
 */
export function registerClientDashboard(app: FastifyInstance, client: ClientDashboardSource, opts: { assetsDir?: URL } = {}): ConnectionHistory {
  const history = new ConnectionHistory();
  client.on('status', (event) => history.add(event));

  const assetsDir = opts.assetsDir ?? new URL('../ui/', import.meta.url);
  const assets = new Map<string, { type: string; body: Buffer }>();
  let missing: Error | undefined;
  try {
    for (const [name, type] of Object.entries(ASSETS)) assets.set(name, { type, body: readFileSync(new URL(name, assetsDir)) });
  } catch (err) {
    missing = err as Error;
    // A broken install loses the page, not the pipe.
    client.log.warn({ err: missing.message, dir: assetsDir.pathname }, "the dashboard's files are missing; /_restpipe/ui answers 500");
  }
  const sendAsset = (name: string, reply: FastifyReply) => {
    if (missing) return reply.code(500).type('text/plain; charset=utf-8').send(`the dashboard's files are missing: ${missing.message}\n`);
    const asset = assets.get(name);
    if (!asset) return reply.callNotFound();
    return reply.headers(PAGE_HEADERS).type(asset.type).send(asset.body);
  };

  app.get('/_restpipe/ui', (_request, reply) => sendAsset('index.html', reply));
  app.get('/_restpipe/ui/', (_request, reply) => reply.redirect('../ui', 308));
  app.get('/_restpipe/ui/data', async (_request, reply): Promise<ClientDashboardData> => {
    reply.headers({ 'cache-control': 'no-store' });
    return { now: new Date().toISOString(), status: client.status(), history: history.list() };
  });
  app.get<{ Params: { file: string } }>('/_restpipe/ui/:file', (request, reply) => sendAsset(request.params.file, reply));
  return history;
}
