/**
 * Errors of the pipe: one class per condition, each with a stable string
 * `code` from the registry (error-codes.ts), which also gives the event code
 * and HTTP status a gateway answers it with. `errorFromWire` maps an answer's
 * event code and `{"error": …}` body back to an error.
 */
import { ERROR_REGISTRY, type ErrorCode, isErrorCode } from './error-codes.js';
import { httpStatusForEventCode } from './event-codes.js';

export class RestPipeError extends Error {
  /** Stable, documented identifier, e.g. `RP_PEER_NOT_CONNECTED`. */
  readonly code: ErrorCode;
  /** The event code a gateway answers with for this error. */
  readonly eventCode: number;
  /** The HTTP status a gateway answers with for this error: the event code's. */
  readonly httpStatus: number;
  /** An error with a registered code; its event code and HTTP status are the registry's. */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    const eventCode = ERROR_REGISTRY[code].eventCode;
    super(message, options);
    this.code = code;
    this.eventCode = eventCode;
    this.httpStatus = httpStatusForEventCode(eventCode);
    this.name = new.target.name;
  }
}

/** The request is malformed (arguments, JSON body, parameters). */
export class BadRequestError extends RestPipeError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_BAD_REQUEST', message, options);
  }
}

/** The body is larger than the configured maximum (or a reply larger than the peer's frame limit). */
export class BodyTooLargeError extends RestPipeError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_BODY_TOO_LARGE', message, options);
  }
}

/** The server has no connected client with this name. */
export class UnknownClientError extends RestPipeError {
  constructor(readonly clientName: string) {
    super('RP_UNKNOWN_CLIENT', `no client named "${clientName}" is connected`);
  }
}

/** The pipe to the peer is down. */
export class PeerNotConnectedError extends RestPipeError {
  constructor(message = 'the pipe to the peer is not connected', options?: ErrorOptions) {
    super('RP_PEER_NOT_CONNECTED', message, options);
  }
}

/** The reply did not come before the deadline. */
export class DeadlineExceededError extends RestPipeError {
  constructor(readonly deadlineMs: number) {
    super('RP_DEADLINE_EXCEEDED', `no reply within the deadline of ${deadlineMs} ms`);
  }
}

/** The pipe broke while the request was in flight. */
export class PipeBrokenError extends RestPipeError {
  constructor(message = 'the pipe broke while the request was in flight', options?: ErrorOptions) {
    super('RP_PIPE_BROKEN', message, options);
  }
}

/** (cluster) The server instance holding the client went away, or could not be reached, with the request in flight. */
export class InstanceGoneError extends RestPipeError {
  constructor(message = 'the server instance holding the client went away with the request in flight', options?: ErrorOptions) {
    super('RP_INSTANCE_GONE', message, options);
  }
}

/** (cluster) The client is not on this instance and NATS is unreachable, so no other instance can be asked. */
export class ClusterUnavailableError extends RestPipeError {
  constructor(clientName: string, options?: ErrorOptions) {
    super(
      'RP_CLUSTER_UNAVAILABLE',
      `client "${clientName}" is not connected to this instance and the link to NATS is down, so the other instances cannot be asked`,
      options,
    );
  }
}

/** The node (or the peer) is draining and takes no new requests. */
export class ShuttingDownError extends RestPipeError {
  constructor(message = 'the node is shutting down', options?: ErrorOptions) {
    super('RP_SHUTTING_DOWN', message, options);
  }
}

/**
 * The pipe already carries its maximum of requests in flight. The gateway
 * answers 503 with `Retry-After: retryAfterS`.
 */
export class OverloadedError extends RestPipeError {
  constructor(
    /** The in-flight limit that was reached. */
    readonly limit: number,
    /** Whole seconds the caller should wait before retrying (the `Retry-After` header). */
    readonly retryAfterS = 1,
    options?: ErrorOptions,
  ) {
    super('RP_OVERLOADED', `too many requests in flight on this pipe (limit ${limit}); retry later`, options);
  }
}

/** The noun of the URL is not well formed, so no handler can match it. */
export class InvalidNounError extends RestPipeError {
  constructor(readonly noun: string) {
    super('RP_NO_HANDLER', `"${noun}" is not a valid noun: use letters, digits, "_" and "/"`);
  }
}

/** The URL is not under the gateway's event prefix. */
export class NoRouteError extends RestPipeError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_NO_ROUTE', message, options);
  }
}

/** An unexpected gateway error (a bug); pass the original as `cause`. */
export class InternalError extends RestPipeError {
  constructor(message = 'internal gateway error', options?: ErrorOptions) {
    super('RP_INTERNAL', message, options);
  }
}

/** The peer broke the protocol (bad frame, wrong version, unexpected frame). */
export class ProtocolError extends RestPipeError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_PROTOCOL', message, options);
  }
}

/** A setting is invalid; the message names the variable and the value. */
export class ConfigError extends RestPipeError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_CONFIG', message, options);
  }
}

/** The peer's certificate is not acceptable (usage, missing name). */
export class IdentityError extends RestPipeError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_IDENTITY', message, options);
  }
}

/**
 * The node's own identity (key, certificate, CA in its certificate folder)
 * cannot work: found before anything listens, at start or by `--check-config`.
 */
export class IdentityFilesError extends RestPipeError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_IDENTITY_FILES', message, options);
  }
}

/** RestPipe's own error as an answer's body carries it: `{"error": {"code", "message"}}`. */
export interface WireError {
  code: string;
  message: string;
}

/**
 * The error an answer carries, from its event code and the `error` of its
 * body: a `RestPipeError` with that code, event code, HTTP status and
 * message. Match on `code`: the wire carries no subclass fields
 * (`clientName`, `retryAfterS`, …), so the result is of the base class.
 * Undefined when the answer is not one of RestPipe's own errors: no `error`,
 * a code that is not registered, or an event code that is not the code's.
 */
export function errorFromWire(eventCode: number, error: { code?: unknown; message?: unknown } | undefined): RestPipeError | undefined {
  if (!error || !isErrorCode(error.code) || ERROR_REGISTRY[error.code].eventCode !== eventCode) return undefined;
  return new RestPipeError(error.code, typeof error.message === 'string' ? error.message : '');
}
