/**
 * Errors of the pipe, each with a stable string `code` and the event code it
 * answers with at a gateway. `errorForEventCode` maps a wire code back to an
 * error class.
 */
import { EventCode } from './event-codes.js';

export class RestPipeError extends Error {
  /** Stable, documented identifier, e.g. `RP_PEER_NOT_CONNECTED`. */
  readonly code: string;
  /** The event code a gateway answers with for this error. */
  readonly eventCode: number;
  constructor(code: string, eventCode: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.eventCode = eventCode;
    this.name = new.target.name;
  }
}

/** The request is malformed (arguments, JSON body, parameters). */
export class BadRequestError extends RestPipeError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_BAD_REQUEST', EventCode.BAD_REQUEST, message, options);
  }
}

/** The body is larger than the configured maximum. */
export class BodyTooLargeError extends RestPipeError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_BODY_TOO_LARGE', EventCode.BODY_TOO_LARGE, message, options);
  }
}

/** The server has no connected client with this name. */
export class UnknownClientError extends RestPipeError {
  constructor(readonly clientName: string) {
    super('RP_UNKNOWN_CLIENT', EventCode.UNKNOWN_CLIENT, `no client named "${clientName}" is connected`);
  }
}

/** The pipe to the peer is down. */
export class PeerNotConnectedError extends RestPipeError {
  constructor(message = 'the pipe to the peer is not connected', options?: ErrorOptions) {
    super('RP_PEER_NOT_CONNECTED', EventCode.PEER_NOT_CONNECTED, message, options);
  }
}

/** The reply did not come before the deadline. */
export class DeadlineExceededError extends RestPipeError {
  constructor(readonly deadlineMs: number) {
    super('RP_DEADLINE_EXCEEDED', EventCode.DEADLINE_EXCEEDED, `no reply within the deadline of ${deadlineMs} ms`);
  }
}

/** The pipe broke while the request was in flight. */
export class PipeBrokenError extends RestPipeError {
  constructor(message = 'the pipe broke while the request was in flight', options?: ErrorOptions) {
    super('RP_PIPE_BROKEN', EventCode.PIPE_BROKEN, message, options);
  }
}

/** The node (or the peer) is draining and takes no new requests. */
export class ShuttingDownError extends RestPipeError {
  constructor(message = 'the node is shutting down', options?: ErrorOptions) {
    super('RP_SHUTTING_DOWN', EventCode.SHUTTING_DOWN, message, options);
  }
}

/** The peer broke the protocol (bad frame, wrong version, unexpected frame). */
export class ProtocolError extends RestPipeError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_PROTOCOL', EventCode.PIPE_BROKEN, message, options);
  }
}

/** A setting is invalid; the message names the variable and the value. */
export class ConfigError extends RestPipeError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_CONFIG', EventCode.BAD_REQUEST, message, options);
  }
}

/** The peer's certificate is not acceptable (usage, missing name). */
export class IdentityError extends RestPipeError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_IDENTITY', EventCode.PEER_NOT_CONNECTED, message, options);
  }
}

/** Every error code with its documentation line; the README lists these. */
export const ERROR_CODES = {
  RP_NO_HANDLER: 'the noun is not well formed, so no handler can match it',
  RP_NO_ROUTE: 'the URL is not under /server/ (client node) or /client/<name>/ (server node)',
  RP_INTERNAL: 'an unexpected gateway error (a bug: please report it)',
  RP_BAD_REQUEST: 'malformed request: arguments, JSON body or parameters',
  RP_BODY_TOO_LARGE: 'body over RP_MAX_BODY_BYTES',
  RP_UNKNOWN_CLIENT: 'no client with that name is connected to the server',
  RP_PEER_NOT_CONNECTED: 'the pipe is down',
  RP_DEADLINE_EXCEEDED: 'no reply within the deadline',
  RP_PIPE_BROKEN: 'the pipe broke with the request in flight',
  RP_SHUTTING_DOWN: 'the node is draining',
  RP_PROTOCOL: 'the peer broke the wire protocol',
  RP_CONFIG: 'an invalid setting',
  RP_IDENTITY: 'an unacceptable certificate',
} as const;
