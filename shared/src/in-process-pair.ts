/**
 * An in-process pair of nodes: the same message exchange and dispatcher as
 * the real pipe, over an in-memory duplex instead of TLS, so handler authors
 * can unit-test handlers with no sockets, certificates or ports.
 *
 *   const pair = createInProcessPair({ serverHandler: new MyServerHandler() });
 *   const reply = await pair.server.get('time');      // as the client calls /server/time
 *   expect(reply.json()).toHaveProperty('time_from_server');
 *   await pair.close();
 */
import { Duplex } from 'node:stream';
import { pino, type Logger } from 'pino';
import { readCommonConfig, Env } from './config.js';
import { Dispatcher } from './dispatcher.js';
import { httpStatusForEventCode } from './event-codes.js';
import { EventHandler } from './handler.js';
import { MessageExchange, type PipeLimits } from './message-exchange.js';
import { nullStats } from './stats.js';
import { collectBody, isBodyStream } from './pipe/streams.js';

/** Two ends of an in-memory byte stream: what one writes, the other reads. */
export function duplexPair(): [Duplex, Duplex] {
  let a: Duplex;
  let b: Duplex;
  const make = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk, _enc, cb) {
        peer().push(chunk);
        cb();
      },
      final(cb) {
        peer().push(null);
        cb();
      },
      destroy(err, cb) {
        const other = peer();
        if (!other.destroyed) other.destroy();
        cb(err);
      },
    });
  a = make(() => b);
  b = make(() => a);
  return [a, b];
}

export interface PairRequestOptions {
  /** Arguments, as after `//` in a URL (already decoded). */
  args?: string[];
  /** Query parameters. */
  query?: Record<string, string | string[]>;
  headers?: Record<string, string>;
  /** The content type; set for you from the body when omitted. */
  mimetype?: string;
  /** Deadline in ms. @default 30000 */
  timeoutMs?: number;
}

/** A handler's answer, as a gateway would have answered it. */
export interface PairReply {
  code: number;
  /** The HTTP status a gateway would answer with. */
  status: number;
  mimetype: string;
  body: Buffer;
  text(): string;
  json<T = unknown>(): T;
}

type Body = unknown;

/** Calls one side's handler: `get('time')`, `post('notes', { a: 1 })`. */
export interface PairTarget {
  request(verb: string, noun: string, body?: Body, opts?: PairRequestOptions): Promise<PairReply>;
  get(noun: string, opts?: PairRequestOptions): Promise<PairReply>;
  delete(noun: string, opts?: PairRequestOptions): Promise<PairReply>;
  post(noun: string, body?: Body, opts?: PairRequestOptions): Promise<PairReply>;
  put(noun: string, body?: Body, opts?: PairRequestOptions): Promise<PairReply>;
  patch(noun: string, body?: Body, opts?: PairRequestOptions): Promise<PairReply>;
}

export interface InProcessPair {
  /** Reaches the server's handler, as a client node's `/server/<noun>` does. */
  readonly server: PairTarget;
  /** Reaches the client's handler, as the server's `/client/<name>/<noun>` does. */
  readonly client: PairTarget;
  /** The exchanges themselves, e.g. to check `inFlight`. */
  readonly exchanges: { readonly server: MessageExchange; readonly client: MessageExchange };
  close(): Promise<void>;
}

export interface InProcessPairOptions {
  serverHandler?: EventHandler;
  clientHandler?: EventHandler;
  /** The client's name as the server's handler sees it in `ctx.peer.name`. @default 'in-process-client' */
  clientName?: string;
  /** The server's name as the client's handler sees it. @default 'in-process-server' */
  serverName?: string;
  /** Settings as `RP_` variables, e.g. `{ RP_MAX_BODY_BYTES: '1024' }`. */
  env?: Record<string, string>;
  log?: Logger;
}

/** Creates a connected pair; each side without a handler answers 255 to everything. */
export function createInProcessPair(opts: InProcessPairOptions = {}): InProcessPair {
  const limits: PipeLimits = readCommonConfig(new Env({ RP_STATSD_HOST: '', ...opts.env }));
  const log = opts.log ?? pino({ level: 'silent' });
  const [serverSide, clientSide] = duplexPair();
  const clientName = opts.clientName ?? 'in-process-client';
  const serverName = opts.serverName ?? 'in-process-server';
  const serverExchange = new MessageExchange({
    socket: serverSide,
    role: 'server',
    peer: { name: clientName, address: undefined },
    dispatcher: new Dispatcher(opts.serverHandler ?? new EventHandler()),
    log,
    stats: nullStats,
    limits,
    agent: 'restpipe-in-process',
  });
  const clientExchange = new MessageExchange({
    socket: clientSide,
    role: 'client',
    peer: { name: serverName, address: undefined },
    dispatcher: new Dispatcher(opts.clientHandler ?? new EventHandler()),
    log,
    stats: nullStats,
    limits,
    agent: 'restpipe-in-process',
  });
  const ready = Promise.all([waitReady(serverExchange), waitReady(clientExchange)]);
  return {
    server: target(clientExchange, ready),
    client: target(serverExchange, ready),
    exchanges: { server: serverExchange, client: clientExchange },
    async close() {
      clientExchange.close();
      serverExchange.close();
    },
  };
}

function waitReady(exchange: MessageExchange): Promise<void> {
  if (exchange.ready) return Promise.resolve();
  return new Promise((resolve) => exchange.once('ready', resolve));
}

function target(exchange: MessageExchange, ready: Promise<unknown>): PairTarget {
  const request = async (verb: string, noun: string, body?: Body, o: PairRequestOptions = {}): Promise<PairReply> => {
    await ready;
    const { bytes, mimetype } = encodeBody(body);
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(o.query ?? {})) for (const one of Array.isArray(v) ? v : [v]) query.append(k, one);
    const result = await exchange.request({
      verb: verb.toLowerCase(),
      noun,
      args: o.args ?? [],
      query: query.toString(),
      headers: Object.entries(o.headers ?? {}).map(([k, v]) => ({ name: k.toLowerCase(), value: v })),
      mimetype: o.mimetype ?? mimetype,
      body: bytes,
      deadlineMs: o.timeoutMs ?? 30_000,
    });
    const replyBody = result.stream ? await collectBody(result.stream, Number.MAX_SAFE_INTEGER, () => new Error('unreachable')) : result.body;
    return {
      code: result.code,
      status: httpStatusForEventCode(result.code),
      mimetype: result.mimetype,
      body: replyBody,
      text: () => replyBody.toString('utf8'),
      json: <T>() => JSON.parse(replyBody.toString('utf8')) as T,
    };
  };
  return {
    request,
    get: (noun, o) => request('get', noun, undefined, o),
    delete: (noun, o) => request('delete', noun, undefined, o),
    post: (noun, body, o) => request('post', noun, body, o),
    put: (noun, body, o) => request('put', noun, body, o),
    patch: (noun, body, o) => request('patch', noun, body, o),
  };
}

function encodeBody(body: Body): { bytes: Buffer | AsyncIterable<unknown>; mimetype: string } {
  if (body === undefined) return { bytes: Buffer.alloc(0), mimetype: '' };
  if (Buffer.isBuffer(body)) return { bytes: body, mimetype: 'application/octet-stream' };
  if (body instanceof Uint8Array) return { bytes: Buffer.from(body), mimetype: 'application/octet-stream' };
  if (typeof body === 'string') return { bytes: Buffer.from(body), mimetype: 'text/plain; charset=utf-8' };
  if (isBodyStream(body)) return { bytes: body, mimetype: 'application/octet-stream' };
  return { bytes: Buffer.from(JSON.stringify(body)), mimetype: 'application/json' };
}
