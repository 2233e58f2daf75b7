/**
 * The local HTTP gateway (Fastify): turns REST requests into events sent
 * down the pipe and their replies into HTTP responses.
 *
 * Client node: `/server/<noun>[//<args>]`; server node:
 * `/client/<client-name>/<noun>[//<args>]`. Every answer carries an event
 * code in `X-Event-Return-Code` and the fitting HTTP status.
 */
import { STATUS_CODES } from 'node:http';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import {
  BadRequestError,
  BodyTooLargeError,
  DeadlineExceededError,
  InternalError,
  InvalidNounError,
  NoRouteError,
  OverloadedError,
  PipeBrokenError,
  RestPipeError,
  UnknownClientError,
} from './errors.js';
import { entryFromError, entryFromReply, selectClients, type FanOutEntry } from './fan-out.js';
import { EventCode, httpStatusForEventCode } from './event-codes.js';
import { parseEventPath, splitClientName } from './event-path.js';
import { isValidNoun } from './dispatcher.js';
import { errorBody, type EventHeader, type Pipe } from './message-exchange.js';
import type { Stats } from './stats.js';
import { collectBody } from './pipe/streams.js';
import { endConnectionsOnClose } from './gateway-close.js';

/** Header carrying the event code of every answer. */
export const EVENT_CODE_HEADER = 'x-event-return-code';
/** Request header that overrides the default deadline, in milliseconds. */
export const TIMEOUT_HEADER = 'x-restpipe-timeout-ms';

/** Headers that describe one HTTP hop and are not passed to the handler. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'proxy-authorization',
  'proxy-connection',
  'content-length',
]);

/** Which side the gateway runs on, which decides its routes. */
export type GatewaySide = 'client' | 'server';

export interface GatewayOptions {
  side: GatewaySide;
  log: Logger;
  stats: Stats;
  /** Request bodies up to this size are read whole and sent inline; larger ones stream. */
  streamChunkBytes: number;
  /** Largest body of a fan-out request or of one client's fan-out reply. */
  maxBodyBytes: number;
  /** Deadline of a request without the timeout header, in ms. */
  defaultDeadlineMs: number;
  /** Largest deadline the timeout header may ask for, in ms. */
  maxDeadlineMs: number;
  /**
   * The exchange to send to: on the server, the named client's; on the
   * client, the server's. Throws a `RestPipeError` when there is none; may
   * wait (bounded by `deadlineMs`) for a pipe that is coming up.
   */
  resolvePeer(clientName: string | undefined, deadlineMs: number, caller: CallerState): Pipe | Promise<Pipe>;
  /** Names of the connected clients; enables fan-out at `/clients/<selector>/<noun>` (server). */
  peerNames?: () => Iterable<string>;
  /** Registers the node's own routes (status, events) before the catch-all handlers. */
  routes?: (app: FastifyInstance) => void;
}

/** `Prefer: respond-async` asks for fire-and-forget delivery: 202 at once, handled in order. */
const RESPOND_ASYNC = /(?:^|[\s,;])respond-async(?:$|[\s,;])/i;

/** The HTTP caller of one request: its `signal` aborts when the caller goes away. */
export interface CallerState {
  /** Made on first use. */
  readonly signal: AbortSignal;
}

/**
 * Tracks whether the HTTP caller went away, without an AbortController per
 * request: one is made only when something asks for `signal`.
 */
class CallerGone implements CallerState {
  private controller: AbortController | undefined;
  private reason: Error | undefined;
  private cancelRequest: ((reason: Error) => void) | undefined;
  stream: Readable | undefined;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  get gone(): boolean {
    return this.reason !== undefined;
  }

  /** For `OutgoingRequest.onCancel`. */
  readonly onCancel = (cancel: (reason: Error) => void): void => {
    this.cancelRequest = cancel;
  };

  fire(reason: Error): void {
    if (this.reason) return;
    this.reason = reason;
    this.controller?.abort(reason);
    this.cancelRequest?.(reason);
    this.stream?.destroy();
  }
}

export { listenGateway, type GatewayAddress } from './gateway-listen.js';

/**
 * Fastify, loaded with the first gateway rather than with this module: it is
 * a quarter of a node's start-up CPU, and a server opens its pipe port
 * before it makes its gateway (a restarted server's clients do not wait for
 * the gateway's modules).
 */
let fastifyModule: typeof import('fastify') | undefined;
function loadFastify(): typeof import('fastify') {
  fastifyModule ??= createRequire(import.meta.url)('fastify') as typeof import('fastify');
  return fastifyModule;
}

export function createGateway(opts: GatewayOptions): FastifyInstance {
  const { fastify: Fastify, LogController } = loadFastify();
  // Below debug the gateway logs only its own errors (through opts.log): a
  // Fastify logger would make a child logger for every request.
  const requestLogs = opts.log.isLevelEnabled('debug');
  const app = Fastify({
    ...(requestLogs
      ? { loggerInstance: opts.log as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: false }) }
      : { logger: false }),
    exposeHeadRoutes: false,
    return503OnClosing: true,
    // Router errors (a URL that does not percent-decode) get our error body too.
    frameworkErrors: (error, _request, reply) => sendError(reply, new BadRequestError(error.message)),
    // Requests the HTTP parser refuses (oversized headers, a broken request
    // line) get the event code and error body too.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const body = errorBody(new BadRequestError(`the request could not be read: ${err.code ?? err.message}`));
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Bad Request'}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
          `${EVENT_CODE_HEADER}: ${EventCode.BAD_REQUEST}\r\nContent-Length: ${body.length}\r\n\r\n`,
      );
      socket.end(body);
      setTimeout(() => socket.destroy(), 1000).unref();
    },
  });
  // Closing ends kept-alive connections (a browser's spare ones too) once their answers are out.
  endConnectionsOnClose(app);
  app.removeAllContentTypeParsers();
  // Bodies are not parsed here: they travel as bytes (streamed when large) and
  // the receiving side parses JSON for the handler and enforces RP_MAX_BODY_BYTES.
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  const prefix = opts.side === 'client' ? '/server/' : '/client/';
  const handle = (request: FastifyRequest, reply: FastifyReply) => forward(opts, prefix, request, reply);
  // Every answer to an event request (forwarded, fan-out, or refused before
  // it reached the pipe) is counted once, by status, with its time.
  const counted = countAnswers(opts.stats);
  app.route({ method: ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'], url: `${prefix}*`, handler: handle, onResponse: counted });
  if (opts.peerNames) {
    const names = opts.peerNames;
    app.route({
      method: ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'],
      url: '/clients/*',
      handler: (request, reply) => fanOut(opts, names, request, reply),
      onResponse: counted,
    });
  }
  opts.routes?.(app);

  app.setNotFoundHandler((request, reply) => {
    sendError(reply, new NoRouteError(`no route for ${request.method} ${request.url.split('?')[0]}; events go to ${prefix}<noun>`));
  });
  app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => {
    if (error instanceof RestPipeError) return sendError(reply, error);
    if (error.statusCode === 413) return sendError(reply, new BodyTooLargeError(error.message));
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      return sendError(reply, new BadRequestError(error.message));
    }
    opts.log.error({ err: error }, 'gateway error');
    return sendError(reply, new InternalError(undefined, { cause: error }));
  });
  return app;
}

/**
 * An `onResponse` hook counting `gateway.status.<status>` and timing
 * `gateway.time` for answers that reached the caller (a caller that went
 * away is `gateway.caller_gone` instead). Names are built once per status.
 */
function countAnswers(stats: Stats): (request: FastifyRequest, reply: FastifyReply, done: () => void) => void {
  const names = new Map<number, string>();
  return (_request, reply, done) => {
    if (reply.raw.writableFinished) {
      const status = reply.statusCode;
      let name = names.get(status);
      if (name === undefined) {
        name = `gateway.status.${status}`;
        names.set(status, name);
      }
      stats.increment(name);
      stats.timing('gateway.time', reply.elapsedTime);
    }
    done();
  };
}

async function forward(opts: GatewayOptions, prefix: string, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const url = request.raw.url ?? '';
  let clientName: string | undefined;
  let rest = url.slice(prefix.length);
  if (opts.side === 'server') ({ name: clientName, rest } = splitClientName(rest));
  const { noun, args, query } = parseEventPath(rest);
  const verb = request.method.toLowerCase();
  if (!isValidNoun(noun)) {
    throw new InvalidNounError(noun);
  }
  const deadlineMs = requestDeadline(opts, request.headers[TIMEOUT_HEADER]);
  const deadlineAt = Date.now() + deadlineMs;

  const caller = new CallerGone();
  const onClose = () => {
    if (!reply.raw.writableFinished) caller.fire(new Error('the HTTP caller went away'));
  };
  reply.raw.once('close', onClose);

  try {
    const resolved = opts.resolvePeer(clientName, deadlineMs, caller);
    const exchange = resolved instanceof Promise ? await resolved : resolved;
    const remaining = deadlineAt - Date.now();
    if (remaining <= 0) throw new DeadlineExceededError(deadlineMs);
    // A request without a body (most GETs) costs no await here.
    const { body, contentLength } = request.body instanceof Readable ? await requestBody(request, opts.streamChunkBytes) : NO_BODY;
    const headers = eventHeaders(request);
    if (request.headers.prefer !== undefined && RESPOND_ASYNC.test(String(request.headers.prefer))) {
      await exchange.notify({ verb, noun, args, query, headers, mimetype: request.headers['content-type'] ?? '', body, contentLength });
      reply.code(202).header(EVENT_CODE_HEADER, '0').header('preference-applied', 'respond-async').type('application/json').send({ accepted: true });
      return;
    }
    const result = await exchange.request({
      verb,
      noun,
      args,
      query,
      headers,
      mimetype: request.headers['content-type'] ?? '',
      body,
      contentLength,
      deadlineMs: remaining,
      onCancel: caller.onCancel,
    });
    reply.code(httpStatusForEventCode(result.code)).header(EVENT_CODE_HEADER, String(result.code));
    // The peer refused it for its own in-flight cap: retry shortly, as for ours.
    if (result.code === EventCode.OVERLOADED) reply.header('retry-after', '1');
    // The peer answered before reading the whole upload (e.g. 413): close the
    // connection after the answer instead of reading and discarding the rest.
    if (body instanceof Readable && !body.readableEnded) reply.header('connection', 'close');
    if (result.mimetype) reply.header('content-type', result.mimetype);
    if (result.stream) {
      caller.stream = result.stream;
      if (reply.raw.destroyed) result.stream.destroy();
      if (result.contentLength >= 0) reply.header('content-length', String(result.contentLength));
      // Wait for a streamed reply to finish: the caller going away must stop it.
      await reply.send(result.stream);
    } else {
      // A whole reply is sent without waiting for it to drain (FastifyReply is thenable).
      reply.send(result.body);
    }
  } catch (err) {
    if (caller.gone) {
      opts.stats.increment('gateway.caller_gone');
      return;
    }
    if (!(err instanceof RestPipeError)) throw err;
    sendError(reply, err);
  } finally {
    reply.raw.off('close', onClose);
  }
}

/** The caller's headers for the handler, without hop-by-hop ones. */
function eventHeaders(request: FastifyRequest): EventHeader[] {
  const headers: EventHeader[] = [];
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    headers.push({ name, value: Array.isArray(value) ? value.join(', ') : value });
  }
  return headers;
}

/**
 * `/clients/<selector>/<noun>`: sends the event to every selected client at
 * once and answers one JSON object keyed by client name. Every selected
 * client gets an entry, an error entry when it is not connected, fails or
 * misses the deadline, never a missing one.
 */
async function fanOut(opts: GatewayOptions, peerNames: () => Iterable<string>, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const started = performance.now();
  const { name: selector, rest } = splitClientName((request.raw.url ?? '').slice('/clients/'.length));
  const { noun, args, query } = parseEventPath(rest);
  if (!isValidNoun(noun)) {
    throw new InvalidNounError(noun);
  }
  const deadlineMs = requestDeadline(opts, request.headers[TIMEOUT_HEADER]);
  const payload = request.body;
  const body =
    payload instanceof Readable
      ? await collectBody(
          payload,
          opts.maxBodyBytes,
          (n) => new BodyTooLargeError(`a fan-out body of ${n}+ bytes is over RP_MAX_BODY_BYTES (${opts.maxBodyBytes})`),
        )
      : EMPTY;
  const { matched, missing } = selectClients(selector, peerNames());
  const caller = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) caller.abort(new Error('the HTTP caller went away'));
  };
  reply.raw.once('close', onClose);
  const callerState: CallerState = { signal: caller.signal };
  const event = {
    verb: request.method.toLowerCase(),
    noun,
    args,
    query,
    headers: eventHeaders(request),
    mimetype: request.headers['content-type'] ?? '',
    body,
    deadlineMs,
    signal: caller.signal,
  };
  const answers: Record<string, FanOutEntry> = {};
  for (const name of missing) answers[name] = entryFromError(new UnknownClientError(name));
  await Promise.all(
    matched.map(async (name) => {
      try {
        const exchange = await opts.resolvePeer(name, deadlineMs, callerState);
        const result = await exchange.request(event);
        const replyBody = result.stream
          ? await collectBody(result.stream, opts.maxBodyBytes, (n) => new BodyTooLargeError(`the reply of ${n}+ bytes is over RP_MAX_BODY_BYTES`))
          : result.body;
        answers[name] = entryFromReply(result, replyBody);
      } catch (err) {
        answers[name] = entryFromError(err instanceof RestPipeError ? err : new PipeBrokenError((err as Error).message));
      }
    }),
  );
  reply.raw.off('close', onClose);
  opts.stats.timing('gateway.fanout.time', performance.now() - started);
  opts.stats.increment('gateway.fanout.requests');
  const sorted: Record<string, FanOutEntry> = {};
  for (const key of Object.keys(answers).sort()) sorted[key] = answers[key] as FanOutEntry;
  await reply.code(200).header(EVENT_CODE_HEADER, '0').type('application/json').send(JSON.stringify(sorted));
}

/**
 * The request body: read whole when it declares a length up to one chunk
 * (the common small request), else passed on as the stream it is.
 */
async function requestBody(request: FastifyRequest, inlineMax: number): Promise<{ body: Buffer | Readable; contentLength: number }> {
  const payload = request.body;
  if (!(payload instanceof Readable)) return { body: EMPTY, contentLength: 0 };
  const header = request.headers['content-length'];
  const declared = header === undefined ? -1 : Number(header);
  if (declared >= 0 && declared <= inlineMax) {
    return {
      body: await collectBody(payload, inlineMax, (n) => new BadRequestError(`request body of ${n} bytes is longer than its Content-Length`)),
      contentLength: declared,
    };
  }
  return { body: payload, contentLength: declared };
}

const EMPTY = Buffer.alloc(0);
const NO_BODY: { body: Buffer; contentLength: number } = { body: EMPTY, contentLength: 0 };

function requestDeadline(opts: GatewayOptions, header: string | string[] | undefined): number {
  if (header === undefined) return opts.defaultDeadlineMs;
  const value = Array.isArray(header) ? header[0] : header;
  const ms = Number(value);
  if (!Number.isInteger(ms) || ms <= 0) {
    throw new BadRequestError(`${TIMEOUT_HEADER} must be a positive whole number of milliseconds, not "${value}"`);
  }
  return Math.min(ms, opts.maxDeadlineMs);
}

function sendError(reply: FastifyReply, err: RestPipeError, status = err.httpStatus): FastifyReply {
  if (err instanceof OverloadedError) reply.header('retry-after', String(err.retryAfterS));
  return reply.code(status).header(EVENT_CODE_HEADER, String(err.eventCode)).type('application/json').send(errorBody(err));
}
