/**
 * Event return codes. Every HTTP answer a gateway gives carries one in the
 * `X-Event-Return-Code` header, with the fitting HTTP status.
 *
 * 0, 251 and 255 come from the original RestPipe and are set by the peer's
 * dispatcher; 240–247 are raised by RestPipe itself (the gateway or the pipe)
 * and never by a handler. Any other code a handler returns in
 * `[mimetype, code, data]` is the application's own and answers HTTP 200.
 */
export const EventCode = {
  /** The handler ran and answered. */
  OK: 0,
  /** The request was malformed: bad arguments, a JSON body that does not parse, a missing parameter. */
  BAD_REQUEST: 240,
  /** The body is over the configured maximum. */
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

export type EventCodeName = keyof typeof EventCode;

const HTTP_STATUS: ReadonlyMap<number, number> = new Map([
  [EventCode.OK, 200],
  [EventCode.BAD_REQUEST, 400],
  [EventCode.BODY_TOO_LARGE, 413],
  [EventCode.UNKNOWN_CLIENT, 404],
  [EventCode.PEER_NOT_CONNECTED, 503],
  [EventCode.DEADLINE_EXCEEDED, 504],
  [EventCode.PIPE_BROKEN, 502],
  [EventCode.SHUTTING_DOWN, 503],
  [EventCode.HANDLER_THREW, 500],
  [EventCode.NO_HANDLER, 404],
]);

/** The HTTP status a gateway answers for an event code. */
export function httpStatusForEventCode(code: number): number {
  return HTTP_STATUS.get(code) ?? 200;
}
