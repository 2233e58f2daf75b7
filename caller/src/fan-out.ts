/**
 * Fan-out answers: the server gateway's `/clients/<selector>/<noun>` answers
 * one JSON object keyed by client name, one entry per selected client
 * (including named clients that are not connected).
 */
import { failureParts } from './body.js';
import { BadReplyError, pipeFailError, type PipeFailError, type RemoteError, type RemoteException } from './errors.js';
import type { CallContext } from './raise-for-exception.js';

/** One client's part of a fan-out answer, as the gateway sends it. */
export interface FanoutEntry<T = unknown> {
  /** That client's event code: 0 ok, else as in a single call (242 when the named client is not connected). */
  code: number;
  /** The HTTP status this code maps to. */
  status?: number;
  /** Content type of that client's reply. */
  mimetype?: string;
  /** The reply: the JSON value for JSON, a string for `text/*`. */
  data?: T;
  /** The reply's bytes in base64, for other content types. */
  data_base64?: string;
  /** The client handler's exception (code 251). */
  exception?: RemoteException;
  /** RestPipe's own error for that client (codes 240–246). */
  error?: RemoteError;
}

/**
 * The decoded fan-out answer: per client name, the reply's data (a JSON
 * value, a string for text, a Buffer for bytes) or a `PipeFailError`.
 *
 * @example
 * for (const [name, r] of Object.entries(result)) {
 *   if (r instanceof PipeFailError) console.warn(name, r.code, r.message);
 *   else console.log(name, r);
 * }
 */
export type FanoutResult<T = unknown> = Record<string, T | PipeFailError>;

/** Checks the answer's shape: an object of entries, each with a numeric `code`. */
export function fanoutEntries(value: unknown): Record<string, FanoutEntry> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BadReplyError('a fan-out answer must be a JSON object keyed by client name');
  }
  for (const [name, entry] of Object.entries(value)) {
    if (entry === null || typeof entry !== 'object' || typeof (entry as { code?: unknown }).code !== 'number') {
      throw new BadReplyError(`the fan-out entry for "${name}" has no numeric code`);
    }
  }
  return value as Record<string, FanoutEntry>;
}

/** Entries to data or `PipeFailError`s (`status` is the answer's, when an entry has none). */
export function decodeFanout<T>(entries: Record<string, FanoutEntry>, status: number, context: CallContext): FanoutResult<T> {
  const out: FanoutResult<T> = {};
  for (const [name, entry] of Object.entries(entries)) {
    const data = entry.data_base64 !== undefined ? Buffer.from(entry.data_base64, 'base64') : entry.data;
    if (entry.code === 0) {
      out[name] = data as T;
      continue;
    }
    out[name] = pipeFailError({
      code: entry.code,
      status: entry.status ?? status,
      verb: context.verb,
      noun: context.noun,
      target: `client/${name}`,
      client: name,
      ...failureParts(entry),
      mimetype: entry.mimetype,
      data,
    });
  }
  return out;
}
