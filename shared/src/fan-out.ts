/**
 * Fan-out: one request to many clients, one JSON answer keyed by client
 * name. The selector is `*`, a comma list, or globs (`branch-*`, `?` for one
 * character), combinable: `hq,branch-*`.
 */
import { httpStatusForEventCode } from './event-codes.js';
import type { RestPipeError } from './errors.js';
import type { ReplyResult } from './message-exchange.js';

/** The names among `names` that `selector` picks, sorted; listed names that are not connected are kept too. */
export function selectClients(selector: string, names: Iterable<string>): { matched: string[]; missing: string[] } {
  const all = [...names];
  const matched = new Set<string>();
  const missing: string[] = [];
  for (const part of selector
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    if (/[*?]/.test(part)) {
      const re = globToRegExp(part);
      for (const name of all) if (re.test(name)) matched.add(name);
    } else if (all.includes(part)) {
      matched.add(part);
    } else {
      missing.push(part);
    }
  }
  return { matched: [...matched].sort(), missing };
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

/** One client's part of a fan-out answer. */
export interface FanOutEntry {
  code: number;
  status: number;
  mimetype?: string;
  data?: unknown;
  data_base64?: string;
  exception?: unknown;
  error?: { code: string; message: string };
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;
const TEXT_TYPE = /^text\//i;

/** A client's reply as a fan-out entry: JSON parsed, text as a string, other bytes in base64. */
export function entryFromReply(reply: ReplyResult, body: Buffer): FanOutEntry {
  const entry: FanOutEntry = { code: reply.code, status: httpStatusForEventCode(reply.code), mimetype: reply.mimetype };
  if (JSON_TYPE.test(reply.mimetype)) {
    let parsed: unknown;
    try {
      parsed = body.length ? JSON.parse(body.toString('utf8')) : null;
    } catch {
      entry.data = body.toString('utf8');
      return entry;
    }
    const obj = parsed as { exception?: unknown; error?: { code: string; message: string } } | null;
    if (reply.code !== 0 && obj && typeof obj === 'object' && 'exception' in obj) entry.exception = obj.exception;
    else if (reply.code !== 0 && obj && typeof obj === 'object' && 'error' in obj) entry.error = obj.error;
    else entry.data = parsed;
  } else if (TEXT_TYPE.test(reply.mimetype)) {
    entry.data = body.toString('utf8');
  } else if (body.length > 0) {
    entry.data_base64 = body.toString('base64');
  }
  return entry;
}

/** A failure RestPipe itself raised for one client (not connected, deadline, pipe broke). */
export function entryFromError(err: RestPipeError): FanOutEntry {
  return { code: err.eventCode, status: httpStatusForEventCode(err.eventCode), error: { code: err.code, message: err.message } };
}
