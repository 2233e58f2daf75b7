/**
 * Event return codes. Every HTTP answer a gateway gives carries one in the
 * `X-Event-Return-Code` header, with the fitting HTTP status.
 *
 * 0, 251 and 255 come from the original RestPipe and are set by the peer's
 * dispatcher; 240–247 are raised by RestPipe itself (the gateway or the pipe)
 * and never by a handler. Any other code a handler returns in
 * `[mimetype, code, data]` is the application's own and answers HTTP 200.
 *
 * `EVENT_CODES` is the one table of them: `EventCode`, `httpStatusForEventCode`,
 * the error registry (error-codes.ts) and the caller's copy
 * (caller/src/generated/event-codes.ts, written by
 * scripts/generate-event-codes.js; `npm run check:generated` fails when it is
 * stale) all read it. This file imports nothing, so the generator can load it
 * alone.
 */

/** One event code: its number on the wire, the HTTP status a gateway answers with, what it means. */
export interface EventCodeEntry {
  readonly code: number;
  readonly httpStatus: number;
  /** One sentence; the caller's copy carries it as the JSDoc of the name. */
  readonly doc: string;
}

/** Every event code by name, in numeric order. */
export const EVENT_CODES = {
  OK: { code: 0, httpStatus: 200, doc: 'The handler ran and answered.' },
  BAD_REQUEST: { code: 240, httpStatus: 400, doc: 'The request was malformed: bad arguments, a JSON body that does not parse, a missing parameter.' },
  BODY_TOO_LARGE: { code: 241, httpStatus: 413, doc: "The body is over the receiving node's maximum." },
  UNKNOWN_CLIENT: { code: 242, httpStatus: 404, doc: 'The server has no connected client by that name.' },
  PEER_NOT_CONNECTED: { code: 243, httpStatus: 503, doc: 'The pipe to the peer is not up (and did not come up within the wait).' },
  DEADLINE_EXCEEDED: { code: 244, httpStatus: 504, doc: 'The deadline passed before the reply came.' },
  PIPE_BROKEN: { code: 245, httpStatus: 502, doc: 'The pipe broke while the request was in flight.' },
  SHUTTING_DOWN: { code: 246, httpStatus: 503, doc: 'The node is shutting down and takes no new requests.' },
  OVERLOADED: { code: 247, httpStatus: 503, doc: 'The pipe has its maximum of requests in flight; retry after the Retry-After seconds.' },
  HANDLER_THREW: { code: 251, httpStatus: 500, doc: 'The handler threw; the body holds the exception.' },
  NO_HANDLER: { code: 255, httpStatus: 404, doc: 'No handler method for this verb and noun (or no such route).' },
} as const satisfies Record<string, EventCodeEntry>;

export type EventCodeName = keyof typeof EVENT_CODES;

/** Event codes by name, e.g. `EventCode.NO_HANDLER === 255`. */
export const EventCode: { readonly [N in EventCodeName]: (typeof EVENT_CODES)[N]['code'] } = Object.freeze(
  Object.fromEntries(Object.entries(EVENT_CODES).map(([name, entry]) => [name, entry.code])) as {
    [N in EventCodeName]: (typeof EVENT_CODES)[N]['code'];
  },
);

const HTTP_STATUS: ReadonlyMap<number, number> = new Map(Object.values(EVENT_CODES).map((entry) => [entry.code, entry.httpStatus]));

/** The HTTP status a gateway answers for an event code (200 for an application's own code). */
export function httpStatusForEventCode(code: number): number {
  return HTTP_STATUS.get(code) ?? 200;
}
