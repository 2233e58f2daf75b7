/**
 * Streamed bodies with per-request, credit-based flow control.
 *
 * The receiver of a body grants the sender a window of bytes (announced in
 * Hello as `initial_window_bytes`) and grants more with `Credit` frames as
 * its reader consumes what arrived. A sender never has more than the window
 * in flight, so a slow reader on one request holds at most a window of
 * memory and never stops the socket: every other request keeps flowing.
 */
import { Readable } from 'node:stream';
import { ProtocolError } from '../errors.js';

const EMPTY = Buffer.alloc(0);

/** What a stream needs from its exchange. */
export interface StreamIO {
  sendChunk(id: number, data: Buffer, end: boolean): void;
  sendCredit(id: number, bytes: number): void;
  /** Tells the peer this side abandons the stream (`Cancel`). */
  sendCancel(id: number, reason: string): void;
  /** True while the connection's unsent bytes are below its cap. */
  canWrite(): boolean;
  /** Resolves when the connection's send buffer drains (check `canWrite` again: other streams may have filled it). */
  writable(): Promise<void>;
  /** The stream is finished or abandoned; forget it. */
  done(id: number, stream: InboundStream | OutboundStream): void;
  /** Largest data in one chunk frame. */
  readonly chunkBytes: number;
  /** A stream now holds `bytes` unread, more than it ever did (for the exchange's memory figures). */
  held?(bytes: number): void;
}

/**
 * A body arriving from the peer, read as a Node Readable.
 *
 * Credit invariant: the bytes the peer may still send plus the bytes
 * buffered here never exceed the window, so one stream holds at most its
 * window, however slow its reader. Credit goes back as the reader consumes:
 * once a quarter of the window is free, or at once when the peer has none
 * left (so a stalled sender always resumes), one Credit frame per quarter
 * window on a fast link.
 */
export class InboundStream extends Readable {
  /** Bytes the peer may still send before it needs more credit. */
  private allowance: number;
  private ended = false;
  /** The most bytes this stream held at once (received, not yet read). */
  peakHeldBytes = 0;

  constructor(
    readonly id: number,
    private readonly window: number,
    private readonly io: StreamIO,
  ) {
    super({ highWaterMark: window });
    this.allowance = window;
  }

  /**
   * A chunk frame for this stream: its data as one Buffer or as the slices
   * it arrived in (pushed as they are, never joined). Throws `ProtocolError`
   * when the peer overran its credit.
   */
  receive(data: Buffer | readonly Buffer[], bytes: number, end: boolean): void {
    if (this.ended || this.destroyed) return;
    if (bytes > this.allowance) {
      throw new ProtocolError(`stream ${this.id}: the peer sent ${bytes} bytes with only ${this.allowance} bytes of credit`);
    }
    this.allowance -= bytes;
    if (bytes > 0) {
      if (Buffer.isBuffer(data)) this.push(data);
      else for (const part of data) if (part.length > 0) this.push(part);
      const held = this.readableLength;
      if (held > this.peakHeldBytes) {
        this.peakHeldBytes = held;
        this.io.held?.(held);
      }
      this.grant();
    }
    if (end) {
      this.ended = true;
      this.io.done(this.id, this);
      this.push(null);
    }
  }

  override _read(): void {
    this.grant();
  }

  /**
   * Every consumer reads through here (flowing mode too). Readable calls
   * `_read` before it takes the bytes out of the buffer, so a full buffer
   * would never see its space freed there: grant once the read is done.
   */
  override read(size?: number): unknown {
    const chunk: unknown = super.read(size);
    this.grant();
    return chunk;
  }

  /** Grants back what the reader has consumed: the window minus what the peer may send minus what is buffered. */
  private grant(): void {
    if (this.ended) return;
    const free = this.window - this.allowance - this.readableLength;
    if (free <= 0 || (free < this.window / 4 && this.allowance > 0)) return;
    this.io.sendCredit(this.id, free);
    this.allowance += free;
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.ended) {
      // The reader stopped early: the peer must stop sending.
      this.ended = true;
      this.io.done(this.id, this);
      this.io.sendCancel(this.id, err ? err.message : 'the reader stopped');
    }
    callback(err);
  }
}

/** A body this side sends, pumped from a Readable, an async iterable or a Buffer. */
export class OutboundStream {
  private credit: number;
  private wake: (() => void) | undefined;
  private stopped: Error | undefined;

  /**
   * @param destroySource when stopped early, destroy a Readable source (a
   * handler's file stream) rather than leave it to its owner (an HTTP
   * request body, which the HTTP server discards after answering).
   */
  constructor(
    readonly id: number,
    initialCredit: number,
    private readonly io: StreamIO,
    private readonly destroySource = true,
  ) {
    this.credit = initialCredit;
  }

  /** The peer granted more bytes. */
  grant(bytes: number): void {
    this.credit += bytes;
    this.wakeUp();
  }

  /** Stops pumping (peer cancelled, pipe closed); the source is destroyed. */
  stop(err: Error): void {
    if (!this.stopped) this.stopped = err;
    this.wakeUp();
  }

  get isStopped(): boolean {
    return this.stopped !== undefined;
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /**
   * Sends the whole source in chunks within the credit, then the end chunk.
   * Rejects when stopped or when the source fails; never sends past the credit.
   */
  async pump(source: AsyncIterable<unknown> | Buffer): Promise<void> {
    try {
      if (Buffer.isBuffer(source)) {
        await this.sendBuffer(source);
      } else if (source instanceof Readable) {
        await this.pumpReadable(source);
      } else {
        for await (const piece of source) {
          await this.sendBuffer(toBuffer(piece));
        }
      }
      if (this.stopped) throw this.stopped;
      this.io.sendChunk(this.id, EMPTY, true);
    } finally {
      this.io.done(this.id, this);
      if (this.destroySource && source instanceof Readable && !source.destroyed && this.stopped) source.destroy();
    }
  }

  /**
   * Reads a Readable chunk by chunk through 'data' events, pausing it while a
   * chunk waits for credit. (Async iteration would call read(), which joins
   * everything buffered into one new Buffer: a copy of every byte.)
   */
  private pumpReadable(source: Readable): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: unknown) => {
        if (settled) return;
        settled = true;
        source.off('data', onData);
        source.off('end', onEnd);
        source.off('error', finish);
        source.off('close', onClose);
        if (err === undefined) resolve();
        else reject(err instanceof Error ? err : new Error(String(err)));
      };
      const onData = (piece: unknown) => {
        source.pause();
        this.sendBuffer(toBuffer(piece)).then(() => {
          if (!settled) source.resume();
        }, finish);
      };
      const onEnd = () => {
        // 'end' comes after the last 'data', whose send may still wait for credit.
        const last = this.lastSend;
        void last.then(() => finish(), finish);
      };
      const onClose = () => {
        if (!source.readableEnded) finish(new Error('the body stream closed before its end'));
      };
      source.on('data', onData);
      source.once('end', onEnd);
      source.once('error', finish);
      source.once('close', onClose);
      if (source.readableEnded) onEnd();
    });
  }

  /** The send in progress, for the end of a Readable to wait on. */
  private lastSend: Promise<void> = Promise.resolve();

  private sendBuffer(buf: Buffer): Promise<void> {
    this.lastSend = this.sendBufferNow(buf);
    return this.lastSend;
  }

  private async sendBufferNow(buf: Buffer): Promise<void> {
    let offset = 0;
    while (offset < buf.length) {
      if (this.stopped) throw this.stopped;
      if (this.credit <= 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      if (!this.io.canWrite()) {
        await this.io.writable();
        continue;
      }
      const n = Math.min(this.credit, this.io.chunkBytes, buf.length - offset);
      this.io.sendChunk(this.id, buf.subarray(offset, offset + n), false);
      this.credit -= n;
      offset += n;
    }
  }
}

function toBuffer(piece: unknown): Buffer {
  if (Buffer.isBuffer(piece)) return piece;
  if (piece instanceof Uint8Array) return Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
  if (typeof piece === 'string') return Buffer.from(piece);
  throw new TypeError(`a body stream yielded ${typeof piece}; yield Buffers, Uint8Arrays or strings`);
}

/** True for a Node Readable or any async iterable that is not a string or bytes. */
export function isBodyStream(value: unknown): value is AsyncIterable<unknown> {
  return (
    value !== null &&
    typeof value === 'object' &&
    !Buffer.isBuffer(value) &&
    !(value instanceof Uint8Array) &&
    typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function'
  );
}

/** Reads a whole stream into one Buffer; rejects (and destroys the stream) past `limit` bytes. */
export async function collectBody(stream: Readable, limit: number, onTooLarge: (bytes: number) => Error): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const piece of stream) {
    const buf = piece as Buffer;
    total += buf.length;
    if (total > limit) {
      stream.destroy();
      throw onTooLarge(total);
    }
    parts.push(buf);
  }
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, total);
}
