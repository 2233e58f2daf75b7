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

/** Options of a {@link FrameDecoder}. */
export interface FrameDecoderOptions {
  /**
   * Deliver chunk frames with their data as the slices of the pushed buffers
   * it arrived in: `frame.chunk` is then a {@link PartedChunk}, whose `parts`
   * hold the data and whose `data` is null. A chunk frame longer than one
   * pushed buffer (a 64 KiB chunk over TLS, which delivers records of at most
   * 16 KiB) is then not copied into one Buffer first.
   *
   * Only a chunk frame laid out simply is split this way: the Chunk alone in
   * the Frame, `id` and `end` (in any order) before `data`, and `data` last,
   * as `encodeChunkHeader` writes it, and as protobufjs writes a chunk that
   * does not end its stream. Any other chunk frame (fields in another order,
   * unknown fields, data arriving in many small pieces) is decoded whole as
   * usual and its data is the one part. Either way the frame is delivered
   * only once all of it has arrived, and the length limit is checked on the
   * prefix, before anything is buffered.
   *
   * The parts share memory with the pushed buffers, so a caller must not
   * reuse a buffer it pushed.
   * @default false
   */
  chunkParts?: boolean;
}

/** The `chunk` of a frame decoded with the `chunkParts` option. */
export interface PartedChunk {
  readonly id: number;
  readonly end: boolean;
  /** The data in order, as slices of the pushed buffers; empty when the chunk has none. */
  readonly parts: Buffer[];
  /** The length of the data: the sum of the parts' lengths. */
  readonly bytes: number;
  /** Always null: the data is in `parts`. */
  readonly data: null;
}

/** Bytes of a chunk frame body examined for its header: the Frame and Chunk tags and lengths, `id`, `end`, and room for a repeat. */
const CHUNK_HEADER_BYTES = 32;
/**
 * A chunk frame is delivered in parts only while its pieces average this
 * many bytes at least; from smaller ones (a peer writing tiny TLS records)
 * it is copied into one Buffer as before, so a hostile peer cannot make a
 * stream hold a Buffer object per byte.
 */
const MIN_BYTES_PER_PART = 4096;

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
  private readonly chunkParts: boolean;
  /** The start of a chunk frame body that arrived in more than one buffer. */
  private readonly headerBytes: Buffer;

  /**
   * @param maxFrameBytes Largest frame body accepted; a larger length prefix throws `FrameTooLargeError` before the body is buffered.
   * @param onFrame Called with each whole frame, in order.
   * @param options See {@link FrameDecoderOptions}.
   */
  constructor(
    private readonly maxFrameBytes: number,
    private readonly onFrame: (frame: Frame) => void,
    options: FrameDecoderOptions = {},
  ) {
    this.chunkParts = options.chunkParts === true;
    this.headerBytes = this.chunkParts ? Buffer.alloc(CHUNK_HEADER_BYTES) : Buffer.alloc(0);
  }

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
        if (this.chunkParts && this.deliverParted(total)) continue;
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
      const frame = decodeBody(body);
      if (this.chunkParts && frame.kind === 'chunk') frame.chunk = partedFromWhole(frame.chunk as Chunk);
      this.onFrame(frame);
    }
  }

  /**
   * Delivers the complete frame of `total` bytes at the front, spread over
   * several buffers, as a chunk in parts, without copying its data. False
   * (and nothing consumed) when it is not a chunk frame of the simple layout
   * or its pieces are too small.
   */
  private deliverParted(total: number): boolean {
    const layout = chunkLayout(this.copyHeader(), this.need);
    if (layout === undefined) return false;
    const dataBytes = this.need - layout.dataStart;
    let spanned = 0;
    for (let seen = 0; seen < total; spanned++) seen += (this.chunks[spanned] as Buffer).length;
    if (spanned > 2 + dataBytes / MIN_BYTES_PER_PART) return false;
    const parts: Buffer[] = [];
    let skip = this.prefixBytes + layout.dataStart;
    let left = dataBytes;
    for (let i = 0; left > 0; i++) {
      const piece = this.chunks[i] as Buffer;
      if (skip >= piece.length) {
        skip -= piece.length;
        continue;
      }
      const take = Math.min(piece.length - skip, left);
      parts.push(skip === 0 && take === piece.length ? piece : piece.subarray(skip, skip + take));
      left -= take;
      skip = 0;
    }
    this.drop(total);
    this.need = -1;
    this.onFrame(new DecodedFrame('chunk', new PartedChunkFrame(layout.id, layout.end, parts, dataBytes)) as Frame);
    return true;
  }

  /** The first bytes of the frame body at the front (at most `CHUNK_HEADER_BYTES`), wherever they lie. */
  private copyHeader(): Buffer {
    const n = Math.min(this.need, CHUNK_HEADER_BYTES);
    const head = this.chunks[0] as Buffer;
    if (head.length >= this.prefixBytes + n) return head.subarray(this.prefixBytes, this.prefixBytes + n);
    let skip = this.prefixBytes;
    let copied = 0;
    for (let i = 0; copied < n; i++) {
      const piece = this.chunks[i] as Buffer;
      if (skip >= piece.length) {
        skip -= piece.length;
        continue;
      }
      copied += piece.copy(this.headerBytes, copied, skip, Math.min(piece.length, skip + n - copied));
      skip = 0;
    }
    return this.headerBytes.subarray(0, n);
  }

  /** Removes `bytes` from the front of the buffered chunks. */
  private drop(bytes: number): void {
    let left = bytes;
    let whole = 0;
    while (left > 0 && left >= (this.chunks[whole] as Buffer).length) left -= (this.chunks[whole++] as Buffer).length;
    this.chunks.splice(0, whole);
    if (left > 0) this.chunks[0] = (this.chunks[0] as Buffer).subarray(left);
    this.buffered -= bytes;
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
  chunk: Chunk | PartedChunk | null = null;
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

/** A chunk whose data is a list of slices; see {@link FrameDecoderOptions.chunkParts}. */
class PartedChunkFrame implements PartedChunk {
  readonly data = null;

  constructor(
    readonly id: number,
    readonly end: boolean,
    readonly parts: Buffer[],
    readonly bytes: number,
  ) {}
}

/** A decoded chunk as a chunk in parts: its data is the one part. */
function partedFromWhole(chunk: Chunk): PartedChunk {
  const data = chunk.data;
  const parts = data.length === 0 ? [] : [Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length)];
  return new PartedChunkFrame(chunk.id, chunk.end, parts, data.length);
}

const TAG_FRAME_CHUNK = 0x22; // Frame.chunk: field 4, length-delimited
const TAG_CHUNK_ID = 0x08; // Chunk.id: field 1, varint
const TAG_CHUNK_DATA = 0x12; // Chunk.data: field 2, length-delimited
const TAG_CHUNK_END = 0x18; // Chunk.end: field 3, varint

/** Where a chunk frame's data starts in its body, and the chunk's other fields. */
interface ChunkLayout {
  id: number;
  end: boolean;
  dataStart: number;
}

/**
 * Reads the header of a frame body of `bodyBytes` bytes, given its first
 * bytes in `head`: the Frame holding only a Chunk, the Chunk's `id` and `end`
 * (in any order, repeats allowed, the last one counts), then `data` up to the
 * end of the frame. Undefined for any other layout, or for a varint that
 * protobufjs would read differently (a 32-bit value in more than 5 bytes, a
 * bool in more than one); the caller then decodes the frame the ordinary way,
 * which also raises the right error for malformed bytes. A body of this
 * layout is always a valid Frame and decodes to the same chunk.
 */
function chunkLayout(head: Buffer, bodyBytes: number): ChunkLayout | undefined {
  if (head[0] !== TAG_FRAME_CHUNK) return undefined;
  const at = { pos: 1 };
  const chunkBytes = readVarint32(head, at, LENGTH_LAST_BYTE_MAX);
  if (chunkBytes < 0 || at.pos + chunkBytes !== bodyBytes) return undefined;
  const layout: ChunkLayout = { id: 0, end: false, dataStart: 0 };
  while (at.pos < head.length) {
    const tag = head[at.pos++];
    if (tag === TAG_CHUNK_ID) {
      layout.id = readVarint32(head, at, UINT32_LAST_BYTE_MAX);
      if (layout.id < 0) return undefined;
    } else if (tag === TAG_CHUNK_END) {
      const flag = head[at.pos++];
      if (flag === undefined || flag >= 0x80) return undefined;
      layout.end = flag !== 0;
    } else if (tag === TAG_CHUNK_DATA) {
      const dataBytes = readVarint32(head, at, LENGTH_LAST_BYTE_MAX);
      if (dataBytes < 0 || at.pos + dataBytes !== bodyBytes) return undefined;
      layout.dataStart = at.pos;
      return layout;
    } else {
      return undefined;
    }
  }
  return undefined;
}

/** The largest fifth byte of a length protobufjs accepts (`Reader.size`), and of a uint32 it reads as it is. */
const LENGTH_LAST_BYTE_MAX = 0x07;
const UINT32_LAST_BYTE_MAX = 0x0f;

/**
 * Reads a varint of at most 5 bytes at `at.pos` and moves `at.pos` past it;
 * -1 when it runs past `b`, or its fifth byte is over `lastByteMax`.
 */
function readVarint32(b: Buffer, at: { pos: number }, lastByteMax: number): number {
  let value = 0;
  for (let i = 0; i < MAX_VARINT_BYTES && at.pos + i < b.length; i++) {
    const byte = b[at.pos + i] as number;
    if (i === MAX_VARINT_BYTES - 1 && byte > lastByteMax) return -1;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (byte < 0x80) {
      at.pos += i + 1;
      return value;
    }
  }
  return -1;
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
