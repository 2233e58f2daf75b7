/**
 * The registry of RestPipe's own error codes: for each `RP_…` code, the event
 * code and HTTP status a gateway answers it with and its documentation line.
 *
 * The error classes (errors.ts), `ERROR_CODES` and the README's "Errors and
 * codes" table (checked by test/architecture.test.ts) all follow it. An error
 * code's HTTP status is always its event code's (event-codes.ts): the two
 * cannot disagree.
 */
import { EVENT_CODES, type EventCodeName } from './event-codes.js';

/** The source table: each code's event code by name, and its README line (markdown). */
const TABLE = {
  RP_BAD_REQUEST: { event: 'BAD_REQUEST', doc: 'malformed request: arguments, JSON body or parameters' },
  RP_BODY_TOO_LARGE: { event: 'BODY_TOO_LARGE', doc: "body over `RP_MAX_BODY_BYTES` (or a reply over the peer's frame limit)" },
  RP_UNKNOWN_CLIENT: { event: 'UNKNOWN_CLIENT', doc: 'no client with that name is connected to the server' },
  RP_PEER_NOT_CONNECTED: { event: 'PEER_NOT_CONNECTED', doc: 'the pipe is down' },
  RP_DEADLINE_EXCEEDED: { event: 'DEADLINE_EXCEEDED', doc: 'no reply within the deadline' },
  RP_PIPE_BROKEN: { event: 'PIPE_BROKEN', doc: 'the pipe broke with the request in flight' },
  RP_SHUTTING_DOWN: { event: 'SHUTTING_DOWN', doc: 'the node is draining' },
  RP_INSTANCE_GONE: {
    event: 'PIPE_BROKEN',
    doc: '(cluster) the server instance holding the client went away, or could not be reached, with the request in flight',
  },
  RP_CLUSTER_UNAVAILABLE: {
    event: 'PEER_NOT_CONNECTED',
    doc: '(cluster) the client is not connected to this instance and the link to NATS is down, so the other instances cannot be asked',
  },
  RP_OVERLOADED: {
    event: 'OVERLOADED',
    doc: 'the pipe has `RP_MAX_IN_FLIGHT` requests in flight; retry after the `Retry-After` seconds',
  },
  RP_NO_HANDLER: { event: 'NO_HANDLER', doc: 'the noun is not well formed, so no handler can match it' },
  RP_NO_ROUTE: {
    event: 'NO_HANDLER',
    doc: 'the URL is not under `/server/` (client node), `/client/<name>/` or `/clients/<selector>/` (server node)',
  },
  RP_INTERNAL: { event: 'HANDLER_THREW', doc: 'an unexpected gateway error (a bug: please report it)' },
  RP_PROTOCOL: { event: 'PIPE_BROKEN', doc: '(logs) the peer broke the wire protocol; the connection is closed' },
  RP_CONFIG: { event: 'BAD_REQUEST', doc: '(exit 2) an invalid setting; the message names the variable and the value' },
  RP_IDENTITY: {
    event: 'PEER_NOT_CONNECTED',
    doc: "(logs) the peer's certificate is not acceptable: revoked, no longer trusted, or without the right extended key usage",
  },
  RP_IDENTITY_FILES: {
    event: 'BAD_REQUEST',
    doc: "(exit 2) the node's own identity files do not parse, the key does not match the certificate, the certificate is not valid now, lacks the node's usage or is not signed by the CA, or a CRL in `crl.pem` is not signed by a CA of `ca.crt.pem`; (logs) the same found by a reload, which keeps the identity in use",
  },
} as const satisfies Record<`RP_${string}`, { event: EventCodeName; doc: string }>;

/** Every RestPipe error code, e.g. `'RP_UNKNOWN_CLIENT'`. */
export type ErrorCode = keyof typeof TABLE;

/** One error code as a gateway answers it. */
export interface ErrorCodeEntry {
  /** The stable identifier, in the `{"error": {"code"}}` body. */
  readonly code: ErrorCode;
  /** The name of its event code in `EventCode`. */
  readonly eventName: EventCodeName;
  /** The event code answered in `X-Event-Return-Code`. */
  readonly eventCode: number;
  /** The HTTP status answered: the event code's. */
  readonly httpStatus: number;
  /** When it happens: the README line. */
  readonly doc: string;
}

/** Every error code's entry, in the README's order. */
export const ERROR_REGISTRY: { readonly [C in ErrorCode]: ErrorCodeEntry } = Object.freeze(
  Object.fromEntries(
    (Object.entries(TABLE) as Array<[ErrorCode, (typeof TABLE)[ErrorCode]]>).map(([code, { event, doc }]) => {
      const { code: eventCode, httpStatus } = EVENT_CODES[event];
      return [code, Object.freeze({ code, eventName: event, eventCode, httpStatus, doc })];
    }),
  ) as { [C in ErrorCode]: ErrorCodeEntry },
);

/** Every error code with its documentation line; the README lists these. */
export const ERROR_CODES: { readonly [C in ErrorCode]: string } = Object.freeze(
  Object.fromEntries(Object.values(ERROR_REGISTRY).map((entry) => [entry.code, entry.doc])) as { [C in ErrorCode]: string },
);

/** True for a string that is one of RestPipe's error codes (e.g. from an answer's body). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(TABLE, code);
}
