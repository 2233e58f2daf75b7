/**
 * The client's dashboard: `GET /_restpipe/ui` (a small page of plain HTML,
 * CSS and JS from `client/ui/`, read once at start) and
 * `GET /_restpipe/ui/data` (the client's status, as `/_restpipe/status`
 * answers it, and its recent connection history). It shows nothing the
 * gateway does not already answer.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
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
 * Closing the gateway ends its connections that carry no request at once,
 * and each other one as soon as its last answer is out (an answer not
 * started yet says `Connection: close`).
 *
 * Node's `server.close()` ends only the keep-alive connections that are
 * idle at that moment. One that never carried a request (browsers open
 * spare connections) stays until the headers timeout (60 s, checked every
 * 30 s), and one whose answer goes out during the close stays for the
 * keep-alive timeout (72 s in Fastify): the client's `close(graceMs)` would
 * wait that long for a browser showing this page. (The server's dashboard
 * does the same in server/src/dashboard/close-connections.ts.)
 */
function endConnectionsOnClose(app: FastifyInstance): void {
  /** The answers in progress on each open connection. */
  const answering = new Map<Socket, Set<ServerResponse>>();
  let closing = false;
  const endIfIdle = (socket: Socket) => {
    if ((answering.get(socket)?.size ?? 0) > 0 || socket.destroyed) return;
    // What was written goes out, then the connection closes (the HTTP server
    // allows half-open connections: end() alone would wait on the peer's end).
    socket.end();
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', () => socket.destroy());
  };
  app.server.on('connection', (socket: Socket) => {
    answering.set(socket, new Set());
    socket.once('close', () => answering.delete(socket));
  });
  app.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    const answers = answering.get(socket);
    if (!answers) return;
    answers.add(response);
    response.once('close', () => {
      answers.delete(response);
      if (closing) endIfIdle(socket);
    });
  });
  app.addHook('preClose', (done) => {
    closing = true;
    for (const [socket, answers] of answering) {
      // An answer not started yet tells the caller not to send on this connection again.
      for (const response of answers) if (!response.headersSent) response.setHeader('connection', 'close');
      endIfIdle(socket);
    }
    done();
  });
}

/**
 * Registers the client dashboard's routes, starts recording the connection
 * history, and has the gateway's close end the connections a browser keeps
 * (`endConnectionsOnClose`). Call it from the gateway's `routes` option.
 */
export function registerClientDashboard(app: FastifyInstance, client: ClientDashboardSource, opts: { assetsDir?: URL } = {}): ConnectionHistory {
  const history = new ConnectionHistory();
  client.on('status', (event) => history.add(event));
  endConnectionsOnClose(app);

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
