/**
 * The server's dashboard: `GET /_restpipe/ui` (a page of plain HTML, CSS
 * and JS from `server/ui/`, read once at start) and `GET /_restpipe/ui/data`
 * (the recent answers, per-client counters and connection events it draws).
 * The page reads `/_restpipe/clients`, `/_restpipe/status` and the
 * `/_restpipe/events` stream as well, and its "try it" box calls
 * `/client/<name>/<noun>` like any app: it reaches nothing the gateway does
 * not already answer.
 */
import { readFileSync } from 'node:fs';
import { EVENT_CODES, EVENT_CODE_HEADER, splitClientName, type Logger } from '@restpipe/shared';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ClientConnectionEvent } from '../status-routes.js';
import { ConnectionLog, type DisconnectedClient } from './connection-log.js';
import { RecentStats, type BucketView, type ClientCountersView, type GatewayAnswer } from './recent-stats.js';

/** What the dashboard needs of the server (a `RestPipeServer` has it all). */
export interface DashboardSource {
  readonly log: Logger;
  clients(): Array<Record<string, unknown>>;
  /** Whether a client of this name is connected now (a lookup, not a list: it runs on every disconnect). */
  hasClient(name: string): boolean;
  on(event: 'connection', listener: (event: ClientConnectionEvent) => void): unknown;
}

export interface DashboardOptions {
  /** The recorder to fill. @default a new RecentStats() */
  stats?: RecentStats;
  /** Where the page's files are. @default the package's `ui/` folder */
  assetsDir?: URL;
}

/** What `GET /_restpipe/ui/data` answers. */
export interface DashboardData {
  now: string;
  bucketS: number;
  windowS: number;
  /** Event code → name, e.g. `"255": "NO_HANDLER"`. */
  codeNames: Readonly<Record<string, string>>;
  /** Every bucket of the window, oldest first. */
  series: BucketView[];
  totals: Omit<BucketView, 't'>;
  /** Counters of each client that had an answer, by name. */
  clients: Record<string, ClientCountersView>;
  /** The last connection events, newest first. */
  events: ClientConnectionEvent[];
  /** Clients that left and are not back, newest first. */
  disconnected: DisconnectedClient[];
}

/** The page's files: name under `/_restpipe/ui/` → content type. */
const ASSETS: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'charts.js': 'text/javascript; charset=utf-8',
};

/**
 * Everything the page loads comes from this gateway: no CDN, no inline
 * script, nothing framed elsewhere.
 */
export const DASHBOARD_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
});

/** Event code → name (`255` → `NO_HANDLER`), for the page's tables and legends. */
const CODE_NAMES: Readonly<Record<string, string>> = Object.freeze(
  Object.fromEntries(Object.entries(EVENT_CODES).map(([name, entry]) => [String(entry.code), name])),
);

/** Longest client name and noun kept per answer: URLs come from any local caller. */
const MAX_NAME_CHARS = 256;

/**
 * Registers the dashboard's routes and the hooks that record every gateway
 * answer. Call it from the gateway's `routes` option (before it listens).
 * Returns the recorder it fills.
 */
export function registerDashboardRoutes(app: FastifyInstance, server: DashboardSource, opts: DashboardOptions = {}): RecentStats {
  const stats = opts.stats ?? new RecentStats();
  const connections = new ConnectionLog();
  const isConnected = (name: string) => server.hasClient(name);
  server.on('connection', (event) => connections.add(event, event.type === 'disconnected' && isConnected(event.name)));

  recordGatewayAnswers(app, (answer) => stats.record(answer));

  const assetsDir = opts.assetsDir ?? new URL('../../ui/', import.meta.url);
  const assets = loadAssets(assetsDir);
  // A broken install loses the page, not the pipe.
  if (assets instanceof Error)
    server.log.warn({ err: assets.message, dir: assetsDir.pathname }, "the dashboard's files are missing; /_restpipe/ui answers 500");
  const sendAsset = (name: string, reply: FastifyReply) => {
    if (assets instanceof Error) {
      return reply.code(500).type('text/plain; charset=utf-8').send(`the dashboard's files are missing: ${assets.message}\n`);
    }
    const asset = assets.get(name);
    if (!asset) return reply.callNotFound();
    return reply.headers(DASHBOARD_HEADERS).type(asset.type).send(asset.body);
  };
  app.get('/_restpipe/ui', (_request, reply) => sendAsset('index.html', reply));
  app.get('/_restpipe/ui/', (_request, reply) => reply.redirect('../ui', 308));
  app.get('/_restpipe/ui/data', async (_request, reply): Promise<DashboardData> => {
    reply.headers({ 'cache-control': 'no-store' });
    return {
      now: new Date().toISOString(),
      bucketS: stats.bucketMs / 1000,
      windowS: (stats.bucketMs * stats.bucketCount) / 1000,
      codeNames: CODE_NAMES,
      series: stats.series(),
      totals: stats.totals(),
      clients: stats.clientCounters(),
      events: connections.recentEvents(),
      disconnected: connections.disconnected(isConnected),
    };
  });
  app.get<{ Params: { file: string } }>('/_restpipe/ui/:file', (request, reply) => sendAsset(request.params.file, reply));
  return stats;
}

/**
 * Calls `record` once per answer of `/client/<name>/<noun>` and
 * `/clients/<selector>/<noun>`, with the event code the gateway put in
 * `X-Event-Return-Code`. The latency is taken when the answer starts (a
 * streamed reply's duration is not in it), as the gateway's `gateway.time`.
 * A caller that went away before its answer is not recorded.
 */
export function recordGatewayAnswers(app: FastifyInstance, record: (answer: GatewayAnswer) => void): void {
  // One callback hook, not an async one, and no onSend hook (a hook in the
  // send path runs for every answer of the gateway, status routes included).
  // The latency is taken when the answer is done, as gateway.time is.
  app.addHook('onResponse', (request, reply, done) => {
    const url = request.raw.url;
    if (isGatewayUrl(url)) {
      const code = Number(reply.getHeader(EVENT_CODE_HEADER));
      if (Number.isInteger(code)) {
        const { client, noun } = describeUrl(url as string);
        record({ client, noun, verb: request.method, code, status: reply.statusCode, ms: reply.elapsedTime });
      }
    }
    done();
  });
}

function isGatewayUrl(url: string | undefined): boolean {
  return url !== undefined && (url.startsWith('/client/') || url.startsWith('/clients/'));
}

/** The client and noun of a gateway URL; a fan-out has neither. */
function describeUrl(url: string): { client: string | undefined; noun: string | undefined } {
  if (url.startsWith('/clients/')) return { client: undefined, noun: undefined };
  let name: string;
  let rest: string;
  try {
    ({ name, rest } = splitClientName(url.slice('/client/'.length)));
  } catch {
    return { client: undefined, noun: undefined }; // not a name: nothing to count it under
  }
  let noun = rest.split('?')[0] ?? '';
  const args = noun.indexOf('//');
  if (args >= 0) noun = noun.slice(0, args);
  if (noun.endsWith('/')) noun = noun.slice(0, -1);
  return { client: name.slice(0, MAX_NAME_CHARS), noun: noun.slice(0, MAX_NAME_CHARS) };
}

interface Asset {
  type: string;
  body: Buffer;
}

/** Reads the page's files once; an Error (naming the folder) when one is missing. */
function loadAssets(dir: URL): Map<string, Asset> | Error {
  const out = new Map<string, Asset>();
  try {
    for (const [name, type] of Object.entries(ASSETS)) out.set(name, { type, body: readFileSync(new URL(name, dir)) });
  } catch (err) {
    return err as Error;
  }
  return out;
}
