/**
 * The streamed bodies of one exchange, by request id: bodies arriving from
 * the peer (read as Readables, granting credit as they are read) and bodies
 * this side sends (pumped within the peer's credit and the connection's
 * unsent-bytes cap). Ids are unique per direction by parity, so one table
 * serves requests and replies both ways.
 */
import type { Readable } from 'node:stream';
import type { Chunk, PartedChunk } from '@restpipe/proto';
import type { FrameWriter } from './frame-writer.js';
import { InboundStream, OutboundStream, type StreamIO } from './streams.js';

export interface StreamTableOptions {
  writer: FrameWriter;
  /** The window this side grants each inbound stream. */
  windowBytes: number;
  /** Largest data in one chunk frame sent. */
  chunkBytes: number;
  /** A chunk of the body with this id went out (progress, for the sender's deadline). */
  onSent(id: number): void;
  /** True once the exchange closed (no Cancel is sent then). */
  closed(): boolean;
  /** A stream finished or was abandoned (for the exchange's idle check). */
  settled(): void;
}

export class StreamTable {
  private readonly inbound = new Map<number, InboundStream>();
  private readonly outbound = new Map<number, OutboundStream>();
  private readonly io: StreamIO;
  private readonly windowBytes: number;
  /** The window the peer grants each stream this side sends (from its Hello). */
  peerWindowBytes = 0;
  private peakHeld = 0;

  constructor(opts: StreamTableOptions) {
    const { writer } = opts;
    this.windowBytes = opts.windowBytes;
    this.io = {
      chunkBytes: opts.chunkBytes,
      sendChunk: (id, data, end) => {
        writer.sendChunk(id, data, end);
        opts.onSent(id);
      },
      sendCredit: (id, bytes) => void writer.trySend({ credit: { id, bytes } }),
      sendCancel: (id, reason) => {
        if (!opts.closed()) writer.trySend({ cancel: { id, reason } });
      },
      canWrite: () => writer.canWrite(),
      writable: () => writer.writable(),
      done: (id, stream) => {
        if (this.inbound.get(id) === stream) this.inbound.delete(id);
        if (this.outbound.get(id) === stream) this.outbound.delete(id);
        opts.settled();
      },
      held: (bytes) => {
        if (bytes > this.peakHeld) this.peakHeld = bytes;
      },
    };
  }

  /** Streams open either way. */
  get size(): number {
    return this.inbound.size + this.outbound.size;
  }

  /** The most one inbound stream held unread at once. */
  get peakHeldBytes(): number {
    return this.peakHeld;
  }

  hasInbound(id: number): boolean {
    return this.inbound.has(id);
  }

  hasOutbound(id: number): boolean {
    return this.outbound.has(id);
  }

  /** A body the peer will send under `id`, granted this side's window. */
  openInbound(id: number): InboundStream {
    const stream = new InboundStream(id, this.windowBytes, this.io);
    this.inbound.set(id, stream);
    return stream;
  }

  /**
   * Pumps `body` to the peer under `id`; settles when all of it is sent
   * (rejects when stopped or when the source fails). With `destroySource`,
   * a Readable source stopped early is destroyed (a handler's file stream);
   * without, it is left to its owner (an HTTP request body).
   */
  startOutbound(id: number, body: Buffer | AsyncIterable<unknown>, destroySource: boolean): Promise<void> {
    const stream = new OutboundStream(id, this.peerWindowBytes, this.io, destroySource);
    this.outbound.set(id, stream);
    return stream.pump(body);
  }

  /**
   * A Chunk frame, its data as the socket-buffer slices it arrived in
   * (FrameDecoder `chunkParts`) or as one Buffer; false when no stream is
   * open under its id (late after a cancel).
   */
  receiveChunk(chunk: Chunk | PartedChunk): boolean {
    const stream = this.inbound.get(chunk.id);
    if (!stream) return false;
    if ('parts' in chunk && chunk.parts) {
      stream.receive(chunk.parts, chunk.bytes, chunk.end);
    } else {
      const data = Buffer.isBuffer(chunk.data) ? chunk.data : Buffer.from(chunk.data as Uint8Array);
      stream.receive(data, data.length, chunk.end);
    }
    return true;
  }

  /** A Credit frame. */
  grant(id: number, bytes: number): void {
    this.outbound.get(id)?.grant(bytes);
  }

  /** Stops sending the body under `id`. */
  stopOutbound(id: number, err: Error): void {
    this.outbound.get(id)?.stop(err);
  }

  /** Gives up on the body arriving under `id` (the reader errors with `err`). */
  destroyInbound(id: number, err: Error): void {
    const stream = this.inbound.get(id);
    if (!stream) return;
    this.inbound.delete(id);
    stream.destroy(err);
  }

  /** The exchange closed: every body either way fails with `err`. */
  failAll(err: Error): void {
    for (const stream of [...this.inbound.values()]) stream.destroy(err);
    this.inbound.clear();
    for (const stream of this.outbound.values()) stream.stop(err);
    this.outbound.clear();
  }
}

/** Destroys a body a handler returned, when nobody will read it. */
export function destroyBody(stream: AsyncIterable<unknown> | undefined): void {
  if (stream && typeof (stream as Readable).destroy === 'function') (stream as Readable).destroy();
}
