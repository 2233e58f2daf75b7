/**
 * Event return codes as a gateway answers them in `X-Event-Return-Code`.
 *
 * `EventCode` is generated (generated/event-codes.ts, by
 * scripts/generate-event-codes.js) from the table in `@restpipe/shared`, and
 * `npm run check:generated` fails when it is stale: the caller is installed
 * alone by applications and depends on no other RestPipe package at run time.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { EventCode } from './generated/event-codes.js';

export { EventCode };

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
