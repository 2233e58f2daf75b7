/**
 * The transport seam of an exchange: encodes frames and writes them to the
 * socket (a TLS socket, or an in-memory duplex), corked per tick so the
 * frames of one tick leave in one write, with backpressure for streamed
 * bodies and the connection's unsent-bytes cap. Counts what it sends once
 * per tick, not per frame.
 */
import type { Duplex } from 'node:stream';
import { encodeChunkHeader, encodeFrame, type FrameInit } from '@restpipe/proto';
import type { Logger } from 'pino';
import type { Stats } from '../stats.js';
import { describeFrame } from './trace.js';

export interface FrameWriterOptions {
  socket: Duplex;
  stats: Stats;
  log: Logger;
  /** The peer's name, for trace lines. */
  peerName: string;
  /** Streams wait while this many bytes are written but not yet sent. */
  connectionBufferBytes: number;
}

export class FrameWriter {
  /** The largest frame the peer accepts (from its Hello). */
  maxFrameBytes = Number.MAX_SAFE_INTEGER;
  private readonly socket: Duplex;
  private readonly stats: Stats;
  private readonly log: Logger;
  private readonly trace: boolean;
  private readonly peerName: string;
  private readonly cap: number;
  private corked = false;
  private failure: Error | undefined;
  private drainWaiters: Array<() => void> = [];
  private framesSent = 0;
  private bytesSent = 0;
  private peakUnsent = 0;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
    this.flushCounts();
  };

  constructor(opts: FrameWriterOptions) {
    this.socket = opts.socket;
    this.stats = opts.stats;
    this.log = opts.log;
    this.trace = opts.log.isLevelEnabled('debug');
    this.peerName = opts.peerName;
    this.cap = opts.connectionBufferBytes;
    this.socket.on('drain', () => this.releaseDrainWaiters());
  }

  /** The most bytes that were written but not yet sent at once. */
  get peakUnsentBytes(): number {
    return this.peakUnsent;
  }

  /** Encodes and writes one frame; throws when the writer failed or the frame is over the peer's limit. */
  send(frame: FrameInit): void {
    if (this.failure) throw this.failure;
    const bytes = encodeFrame(frame, this.maxFrameBytes);
    if (this.trace) this.log.debug({ peer: this.peerName, frame: describeFrame(frame), bytes: bytes.length }, 'frame sent');
    this.corkForThisTick();
    this.socket.write(bytes);
    this.wrote(bytes.length);
  }

  /** `send` for frames whose loss is harmless (the pipe is closing anyway); returns false when not sent. */
  trySend(frame: FrameInit): boolean {
    try {
      this.send(frame);
      return true;
    } catch (err) {
      this.log.debug({ err, peer: this.peerName }, 'frame not sent');
      return false;
    }
  }

  /** Writes a body chunk: its header, then the data as it is (no copy into an encoder). */
  sendChunk(id: number, data: Buffer, end: boolean): void {
    if (this.failure) throw this.failure;
    const header = encodeChunkHeader(id, data.length, end, this.maxFrameBytes);
    if (this.trace) this.log.debug({ peer: this.peerName, frame: { kind: 'chunk', id, data: `${data.length} bytes`, end } }, 'frame sent');
    this.corkForThisTick();
    this.socket.write(header);
    if (data.length > 0) this.socket.write(data);
    this.wrote(header.length + data.length);
  }

  /** True while the unsent bytes are under the connection's cap. */
  canWrite(): boolean {
    return this.socket.writableLength < this.cap;
  }

  /** Resolves at the socket's next drain (check `canWrite` again: others may have filled it); rejects once failed. */
  writable(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    // A cap below the socket's own high-water mark never sees 'drain': check again on the next turn.
    if (!this.socket.writableNeedDrain) return new Promise<void>((resolve) => setImmediate(resolve));
    return new Promise<void>((resolve) => this.drainWaiters.push(resolve));
  }

  /** No more frames: every later send throws `err`; streams waiting for room wake up (and see they stopped). */
  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.releaseDrainWaiters();
    this.flushCounts();
  }

  /** Sends what is written (a GoAway saying why), then ends; destroys the socket if the peer does not close within a second. */
  end(): void {
    if (this.corked) this.uncork();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wrote(bytes: number): void {
    this.framesSent++;
    this.bytesSent += bytes;
    const unsent = this.socket.writableLength;
    if (unsent > this.peakUnsent) this.peakUnsent = unsent;
  }

  private flushCounts(): void {
    if (this.framesSent === 0) return;
    this.stats.increment('frames.sent', this.framesSent);
    this.stats.increment('bytes.sent', this.bytesSent);
    this.framesSent = 0;
    this.bytesSent = 0;
  }

  /** Corks the socket until the next tick, so the frames written meanwhile leave in one write. */
  private corkForThisTick(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(this.uncork);
  }

  private releaseDrainWaiters(): void {
    const waiters = this.drainWaiters;
    if (waiters.length === 0) return;
    this.drainWaiters = [];
    for (const wake of waiters) wake();
  }
}
