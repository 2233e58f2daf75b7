/**
 * `raiseForException`: the original RestPipe's `raise_for_exception` for raw
 * undici responses, and the failure path every caller call shares.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { parseFailureBody, readCapped } from './body.js';
import { pipeFailError, type PipeFailError } from './errors.js';
import { eventCodeOf, isFailure } from './event-codes.js';

/** At most this much of a failed answer's body is read; the rest is dropped. */
export const MAX_FAILURE_BODY_BYTES = 1024 * 1024;

/** What is known about the call an answer belongs to, for the error. */
export interface CallContext {
  /** Upper-case HTTP verb. */
  verb?: string;
  /** The noun called. */
  noun?: string;
  /** `server`, `client/<name>` or `clients/<selector>`. */
  target?: string;
}

/** The parts of an HTTP answer the failure path needs (an undici `ResponseData` has them). */
export interface AnswerLike {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: Readable;
}

/** The content type of an answer as sent (parameters included); `''` when absent. */
export function mimetypeOf(headers: IncomingHttpHeaders): string {
  const value = headers['content-type'];
  return (Array.isArray(value) ? value[0] : value) ?? '';
}

/** Reads a failed answer's body (up to 1 MiB) and builds its `PipeFailError`. */
export async function failureOf(answer: AnswerLike, code: number, context: CallContext = {}): Promise<PipeFailError> {
  const mimetype = mimetypeOf(answer.headers);
  const bytes = await readCapped(answer.body, MAX_FAILURE_BODY_BYTES);
  const { exception, error, data } = parseFailureBody(mimetype, bytes);
  return pipeFailError({ code, status: answer.statusCode, ...context, exception, error, mimetype, data });
}

/**
 * Throws a `PipeFailError` when a gateway answer failed: a non-zero
 * `X-Event-Return-Code`, or no such header and a non-2xx status (then
 * `code` is `NO_EVENT_CODE`, -1). The error body is read (at most 1 MiB) to
 * fill in the remote exception or RestPipe error.
 *
 * Otherwise resolves with the response untouched, its body unread.
 *
 * @example
 * const res = await raiseForException(await request(`${gw}/server/report`));
 * const report = await res.body.json();
 */
export async function raiseForException<T extends Dispatcher.ResponseData<unknown> | AnswerLike>(response: T, context?: CallContext): Promise<T> {
  const code = eventCodeOf(response.headers);
  if (!isFailure(code, response.statusCode)) return response;
  throw await failureOf(response, code, context);
}
