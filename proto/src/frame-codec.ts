/**
 * Length-delimited frame codec: a varint length followed by a `Frame`.
 *
 * The decoder reads the length first and refuses a frame larger than the
 * configured maximum before it allocates or buffers the frame body, so a
 * hostile peer cannot make us hold more than `maxFrameBytes` plus one read.
 */
import protobuf from 'protobufjs/minimal.js';
import { restpipe } from '../generated/restpipe.js';
import { FrameTooLargeError, MalformedFrameError, UnknownFrameError } from './errors.js';

export const wire = restpipe.v1;
export type Frame = restpipe.v1.Frame;
export type FrameInit = restpipe.v1.Frame.$Properties;
export type FrameKind = NonNullable<Frame['kind']>;

/** Protocol version sent in `Hello`; a peer with another version is refused. */
export const PROTOCOL_VERSION = 1;
/** Largest frame accepted when nothing else is configured: 16 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** A varint for a 32-bit length takes at most 5 bytes. */
const MAX_VARINT_BYTES = 5;

/**
 * Encodes one frame with its length prefix, refusing frames over
 * `maxFrameBytes`. Lone UTF-16 surrogates in string fields become U+FFFD:
 * proto3 strings must be valid UTF-8, and one bad string must not make the
 * peer drop the whole pipe.
 */
export function encodeFrame(frame: FrameInit, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Uint8Array {
  wellFormedStrings(frame);
  const writer = protobuf.Writer.create();
  writer.fork();
  wire.Frame.encode(frame, writer);
  writer.ldelim();
  const bytes = writer.finish();
  const bodyLength = bytes.length - varintLength(bytes);
  if (bodyLength > maxFrameBytes) {
    throw new FrameTooLargeError(bodyLength, maxFrameBytes);
  }
  return bytes;
}

type WellFormed = { isWellFormed(): boolean; toWellFormed(): string };

function wellFormed(value: string | null | undefined): string | null | undefined {
  if (!value || (value as unknown as WellFormed).isWellFormed()) return value;
  return (value as unknown as WellFormed).toWellFormed();
}

function wellFormedHeaders(headers: Array<{ name?: string | null; value?: string | null }> | null | undefined): void {
  if (!headers) return;
  for (const h of headers) {
    h.name = wellFormed(h.name);
    h.value = wellFormed(h.value);
  }
}

/** Replaces lone surrogates in the frame's string fields, in place. */
function wellFormedStrings(frame: FrameInit): void {
  const { request, reply, cancel, goaway, hello } = frame;
  if (request) {
    request.verb = wellFormed(request.verb);
    request.noun = wellFormed(request.noun);
    request.query = wellFormed(request.query);
    request.mimetype = wellFormed(request.mimetype);
    const args = request.args;
    if (args) for (let i = 0; i < args.length; i++) args[i] = wellFormed(args[i]) as string;
    wellFormedHeaders(request.headers);
  } else if (reply) {
    reply.mimetype = wellFormed(reply.mimetype);
    wellFormedHeaders(reply.headers);
  } else if (cancel) {
    cancel.reason = wellFormed(cancel.reason);
  } else if (goaway) {
    goaway.reason = wellFormed(goaway.reason);
  } else if (hello) {
    hello.agent = wellFormed(hello.agent);
    if (hello.capabilities) hello.capabilities = hello.capabilities.map((c) => wellFormed(c) as string);
  }
}

function varintLength(bytes: Uint8Array): number {
  let i = 0;
  while (i < MAX_VARINT_BYTES && ((bytes[i] ?? 0) & 0x80) !== 0) i++;
  return i + 1;
}

/**
 * Incremental decoder: `push()` socket chunks, get whole frames in `onFrame`.
 * Throws a `FrameError` subclass on a frame that is too large, malformed or of
 * an unknown kind; the caller should then close the connection, since the
 * stream can no longer be trusted.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Body length of the frame being collected, or -1 while the prefix is unread. */
  private need = -1;
  private prefixBytes = 0;
  private failed = false;

  constructor(
    private readonly maxFrameBytes: number,
    private readonly onFrame: (frame: Frame) => void,
  ) {}

  /** Bytes held for a frame not yet complete. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (this.failed) return;
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    try {
      this.drain();
    } catch (err) {
      this.failed = true;
      this.chunks = [];
      this.buffered = 0;
      throw err;
    }
  }

  private drain(): void {
    for (;;) {
      if (this.need < 0 && !this.readPrefix()) return;
      const total = this.prefixBytes + this.need;
      if (this.buffered < total) return;
      let head = this.chunks[0] as Buffer;
      if (head.length < total) {
        head = Buffer.concat(this.chunks, this.buffered);
        this.chunks = [head];
      }
      const body = head.subarray(this.prefixBytes, total);
      if (head.length === total) {
        this.chunks.shift();
      } else {
        this.chunks[0] = head.subarray(total);
      }
      this.buffered -= total;
      this.need = -1;
      this.onFrame(decodeBody(body));
    }
  }

  /** Reads the varint length prefix; false when more bytes are needed. */
  private readPrefix(): boolean {
    let value = 0;
    let shift = 0;
    let i = 0;
    for (const chunk of this.chunks) {
      for (let j = 0; j < chunk.length; j++) {
        const byte = chunk[j] as number;
        value += (byte & 0x7f) * 2 ** shift;
        i++;
        if ((byte & 0x80) === 0) {
          if (value > this.maxFrameBytes) throw new FrameTooLargeError(value, this.maxFrameBytes);
          this.need = value;
          this.prefixBytes = i;
          return true;
        }
        shift += 7;
        if (i >= MAX_VARINT_BYTES) throw new MalformedFrameError('frame length prefix is not a valid varint');
      }
    }
    return false;
  }
}

/**
 * The generated decoders of the Frame's kinds, by field number. The generated
 * functions take more arguments than their typings say: the end-group tag, the
 * nesting depth and a message to merge into.
 */
type NestedDecode = (reader: protobuf.Reader, length: number, endGroup: undefined, depth: number, target: unknown) => object;
const KIND_BY_FIELD: ReadonlyArray<FrameKind | undefined> = [undefined, 'hello', 'request', 'reply', 'chunk', 'credit', 'cancel', 'ping', 'pong', 'goaway'];
const DECODE_BY_FIELD = [
  undefined,
  wire.Hello.decode,
  wire.Request.decode,
  wire.Reply.decode,
  wire.Chunk.decode,
  wire.Credit.decode,
  wire.Cancel.decode,
  wire.Ping.decode,
  wire.Pong.decode,
  wire.GoAway.decode,
] as unknown as ReadonlyArray<NestedDecode | undefined>;
const LENGTH_DELIMITED = 2;

/**
 * A decoded frame: `kind` and the one message it names; the other kinds are
 * null, as on a generated `Frame`. Every frame has this one shape, so the
 * code that reads frames stays monomorphic, and building one costs no
 * `delete`s (the generated `Frame.decode` deletes the 8 other oneof fields
 * through `$util.oneOfSetter` for every frame).
 */
class DecodedFrame {
  hello: Hello | null = null;
  request: Request | null = null;
  reply: Reply | null = null;
  chunk: Chunk | null = null;
  credit: Credit | null = null;
  cancel: Cancel | null = null;
  ping: Ping | null = null;
  pong: Pong | null = null;
  goaway: GoAway | null = null;

  constructor(
    readonly kind: FrameKind,
    value: object,
  ) {
    (this as Record<FrameKind, unknown>)[kind] = value;
  }
}

/**
 * Decodes a frame body as the generated `Frame.decode` does, without its
 * generic oneof handling. A Frame is one oneof: the last kind on the wire
 * wins, a kind repeated is merged into the earlier one, unknown fields (and
 * known numbers with another wire type) are skipped.
 */
function decodeBody(body: Buffer): Frame {
  let kind: FrameKind | undefined;
  let value: object | undefined;
  try {
    const reader = protobuf.Reader.create(body);
    while (reader.pos < reader.len) {
      const tag = reader.tag();
      const field = tag >>> 3;
      const wireType = tag & 7;
      const decode = wireType === LENGTH_DELIMITED ? DECODE_BY_FIELD[field] : undefined;
      if (decode === undefined) {
        reader.skipType(wireType, 0, field);
        continue;
      }
      const next = KIND_BY_FIELD[field] as FrameKind;
      value = decode(reader, reader.size(), undefined, 1, next === kind ? value : undefined);
      kind = next;
    }
  } catch (err) {
    throw new MalformedFrameError(`frame does not decode: ${(err as Error).message}`, { cause: err });
  }
  if (kind === undefined) throw new UnknownFrameError();
  return new DecodedFrame(kind, value as object) as Frame;
}

export type Hello = restpipe.v1.Hello;
export type Request = restpipe.v1.Request;
export type Reply = restpipe.v1.Reply;
export type Chunk = restpipe.v1.Chunk;
export type Credit = restpipe.v1.Credit;
export type Cancel = restpipe.v1.Cancel;
export type Ping = restpipe.v1.Ping;
export type Pong = restpipe.v1.Pong;
export type GoAway = restpipe.v1.GoAway;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, offset: number, n: number): number {
  while (n >= 0x80) {
    buf[offset++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[offset++] = n;
  return offset;
}

/**
 * The bytes of a `Chunk` frame that come before its data: the length prefix,
 * the Frame and Chunk headers, the id and the end flag. Write these, then the
 * data as it is: a body chunk is never copied into an encoder's buffer. (The
 * end flag precedes the data; protobuf decoders take fields in any order.)
 */
export function encodeChunkHeader(id: number, dataBytes: number, end: boolean, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): Buffer {
  const chunkBytes = 1 + varintSize(id) + (end ? 2 : 0) + 1 + varintSize(dataBytes) + dataBytes;
  const frameBytes = 1 + varintSize(chunkBytes) + chunkBytes;
  if (frameBytes > maxFrameBytes) throw new FrameTooLargeError(frameBytes, maxFrameBytes);
  const header = Buffer.allocUnsafe(varintSize(frameBytes) + frameBytes - dataBytes);
  let o = writeVarint(header, 0, frameBytes);
  header[o++] = 0x22; // Frame.chunk: field 4, length-delimited
  o = writeVarint(header, o, chunkBytes);
  header[o++] = 0x08; // Chunk.id: field 1, varint
  o = writeVarint(header, o, id);
  if (end) {
    header[o++] = 0x18; // Chunk.end: field 3, varint
    header[o++] = 1;
  }
  header[o++] = 0x12; // Chunk.data: field 2, length-delimited
  writeVarint(header, o, dataBytes);
  return header;
}
