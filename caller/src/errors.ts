/**
 * Errors of the typed caller.
 *
 * - `PipeFailError`: the gateway answered with a non-zero event code (the
 *   remote handler threw, no handler, unknown client, deadline, …). Its
 *   `code` is that event code, as in the original RestPipe's
 *   `raise_for_exception`.
 * - `CallerError` and its subclasses: the caller refused or could not read a
 *   call; `code` is a stable `RP_CALLER_*` string.
 *
 * Errors of the transport itself (gateway unreachable, connection reset, an
 * aborted `signal`) are undici's and pass through unchanged.
 * Every code is documented in docs/caller.md (a test checks it).
 */
import { NO_EVENT_CODE } from './event-codes.js';

/** The remote handler's exception, from a `{"exception": …}` body (event code 251, some 255 and 240). */
export interface RemoteException {
  message: string;
  traceback: string;
  class: string;
}

/** RestPipe's own error, from an `{"error": …}` body (event codes 240–247, some 255). */
export interface RemoteError {
  /** Stable `RP_…` code, e.g. `RP_UNKNOWN_CLIENT`. */
  code: string;
  message: string;
}

/** What a `PipeFailError` knows about the failed call. */
export interface PipeFailDetails {
  /** The event code (`X-Event-Return-Code`), or `NO_EVENT_CODE` (-1). */
  code: number;
  /** HTTP status of the answer (for a fan-out entry: the status that entry's code maps to). */
  status: number;
  /** Upper-case HTTP verb, when known. */
  verb?: string | undefined;
  /** The noun called, e.g. `files/upload`, when known. */
  noun?: string | undefined;
  /** Where the call went: `server`, `client/<name>`, or `clients/<selector>`; when known. */
  target?: string | undefined;
  /** For a fan-out entry: the client it is about. */
  client?: string | undefined;
  exception?: RemoteException | undefined;
  error?: RemoteError | undefined;
  /** Content type of the answer. */
  mimetype?: string | undefined;
  /** The answer's body decoded (JSON value, text, or bytes); for application codes, the handler's data. */
  data?: unknown;
}

/**
 * A gateway answered with a non-zero event code.
 *
 * `code` is the event code (0 never; 240–247 RestPipe, 251 the handler threw,
 * 255 no handler, others the application's own, `-1` not a RestPipe answer).
 * For 251 `remoteClass`, `message` and `traceback` come from the remote
 * exception; for RestPipe's own errors `errorCode` is the `RP_…` code.
 */
export class PipeFailError extends Error {
  /** The event code (`X-Event-Return-Code`); `-1` when the answer had none. */
  readonly code: number;
  /** HTTP status of the answer. */
  readonly status: number;
  /** Class name of the remote exception (`"TypeError"`), when the body held one. */
  readonly remoteClass: string | undefined;
  /** Stack trace of the remote exception, when the body held one. */
  readonly traceback: string | undefined;
  /** RestPipe's own error code (`RP_UNKNOWN_CLIENT`, …), when the body held an `error`. */
  readonly errorCode: string | undefined;
  /** Upper-case HTTP verb of the call, when known. */
  readonly verb: string | undefined;
  /** The noun called, when known. */
  readonly noun: string | undefined;
  /** `server`, `client/<name>` or `clients/<selector>`, when known. */
  readonly target: string | undefined;
  /** For a fan-out entry: the client it is about. */
  readonly client: string | undefined;
  /** Content type of the answer. */
  readonly mimetype: string | undefined;
  /** The answer's body decoded: a JSON value, a string for text, else a Buffer. */
  readonly data: unknown;

  constructor(message: string, details: PipeFailDetails, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PipeFailError';
    this.code = details.code;
    this.status = details.status;
    this.remoteClass = details.exception?.class;
    this.traceback = details.exception?.traceback;
    this.errorCode = details.error?.code;
    this.verb = details.verb;
    this.noun = details.noun;
    this.target = details.target;
    this.client = details.client;
    this.mimetype = details.mimetype;
    this.data = details.data;
  }
}

/**
 * The one place a failed answer becomes an error: the message is the remote
 * exception's or RestPipe error's message, else one naming the call and code.
 */
export function pipeFailError(details: PipeFailDetails): PipeFailError {
  const message = details.exception?.message || details.error?.message || describeFailure(details);
  return new PipeFailError(message, details);
}

function describeFailure(d: PipeFailDetails): string {
  const call = [d.verb, d.target && d.noun ? `${d.target}/${d.noun}` : (d.noun ?? d.target)].filter(Boolean).join(' ');
  const what = d.code === NO_EVENT_CODE ? `HTTP ${d.status} without an event code (not a RestPipe gateway answer?)` : `event code ${d.code} (HTTP ${d.status})`;
  return call ? `${call} answered ${what}` : `answered ${what}`;
}

/** Base class of the caller's own errors, each with a stable `RP_CALLER_*` code. */
export class CallerError extends Error {
  /** Stable, documented identifier, e.g. `RP_CALLER_USAGE`. */
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A call the caller refuses before sending: a malformed noun, an empty client name, a bad option. */
export class CallerUsageError extends CallerError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_CALLER_USAGE', message, options);
  }
}

/** A call on a caller after `close()`. */
export class CallerClosedError extends CallerError {
  constructor(message = 'the caller is closed', options?: ErrorOptions) {
    super('RP_CALLER_CLOSED', message, options);
  }
}

/** A successful answer the caller cannot read: a JSON reply that does not parse, a fan-out answer that is not an object. */
export class BadReplyError extends CallerError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_CALLER_BAD_REPLY', message, options);
  }
}

/** Every `CallerError` code with its documentation line; docs/caller.md lists them all. */
export const CALLER_ERROR_CODES = {
  RP_CALLER_USAGE: 'the call was refused before sending: malformed noun, empty client name or selector, bad option',
  RP_CALLER_CLOSED: 'the caller was closed',
  RP_CALLER_BAD_REPLY: 'a successful answer could not be read (JSON that does not parse, a fan-out answer that is not an object)',
} as const;
