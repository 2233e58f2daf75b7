/**
 * Request bodies out (JSON, text, bytes, streams) and reply bodies in
 * (JSON value, text, Buffer), plus reading the body of a failed answer.
 */
import { Readable } from 'node:stream';
import { BadReplyError, type RemoteError, type RemoteException } from './errors.js';

/**
 * A request body: a plain object, array, number, boolean or `null` is sent as
 * JSON; a string as `text/plain`; a Buffer or Uint8Array as
 * `application/octet-stream`; a Readable or async iterable of bytes is
 * streamed (`application/octet-stream`, chunked). A `content-type` in the
 * call's headers overrides the chosen type (not the encoding).
 */
export type RequestBody = string | Uint8Array | Readable | AsyncIterable<Uint8Array | string> | object | number | boolean | null;

export interface EncodedBody {
  body: string | Uint8Array | Readable | undefined;
  contentType: string | undefined;
}

/** Chooses the wire form and content type of a request body. */
export function encodeBody(body: RequestBody | undefined): EncodedBody {
  if (body === undefined) return { body: undefined, contentType: undefined };
  if (typeof body === 'string') return { body, contentType: 'text/plain; charset=utf-8' };
  if (body instanceof Uint8Array) return { body, contentType: 'application/octet-stream' };
  if (body instanceof Readable) return { body, contentType: 'application/octet-stream' };
  if (body !== null && typeof body === 'object' && Symbol.asyncIterator in body) {
    return { body: Readable.from(body as AsyncIterable<Uint8Array | string>, { objectMode: false }), contentType: 'application/octet-stream' };
  }
  return { body: JSON.stringify(body), contentType: 'application/json' };
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;
const TEXT_TYPE = /^text\//i;

/** True for `application/json` and `application/<x>+json`. */
export function isJsonType(mimetype: string): boolean {
  return JSON_TYPE.test(mimetype);
}

/** True for `text/*`. */
export function isTextType(mimetype: string): boolean {
  return TEXT_TYPE.test(mimetype);
}

/**
 * A reply body as the caller returns it: the parsed value for JSON
 * (`undefined` when empty), a string for `text/*`, else the bytes.
 */
export function decodeReply(mimetype: string, bytes: Buffer): unknown {
  if (isJsonType(mimetype)) {
    if (bytes.length === 0) return undefined;
    try {
      return JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new BadReplyError(`the reply says ${mimetype} but is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
  }
  if (isTextType(mimetype)) return bytes.toString('utf8');
  return bytes;
}

/** Reads a body whole. */
export async function readAll(body: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of body) parts.push(toBuffer(part));
  return Buffer.concat(parts);
}

/**
 * Reads up to `max` bytes of a body and drops the rest (the stream is
 * destroyed), so a huge error body cannot exhaust memory.
 */
export async function readCapped(body: Readable, max: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of body) {
    const buf = toBuffer(part);
    parts.push(buf);
    size += buf.length;
    if (size >= max) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(parts).subarray(0, max);
}

function toBuffer(part: unknown): Buffer {
  if (Buffer.isBuffer(part)) return part;
  if (typeof part === 'string') return Buffer.from(part, 'utf8');
  return Buffer.from(part as Uint8Array);
}

/** What a failed answer's body holds. */
export interface FailureBody {
  exception?: RemoteException;
  error?: RemoteError;
  data: unknown;
}

/**
 * The `exception` or `error` of a failed answer's body, and the body decoded
 * as `data`. Never throws: a body that is not what RestPipe sends is kept as
 * text or bytes.
 */
export function parseFailureBody(mimetype: string, bytes: Buffer): FailureBody {
  let data: unknown = isTextType(mimetype) ? bytes.toString('utf8') : bytes;
  if (isJsonType(mimetype) || (mimetype === '' && bytes[0] === 0x7b)) {
    try {
      data = bytes.length === 0 ? undefined : JSON.parse(bytes.toString('utf8'));
    } catch {
      data = bytes.toString('utf8');
    }
  }
  return { ...failureParts(data), data };
}

/** `exception` / `error` from a decoded body or fan-out entry, when well formed. */
export function failureParts(value: unknown): { exception?: RemoteException; error?: RemoteError } {
  if (value === null || typeof value !== 'object') return {};
  const { exception, error } = value as { exception?: unknown; error?: unknown };
  const out: { exception?: RemoteException; error?: RemoteError } = {};
  if (exception !== null && typeof exception === 'object') {
    const e = exception as Record<string, unknown>;
    out.exception = { message: str(e.message), traceback: str(e.traceback), class: str(e.class) };
  }
  if (error !== null && typeof error === 'object') {
    const e = error as Record<string, unknown>;
    out.error = { code: str(e.code), message: str(e.message) };
  }
  return out;
}

function str(value: unknown): string {
  return typeof value === 'string' ? value : value === undefined || value === null ? '' : String(value);
}
