/**
 * Event return codes as a gateway answers them in `X-Event-Return-Code`.
 *
 * A copy of `EventCode` in `@restpipe/shared` (a test checks they agree): the
 * caller is installed alone by applications and depends on no other
 * RestPipe package at run time.
 */
import type { IncomingHttpHeaders } from 'node:http';

/** Event codes by name: 0 ok, 240–246 RestPipe's own, 251 the handler threw, 255 no handler. */
export const EventCode = {
  /** The handler ran and answered. */
  OK: 0,
  /** The request was malformed: bad arguments, a JSON body that does not parse, a missing parameter. */
  BAD_REQUEST: 240,
  /** The body is over the receiving node's maximum. */
  BODY_TOO_LARGE: 241,
  /** The server has no connected client by that name. */
  UNKNOWN_CLIENT: 242,
  /** The pipe to the peer is not up (and did not come up within the wait). */
  PEER_NOT_CONNECTED: 243,
  /** The deadline passed before the reply came. */
  DEADLINE_EXCEEDED: 244,
  /** The pipe broke while the request was in flight. */
  PIPE_BROKEN: 245,
  /** The node is shutting down and takes no new requests. */
  SHUTTING_DOWN: 246,
  /** The handler threw; the body holds the exception. */
  HANDLER_THREW: 251,
  /** No handler method for this verb and noun. */
  NO_HANDLER: 255,
} as const;

/**
 * The `code` of a `PipeFailError` for an answer without a (numeric)
 * `X-Event-Return-Code` header and a non-2xx status: it did not come from a
 * RestPipe gateway (e.g. a proxy's 502 page).
 */
export const NO_EVENT_CODE = -1;

/** Response header carrying the event code of every gateway answer (lower case, as Node gives it). */
export const EVENT_CODE_HEADER = 'x-event-return-code';
/** Request header that sets a request's deadline in milliseconds. */
export const TIMEOUT_HEADER = 'x-restpipe-timeout-ms';

/** The event code of an answer, or `NO_EVENT_CODE` when the header is missing or not a whole number. */
export function eventCodeOf(headers: IncomingHttpHeaders): number {
  const raw = headers[EVENT_CODE_HEADER];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined || !/^\s*-?\d+\s*$/.test(value)) return NO_EVENT_CODE;
  return Number(value);
}

/** True when an answer with this event code and HTTP status is a failure. */
export function isFailure(code: number, status: number): boolean {
  if (code === NO_EVENT_CODE) return status < 200 || status > 299;
  return code !== EventCode.OK;
}
