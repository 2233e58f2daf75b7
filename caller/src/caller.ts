/**
 * `createCaller`: typed calls to a local RestPipe gateway over undici.
 *
 * `caller.server` reaches the server's handlers from a client node,
 * `caller.client(name)` one client's handlers from the server node, and
 * `caller.clients(selector)` many clients at once (fan-out). Every non-zero
 * event code becomes a `PipeFailError`.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, type Dispatcher } from 'undici';
import { decodeReply, encodeBody, readAll, type RequestBody } from './body.js';
import { CallerClosedError, CallerUsageError } from './errors.js';
import { TIMEOUT_HEADER } from './event-codes.js';
import { eventCodeOf, isFailure } from './event-codes.js';
import { clientPrefix, clientsPrefix, eventPath, selectorText, type QueryParams } from './event-url.js';
import { decodeFanout, fanoutEntries, type FanoutEntry, type FanoutResult } from './fan-out.js';
import { failureOf, mimetypeOf, type CallContext } from './raise-for-exception.js';

/** The HTTP verbs a gateway routes. */
export type Verb = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';

/**
 * Where the gateway listens: its URL (`http://127.0.0.1:8001`, a path prefix
 * allowed when it sits behind a proxy, e.g. `http://proxy/restpipe`), or a
 * unix socket (`RP_CLIENT_GATEWAY_SOCKET` / `RP_SERVER_GATEWAY_SOCKET`).
 */
export type GatewayLocation =
  | string
  | URL
  | {
      /** Path of the gateway's unix socket. */
      socketPath: string;
      /** Origin sent as `Host`. @default 'http://localhost' */
      origin?: string;
    };

/** Settings of a caller, applied to every call. */
export interface CallerOptions {
  /** Deadline of every call in ms, sent as `X-RestPipe-Timeout-Ms`; a call's own `timeoutMs` wins. @default the gateway's `RP_REQUEST_TIMEOUT_S` */
  timeoutMs?: number;
  /** Headers sent with every call (a call's own headers win). */
  headers?: Record<string, string>;
  /**
   * An undici dispatcher to send through instead of the caller's own Agent.
   * The caller does not close it: its owner does.
   */
  dispatcher?: Dispatcher;
}

/** Options of one call. */
export interface CallOptions {
  /** Arguments after `//`, each percent-encoded: the handler gets them exactly as given. */
  args?: readonly string[];
  /** Query parameters; an array repeats the key. */
  query?: QueryParams;
  /** Extra request headers (they reach the handler in `ctx.headers`). */
  headers?: Record<string, string>;
  /** This call's deadline in ms (`X-RestPipe-Timeout-Ms`); past it the call fails with code 244. */
  timeoutMs?: number;
  /** Aborts the call; the gateway then cancels the request on the other side too. */
  signal?: AbortSignal;
  /** Return the reply unbuffered as a `RawReply` (see there). */
  raw?: boolean;
  /** Fire-and-forget: sends `Prefer: respond-async`; the gateway accepts with 202 at once and the call resolves `undefined`. */
  notify?: boolean;
}

/** Options of a call that returns the parsed reply. */
export type DataCallOptions = CallOptions & { raw?: false; notify?: false };
/** Options of a call that returns a `RawReply`. */
export type RawCallOptions = CallOptions & { raw: true; notify?: false };
/** Options of a fire-and-forget call. */
export type NotifyCallOptions = CallOptions & { notify: true; raw?: false };
/** Options of a call, with a body (for `call`). */
export type CallWithBodyOptions = CallOptions & { body?: RequestBody };

/**
 * A successful reply unbuffered, for large replies: `body` is undici's
 * Readable (with `.json()`, `.text()`, `.arrayBuffer()`); read it to the end
 * or destroy it, or the connection stays busy.
 */
export interface RawReply {
  /** HTTP status (200, or 202 for an accepted notification). */
  status: number;
  /** The event code: 0, or -1 when a 2xx answer carried none. */
  code: number;
  /** Content type of the reply, as sent. */
  mimetype: string;
  headers: IncomingHttpHeaders;
  body: Dispatcher.ResponseData['body'];
}

/** A verb without a body: `get`, `delete`. */
export interface BodilessVerb {
  /** Unbuffered reply. */
  (noun: string, opts: RawCallOptions): Promise<RawReply>;
  /** Fire-and-forget. */
  (noun: string, opts: NotifyCallOptions): Promise<void>;
  /** The reply: parsed JSON, a string for `text/*`, a Buffer otherwise (typed as `T`, unchecked). */
  <T = unknown>(noun: string, opts?: DataCallOptions): Promise<T>;
  (noun: string, opts?: CallOptions): Promise<unknown>;
}

/** A verb with a body: `post`, `put`, `patch`. */
export interface BodyVerb {
  /** Unbuffered reply. */
  (noun: string, body: RequestBody | undefined, opts: RawCallOptions): Promise<RawReply>;
  /** Fire-and-forget. */
  (noun: string, body: RequestBody | undefined, opts: NotifyCallOptions): Promise<void>;
  /** The reply: parsed JSON, a string for `text/*`, a Buffer otherwise (typed as `T`, unchecked). */
  <T = unknown>(noun: string, body?: RequestBody, opts?: DataCallOptions): Promise<T>;
  (noun: string, body?: RequestBody, opts?: CallOptions): Promise<unknown>;
}

/** Any verb, body in the options (e.g. a DELETE with a body). */
export interface AnyVerb {
  (verb: Verb, noun: string, opts: CallWithBodyOptions & { raw: true; notify?: false }): Promise<RawReply>;
  (verb: Verb, noun: string, opts: CallWithBodyOptions & { notify: true; raw?: false }): Promise<void>;
  <T = unknown>(verb: Verb, noun: string, opts?: CallWithBodyOptions & { raw?: false; notify?: false }): Promise<T>;
  (verb: Verb, noun: string, opts?: CallWithBodyOptions): Promise<unknown>;
}

/**
 * One peer's handlers: the server (`caller.server`) or one client
 * (`caller.client(name)`). `noun` is like `'time'` or `'files/upload'`
 * (`POST files/upload` → `post_files_upload`).
 */
export interface Target {
  /** `server` or `client/<name>`, as in `PipeFailError.target`. */
  readonly target: string;
  readonly get: BodilessVerb;
  readonly delete: BodilessVerb;
  readonly post: BodyVerb;
  readonly put: BodyVerb;
  readonly patch: BodyVerb;
  readonly call: AnyVerb;
}

/** Fan-out options of one call. */
export type FanoutCallOptions = Omit<CallOptions, 'raw' | 'notify'>;

/** A fan-out verb without a body. */
export interface FanoutBodilessVerb {
  /** The entries exactly as the gateway sent them. */
  <T = unknown>(noun: string, opts: FanoutCallOptions & { raw: true }): Promise<Record<string, FanoutEntry<T>>>;
  /** Per client: its data, or a `PipeFailError`. */
  <T = unknown>(noun: string, opts?: FanoutCallOptions & { raw?: false }): Promise<FanoutResult<T>>;
}

/** A fan-out verb with a body (the same body goes to every client). */
export interface FanoutBodyVerb {
  /** The entries exactly as the gateway sent them. */
  <T = unknown>(noun: string, body: RequestBody | undefined, opts: FanoutCallOptions & { raw: true }): Promise<Record<string, FanoutEntry<T>>>;
  /** Per client: its data, or a `PipeFailError`. */
  <T = unknown>(noun: string, body?: RequestBody, opts?: FanoutCallOptions & { raw?: false }): Promise<FanoutResult<T>>;
}

/**
 * Many clients at once (server node): the selector is `*`, a comma list,
 * globs (`branch-*`, `?` one character) or an array of exact names. Every
 * selected client gets an entry; a failed one never fails the whole call.
 * The body is buffered (at most the gateway's `RP_MAX_BODY_BYTES`).
 */
export interface FanoutTarget {
  /** `clients/<selector>`. */
  readonly target: string;
  readonly get: FanoutBodilessVerb;
  readonly delete: FanoutBodilessVerb;
  readonly post: FanoutBodyVerb;
  readonly put: FanoutBodyVerb;
  readonly patch: FanoutBodyVerb;
}

/** Typed calls to one gateway. */
export interface Caller {
  /** The server's handlers (on a client node: `/server/<noun>`). */
  readonly server: Target;
  /** One client's handlers (on the server node: `/client/<name>/<noun>`); the name is percent-encoded. */
  client(name: string): Target;
  /** Many clients' handlers (on the server node: `/clients/<selector>/<noun>`). */
  clients(selector: string | readonly string[]): FanoutTarget;
  /** True after `close()`. */
  readonly closed: boolean;
  /**
   * Closes the caller's own undici Agent once calls in flight are done (a
   * `dispatcher` passed in is left open); later calls reject with
   * `CallerClosedError`. Idempotent.
   */
  close(): Promise<void>;
}

/** Slack past the gateway's deadline before undici gives up waiting for headers. */
const HEADERS_GRACE_MS = 10_000;

/**
 * A caller for the gateway at `gateway`.
 *
 * @example
 * const caller = createCaller('http://127.0.0.1:8001');
 * const { time_from_server } = await caller.server.get<{ time_from_server: number }>('time');
 * await caller.close();
 */
export function createCaller(gateway: GatewayLocation, opts: CallerOptions = {}): Caller {
  return new GatewayCaller(gateway, opts);
}

interface SendResult {
  response: Dispatcher.ResponseData;
  code: number;
  mimetype: string;
}

class GatewayCaller implements Caller {
  readonly server: Target;
  private readonly origin: string;
  private readonly basePath: string;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number | undefined;
  private closing: Promise<void> | undefined;

  constructor(gateway: GatewayLocation, opts: CallerOptions) {
    this.timeoutMs = opts.timeoutMs === undefined ? undefined : checkTimeout(opts.timeoutMs);
    this.headers = lowerCaseKeys(opts.headers);
    let agentOptions: Agent.Options = {};
    if (typeof gateway === 'object' && !(gateway instanceof URL)) {
      if (typeof gateway.socketPath !== 'string' || gateway.socketPath === '') throw new CallerUsageError('socketPath must be a non-empty string');
      ({ origin: this.origin, basePath: this.basePath } = parseGatewayUrl(gateway.origin ?? 'http://localhost'));
      agentOptions = { connect: { socketPath: gateway.socketPath } };
    } else {
      ({ origin: this.origin, basePath: this.basePath } = parseGatewayUrl(gateway));
    }
    this.ownsDispatcher = opts.dispatcher === undefined;
    this.dispatcher = opts.dispatcher ?? new Agent(agentOptions);
    this.server = new PipeTarget(this, 'server', '/server');
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  client(name: string): Target {
    return new PipeTarget(this, `client/${name}`, clientPrefix(name));
  }

  clients(selector: string | readonly string[]): FanoutTarget {
    return new PipeFanoutTarget(this, `clients/${selectorText(selector)}`, clientsPrefix(selector));
  }

  close(): Promise<void> {
    this.closing ??= this.ownsDispatcher ? this.dispatcher.close() : Promise.resolve();
    return this.closing;
  }

  /** Sends one call; throws `PipeFailError` for a failed answer (its body read), else returns it unread. */
  async send(verb: Verb, prefix: string, context: CallContext & { noun: string }, body: RequestBody | undefined, opts: CallOptions): Promise<SendResult> {
    if (this.closing) throw new CallerClosedError();
    checkVerb(verb);
    const path = this.basePath + eventPath(prefix, context.noun, opts.args, opts.query);
    const encoded = encodeBody(body);
    const headers: Record<string, string> = {};
    if (encoded.contentType) headers['content-type'] = encoded.contentType;
    Object.assign(headers, this.headers, lowerCaseKeys(opts.headers));
    const timeoutMs = opts.timeoutMs === undefined ? this.timeoutMs : checkTimeout(opts.timeoutMs);
    if (timeoutMs !== undefined) headers[TIMEOUT_HEADER] = String(timeoutMs);
    if (opts.notify) headers.prefer = 'respond-async';
    const response = await this.dispatcher.request({
      origin: this.origin,
      path,
      method: verb,
      headers,
      body: encoded.body ?? null,
      signal: opts.signal ?? null,
      // The gateway answers by the deadline; undici's own wait (300 s by default) must not cut in first.
      ...(timeoutMs === undefined ? {} : { headersTimeout: timeoutMs + HEADERS_GRACE_MS }),
    });
    const code = eventCodeOf(response.headers);
    if (isFailure(code, response.statusCode)) throw await failureOf(response, code, context);
    return { response, code, mimetype: mimetypeOf(response.headers) };
  }

  /** One call to one peer: data, a raw reply, or nothing for a notification. */
  async call(verb: Verb, prefix: string, target: string, noun: string, body: RequestBody | undefined, opts: CallOptions = {}): Promise<unknown> {
    const { response, code, mimetype } = await this.send(verb, prefix, { verb, noun, target }, body, opts);
    if (opts.notify) {
      await response.body.dump();
      return undefined;
    }
    if (opts.raw) return { status: response.statusCode, code, mimetype, headers: response.headers, body: response.body } satisfies RawReply;
    return decodeReply(mimetype, await readAll(response.body));
  }

  /** One call to many clients: the entries as sent (`raw`) or decoded. */
  async fanout(verb: Verb, prefix: string, target: string, noun: string, body: RequestBody | undefined, opts: CallOptions = {}): Promise<unknown> {
    const context = { verb, noun, target };
    const { response, mimetype } = await this.send(verb, prefix, context, body, { ...opts, raw: false, notify: false });
    const entries = fanoutEntries(decodeReply(mimetype || 'application/json', await readAll(response.body)));
    return opts.raw ? entries : decodeFanout(entries, response.statusCode, context);
  }
}

class PipeTarget implements Target {
  readonly get: BodilessVerb;
  readonly delete: BodilessVerb;
  readonly post: BodyVerb;
  readonly put: BodyVerb;
  readonly patch: BodyVerb;
  readonly call: AnyVerb;

  constructor(
    caller: GatewayCaller,
    readonly target: string,
    prefix: string,
  ) {
    const bodiless = (verb: Verb) => ((noun: string, opts?: CallOptions) => caller.call(verb, prefix, target, noun, undefined, opts)) as BodilessVerb;
    const withBody = (verb: Verb) =>
      ((noun: string, body?: RequestBody, opts?: CallOptions) => caller.call(verb, prefix, target, noun, body, opts)) as BodyVerb;
    this.get = bodiless('GET');
    this.delete = bodiless('DELETE');
    this.post = withBody('POST');
    this.put = withBody('PUT');
    this.patch = withBody('PATCH');
    this.call = ((verb: Verb, noun: string, opts: CallWithBodyOptions = {}) => {
      const { body, ...rest } = opts;
      return caller.call(verb, prefix, target, noun, body, rest);
    }) as AnyVerb;
  }
}

class PipeFanoutTarget implements FanoutTarget {
  readonly get: FanoutBodilessVerb;
  readonly delete: FanoutBodilessVerb;
  readonly post: FanoutBodyVerb;
  readonly put: FanoutBodyVerb;
  readonly patch: FanoutBodyVerb;

  constructor(
    caller: GatewayCaller,
    readonly target: string,
    prefix: string,
  ) {
    const bodiless = (verb: Verb) => ((noun: string, opts?: CallOptions) => caller.fanout(verb, prefix, target, noun, undefined, opts)) as FanoutBodilessVerb;
    const withBody = (verb: Verb) =>
      ((noun: string, body?: RequestBody, opts?: CallOptions) => caller.fanout(verb, prefix, target, noun, body, opts)) as FanoutBodyVerb;
    this.get = bodiless('GET');
    this.delete = bodiless('DELETE');
    this.post = withBody('POST');
    this.put = withBody('PUT');
    this.patch = withBody('PATCH');
  }
}

const VERBS: ReadonlySet<string> = new Set(['GET', 'POST', 'PUT', 'DELETE', 'PATCH']);

function checkVerb(verb: Verb): Verb {
  if (!VERBS.has(verb)) throw new CallerUsageError(`"${String(verb)}" is not a verb the gateway routes: use GET, POST, PUT, DELETE or PATCH`);
  return verb;
}

function checkTimeout(ms: number): number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0)
    throw new CallerUsageError(`timeoutMs must be a positive number of milliseconds, not ${String(ms)}`);
  return Math.ceil(ms);
}

function parseGatewayUrl(gateway: string | URL): { origin: string; basePath: string } {
  let url: URL;
  try {
    url = new URL(gateway);
  } catch (err) {
    throw new CallerUsageError(`"${String(gateway)}" is not a gateway URL such as http://127.0.0.1:8001`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CallerUsageError(`a gateway URL must be http: or https:, not ${url.protocol}`);
  if (url.search || url.hash) throw new CallerUsageError(`a gateway URL has no query or fragment: "${String(gateway)}"`);
  return { origin: url.origin, basePath: url.pathname.replace(/\/+$/, '') };
}

function lowerCaseKeys(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) out[name.toLowerCase()] = value;
  return out;
}
