/**
 * Event handlers: classes whose `<verb>_<noun>` methods answer events.
 *
 * `GET /server/time/utc` reaches `get_time_utc(ctx, postData)`; arguments
 * after `//` follow as strings: `GET /server/cat//a/b` → `get_cat(ctx, postData, "a", "b")`.
 * A method returns `[mimetype, code, data]` or just data (then
 * `application/json` and code 0, JSON encoded for you). A method named
 * `fallback` answers every noun that has no method of its own.
 */

import type { Readable } from 'node:stream';

/** Who is on the other end of the pipe. */
export interface PeerInfo {
  /** The peer's identity: the client's certificate CN, or the server's. */
  readonly name: string;
  /** The peer's network address, when there is one. */
  readonly address: string | undefined;
}

/** What a handler method learns about the event besides its body. */
export interface EventContext {
  readonly peer: PeerInfo;
  /** Lower-case verb: get, post, put, delete, patch. */
  readonly verb: string;
  /** Noun path, e.g. `time/utc`. */
  readonly noun: string;
  /** Parsed query string; a key given twice maps to an array. */
  readonly query: Readonly<Record<string, string | string[]>>;
  /** The raw query string without `?`. */
  readonly rawQuery: string;
  /** The caller's HTTP request headers, names in lower case. */
  readonly headers: Readonly<Record<string, string>>;
  /** Aborted when the caller gives up: deadline passed, HTTP caller gone, pipe down. */
  readonly signal: AbortSignal;
  /** The request's id on the pipe, for logs. */
  readonly requestId: number;
}

/**
 * The request body. `data` is the parsed value for JSON, a string for text
 * types and form data, the raw bytes otherwise; with no body, `mimetype` and
 * `data` are empty strings (as in the original).
 */
export interface PostData {
  readonly mimetype: string;
  readonly data: unknown;
  readonly body: Buffer;
  /**
   * The body as a stream, for methods the handler class lists in
   * `static streamedBodies`; then `body` is empty and `data` is `""`.
   */
  readonly stream: Readable | undefined;
}

/** `[mimetype, code, data]`, as in the original RestPipe. */
export type EventReplyTuple = readonly [mimetype: string, code: number, data: unknown];

/** What a handler method may return (or resolve to). */
export type HandlerResult = EventReplyTuple | unknown;

/** A handler method as the dispatcher calls it. */
export type HandlerMethod = (ctx: EventContext, postData: PostData, ...args: string[]) => HandlerResult | Promise<HandlerResult>;

/**
 * Marks a class as a base of handler classes: its own methods (and those of
 * its ancestors) are never reachable as handlers, only those of subclasses.
 */
export const BASE_HANDLER: unique symbol = Symbol.for('restpipe.baseHandler');

/**
 * Base of every event handler. Subclass `ServerEventHandler` (on the server)
 * or `ClientEventHandler` (on the client) and add `<verb>_<noun>` methods.
 */
export class EventHandler {
  static readonly [BASE_HANDLER] = true;
  /**
   * Methods that take the request body as a stream (`postData.stream`), with
   * no size cap; every other method gets the whole body, up to `RP_MAX_BODY_BYTES`.
   * Any method may return a Readable or an async iterable to stream its reply.
   */
  static readonly streamedBodies: readonly string[] = [];
  /**
   * Required arguments and query keys by method name, e.g.
   * `{ get_files: { args: ['path'], query: ['user'] } }`; a request without
   * one answers 400 (code 240) naming it, and the method is not called.
   */
  static readonly parameters: Readonly<Record<string, { readonly args?: readonly string[]; readonly query?: readonly string[] }>> = {};
}

/** True when `cls` or one of its ancestors is `base`. */
export function isHandlerClass(cls: unknown, base: abstract new (...args: never[]) => unknown): boolean {
  return typeof cls === 'function' && (cls === base || cls.prototype instanceof base);
}
