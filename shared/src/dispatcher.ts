/**
 * Dispatcher: turns an event (verb, noun, args, body) into a call of the
 * handler method `<verb>_<noun with / as _>` and the result into a reply.
 *
 * Only methods that the handler's own classes define are reachable: the
 * method table is built once from the prototypes between the handler's class
 * and the first base handler class, so `constructor`, `__proto__`,
 * `toString` and base-class internals answer like a missing handler.
 */
import type { Readable } from 'node:stream';
import { EventCode } from './event-codes.js';
import { isBodyStream } from './pipe/streams.js';
import { BASE_HANDLER, type EventContext, type EventHandler, type HandlerMethod, type PostData } from './handler.js';

export const VERBS = ['get', 'post', 'put', 'delete', 'patch'] as const;
export type Verb = (typeof VERBS)[number];

const NOUN = /^[A-Za-z0-9_]+(?:\/[A-Za-z0-9_]+)*$/;
const METHOD = /^(?:get|post|put|delete|patch)_[A-Za-z0-9_]+$/;
const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;
const TEXT_TYPE = /^(?:text\/|application\/x-www-form-urlencoded\b)/i;

/** An event as the dispatcher receives it from the pipe. */
export interface IncomingEvent {
  verb: string;
  noun: string;
  args: string[];
  mimetype: string;
  body: Buffer;
  /** The body as a stream, for handlers listed in `streamedBodies`. */
  stream?: Readable;
  /** The requester's deadline in ms as it sent it (0: none). */
  deadlineMs?: number;
  /** A fire-and-forget notification: no one waits for the reply. */
  notify?: boolean;
  /** The length of `stream` as the requester declared it (-1 or absent: unknown). */
  contentLength?: number;
}

/** What goes back over the pipe. */
export interface EventReply {
  code: number;
  mimetype: string;
  body: Buffer;
  /** A body to stream instead of `body` (a handler returned a Readable or an async iterable). */
  stream?: AsyncIterable<unknown>;
  /** The handler method that ran, when one did (for per-handler metrics). */
  method?: string;
  /** The length of `stream` when known in advance (a forwarded reply); -1 or absent: unknown. */
  contentLength?: number;
}

/** What the pipe needs to know of a route before it dispatches: whether it takes the body as a stream. */
export interface RouteInfo {
  readonly streamed: boolean;
}

/**
 * What the pipe hands incoming events to: the `Dispatcher` (a handler's
 * methods), or anything else that answers events, such as a cluster
 * instance forwarding them to a client it holds.
 */
export interface EventRouter {
  /** The route of a verb and noun, resolved before the body is read; undefined: none. */
  route(verb: string, noun: string): RouteInfo | undefined;
  /** Answers one event; never rejects. */
  dispatch(event: IncomingEvent, ctx: EventContext, route: RouteInfo | undefined): Promise<EventReply>;
}

/** True when `noun` is a well-formed noun path (letters, digits, `_`, `/` between segments). */
export function isValidNoun(noun: string): boolean {
  return NOUN.test(noun);
}

/** The handler method name for a verb and noun: `GET time/utc` → `get_time_utc`. */
export function handlerMethodName(verb: string, noun: string): string {
  return `${verb.toLowerCase()}_${noun.replaceAll('/', '_')}`;
}

/** Name of the optional catch-all method for nouns without a method of their own. */
export const FALLBACK_METHOD = 'fallback';

/** A verb and noun resolved to its handler method. */
export interface Route {
  readonly method: HandlerMethod;
  /** `<verb>_<noun>`: the method name parameter checks use. */
  readonly name: string;
  /** The method name for metrics: `name`, or `fallback` when the fallback answers. */
  readonly reported: string;
  /** The method takes its request body as a stream (`streamedBodies`). */
  readonly streamed: boolean;
}

/** How many verb-and-noun routes the dispatcher remembers before it starts over. */
const ROUTE_TABLE_SIZE = 1000;

/** Required arguments and query keys of one handler method. */
export interface ParameterSpec {
  /** Names of the positional arguments after `//`, all required, in order. */
  readonly args?: readonly string[];
  /** Query keys that must be present. */
  readonly query?: readonly string[];
}

/** Collects the handler methods the handler's own classes define. */
function methodTable(handler: EventHandler): Map<string, HandlerMethod> {
  const table = new Map<string, HandlerMethod>();
  for (let proto: object | null = Object.getPrototypeOf(handler); proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    const ctor = (proto as { constructor?: unknown }).constructor;
    if (typeof ctor === 'function' && Object.hasOwn(ctor, BASE_HANDLER)) break;
    for (const name of Object.getOwnPropertyNames(proto)) {
      if ((!METHOD.test(name) && name !== FALLBACK_METHOD) || table.has(name)) continue;
      const desc = Object.getOwnPropertyDescriptor(proto, name);
      if (desc && typeof desc.value === 'function') table.set(name, desc.value as HandlerMethod);
    }
  }
  return table;
}

export class Dispatcher implements EventRouter {
  private readonly methods: Map<string, HandlerMethod>;
  private readonly fallback: HandlerMethod | undefined;
  private readonly streamed: ReadonlySet<string>;
  private readonly parameters: ReadonlyMap<string, ParameterSpec>;
  /** Verb and noun → route (null: no handler), bounded by ROUTE_TABLE_SIZE. */
  private readonly routes = new Map<string, Route | null>();

  constructor(readonly handler: EventHandler) {
    this.methods = methodTable(handler);
    this.fallback = this.methods.get(FALLBACK_METHOD);
    this.methods.delete(FALLBACK_METHOD);
    const cls = handler.constructor as { streamedBodies?: unknown; parameters?: unknown };
    this.streamed = new Set(Array.isArray(cls.streamedBodies) ? cls.streamedBodies.filter((n): n is string => typeof n === 'string') : []);
    const params = new Map<string, ParameterSpec>();
    if (cls.parameters && typeof cls.parameters === 'object') {
      for (const [name, spec] of Object.entries(cls.parameters as Record<string, ParameterSpec>)) params.set(name, spec);
    }
    this.parameters = params;
  }

  /** True when the handler for this verb and noun takes the request body as a stream. */
  takesStream(verb: string, noun: string): boolean {
    return this.route(verb, noun)?.streamed === true;
  }

  /**
   * The handler for a verb and noun, resolved once and remembered (a bounded
   * table, so hostile nouns cannot grow it): the method, its name for
   * metrics and parameter checks, and whether it takes a streamed body.
   */
  route(verb: string, noun: string): Route | undefined {
    const key = `${verb} ${noun}`;
    const known = this.routes.get(key);
    if (known !== undefined) return known ?? undefined;
    const method = this.resolve(verb, noun);
    let route: Route | null = null;
    if (method) {
      const name = handlerMethodName(verb, noun);
      const own = this.methods.has(name);
      route = { method, name, reported: own ? name : FALLBACK_METHOD, streamed: this.streamed.has(name) };
    }
    if (this.routes.size >= ROUTE_TABLE_SIZE) this.routes.clear();
    this.routes.set(key, route);
    return route ?? undefined;
  }

  /** Names of every reachable handler method, sorted. */
  get methodNames(): string[] {
    return [...this.methods.keys()].sort();
  }

  /** The method for a verb and noun (or the fallback), or undefined. */
  resolve(verb: string, noun: string): HandlerMethod | undefined {
    if (!isValidNoun(noun)) return undefined;
    return this.methods.get(handlerMethodName(verb, noun)) ?? this.fallback;
  }

  /** The first required argument or query key the event lacks, as a message; undefined when complete. */
  private missingParameter(name: string, event: IncomingEvent, ctx: EventContext): string | undefined {
    const spec = this.parameters.get(name);
    if (!spec) return undefined;
    const args = spec.args ?? [];
    for (let i = 0; i < args.length; i++) {
      if (event.args[i] === undefined || event.args[i] === '')
        return `missing argument "${args[i]}" (${event.verb.toUpperCase()} ${event.noun}//${args.map((a) => `<${a}>`).join('/')})`;
    }
    for (const key of spec.query ?? []) {
      if (ctx.query[key] === undefined) return `missing query parameter "${key}"`;
    }
    return undefined;
  }

  /** Runs the event's handler and encodes what it returns or throws; never rejects. */
  async dispatch(event: IncomingEvent, ctx: EventContext, route: Route | undefined = this.route(event.verb, event.noun)): Promise<EventReply> {
    if (!route) {
      return jsonReply(EventCode.NO_HANDLER, {
        exception: {
          message: `no handler for ${event.verb.toUpperCase()} ${event.noun} (${handlerMethodName(event.verb, event.noun)})`,
          traceback: '',
          class: 'NoHandlerError',
        },
      });
    }
    const { method, name } = route;
    const missing = this.parameters.size === 0 ? undefined : this.missingParameter(name, event, ctx);
    if (missing) {
      return jsonReply(EventCode.BAD_REQUEST, { error: { code: 'RP_BAD_REQUEST', message: missing } });
    }
    let postData: PostData;
    try {
      postData = event.stream ? { mimetype: event.mimetype, data: '', body: event.body, stream: event.stream } : decodePostData(event.mimetype, event.body);
    } catch (err) {
      return jsonReply(EventCode.BAD_REQUEST, {
        exception: { message: `request body is not valid JSON: ${(err as Error).message}`, traceback: '', class: 'BadRequestError' },
      });
    }
    let reply: EventReply;
    try {
      const result = await method.call(this.handler, ctx, postData, ...event.args);
      reply = encodeResult(result);
    } catch (err) {
      reply = exceptionReply(err);
    }
    reply.method = route.reported;
    return reply;
  }
}

function decodePostData(mimetype: string, body: Buffer): PostData {
  if (body.length === 0) return { mimetype, data: '', body, stream: undefined };
  if (JSON_TYPE.test(mimetype)) return { mimetype, data: JSON.parse(body.toString('utf8')), body, stream: undefined };
  if (TEXT_TYPE.test(mimetype)) return { mimetype, data: body.toString('utf8'), body, stream: undefined };
  return { mimetype, data: body, body, stream: undefined };
}

function isReplyTuple(value: unknown): value is readonly [string, number, unknown] {
  return Array.isArray(value) && value.length === 3 && typeof value[0] === 'string' && Number.isInteger(value[1]);
}

/** Encodes a handler's return value: `[mimetype, code, data]` or plain data as JSON. */
export function encodeResult(result: unknown): EventReply {
  if (!isReplyTuple(result)) {
    if (isBodyStream(result)) return { code: EventCode.OK, mimetype: 'application/octet-stream', body: EMPTY, stream: result };
    return jsonReply(EventCode.OK, result);
  }
  const [mimetype, code, data] = result;
  if (code < 0 || code > 0xffffffff) throw new RangeError(`event code ${code} is out of range`);
  if (isBodyStream(data)) return { code, mimetype, body: EMPTY, stream: data };
  if (Buffer.isBuffer(data)) return { code, mimetype, body: data };
  if (data instanceof Uint8Array) return { code, mimetype, body: Buffer.from(data.buffer, data.byteOffset, data.byteLength) };
  if (JSON_TYPE.test(mimetype)) return { code, mimetype, body: Buffer.from(JSON.stringify(data ?? null)) };
  if (typeof data === 'string') return { code, mimetype, body: Buffer.from(data) };
  if (data === undefined || data === null) return { code, mimetype, body: Buffer.alloc(0) };
  throw new TypeError(`a handler returned ${typeof data} data with mimetype "${mimetype}"; return a string or bytes`);
}

const EMPTY = Buffer.alloc(0);

function jsonReply(code: number, data: unknown): EventReply {
  return { code, mimetype: 'application/json', body: Buffer.from(JSON.stringify(data ?? null)) };
}

/** The reply for a handler that threw: `{"exception": {message, traceback, class}}`, code 251. */
export function exceptionReply(err: unknown): EventReply {
  const e = err instanceof Error ? err : new Error(String(err));
  return jsonReply(EventCode.HANDLER_THREW, {
    exception: { message: e.message, traceback: e.stack ?? '', class: e.constructor?.name || e.name },
  });
}
