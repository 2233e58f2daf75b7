/**
 * One direction pair of a link as a byte stream (`Duplex`) over NATS core,
 * for a `MessageExchange` to run on as it runs on a TLS socket.
 *
 * Each NATS message is `[u32 sequence, big-endian][bytes]`, the sequence
 * counting from 0 per direction. NATS core may drop messages (a slow
 * consumer, a reconnect), so the receiver checks every sequence: on a gap or
 * a repeat it destroys the stream. A link is an intact ordered stream or it
 * is dead; the exchange on it then fails what was in flight. A message with
 * a sequence and no bytes ends the stream (the writer's `end()`, or its
 * destruction), so the peer learns at once instead of at its heartbeat
 * timeout.
 *
 * Writes: NATS `publish` only queues bytes on the connection, so a write
 * that completed at once would give the frame writer no backpressure and a
 * fast body could pile up in the NATS client without bound. A write is
 * published at once (split into messages of at most `maxMessageBytes`,
 * small frames of one tick joined into one message) and completes at once
 * while the bytes published but not yet confirmed by the server are at most
 * `unconfirmedBytes`; past that it completes when a NATS flush (PING/PONG:
 * the server has read everything before it) brings them under. Flushes are
 * started every half `unconfirmedBytes` so the stream rarely waits. Meanwhile
 * later writes stay in the Duplex's buffer, its `writableLength` grows, and
 * the frame writer stops streams at its cap and waits for 'drain', as on a
 * socket. So a link holds at most its exchange's connection buffer plus
 * `unconfirmedBytes` plus one write unsent, however much goes through it.
 *
 * Reading has no backpressure: the exchange consumes every byte as it
 * arrives, and the exchange's credit bounds what a peer may send per stream.
 */
import { Duplex } from 'node:stream';

/** How a link stream reaches NATS: a narrow seam, so tests and the table can supply it. */
export interface LinkTransport {
  /** Publishes one message on the link's outgoing subject; throws when NATS refuses it. */
  publish(payload: Uint8Array): void;
  /** Resolves once everything published before it reached the NATS server; rejects when the connection went away. */
  flush(): Promise<void>;
}

export interface LinkStreamOptions {
  transport: LinkTransport;
  /** Most bytes of data in one message (the 4-byte sequence comes on top). */
  maxMessageBytes: number;
  /** Writes complete at once while at most this many published bytes wait for the server's confirmation. */
  unconfirmedBytes: number;
}

/** The size of the sequence number in front of every message. */
export const SEQUENCE_BYTES = 4;

/** The peer's messages arrived out of order, or one was lost or repeated: the link cannot go on. */
export class LinkSequenceError extends Error {
  constructor(
    readonly expected: number,
    readonly got: number,
  ) {
    super(`link message out of sequence: expected ${expected}, got ${got}`);
    this.name = 'LinkSequenceError';
  }
}

/** A message on the link that is not one (shorter than its sequence, or after the end). */
export class LinkMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LinkMessageError';
  }
}

export class LinkStream extends Duplex {
  private readonly transport: LinkTransport;
  private readonly maxMessageBytes: number;
  private readonly limit: number;
  private sendSeq = 0;
  private receiveSeq = 0;
  private ended = false;
  private endSent = false;
  /** Bytes published, and of those the ones the server confirmed, counted up to the last flush that came back. */
  private published = 0;
  private confirmed = 0;
  private flushMark = 0;
  private peakUnconfirmed = 0;
  /** A write's completion, held until a flush brings the unconfirmed bytes under the limit. */
  private waiting: (() => void) | undefined;

  constructor(opts: LinkStreamOptions) {
    super({ allowHalfOpen: true });
    if (!(opts.maxMessageBytes > 0)) throw new RangeError(`maxMessageBytes must be positive, got ${opts.maxMessageBytes}`);
    this.transport = opts.transport;
    this.maxMessageBytes = Math.floor(opts.maxMessageBytes);
    this.limit = opts.unconfirmedBytes;
  }

  /** Published bytes (sequences included) not yet confirmed by the server. */
  get unconfirmedBytes(): number {
    return this.published - this.confirmed;
  }

  /** The most published bytes that waited for the server's confirmation at once. */
  get peakUnconfirmedBytes(): number {
    return this.peakUnconfirmed;
  }

  /** The sequence the next message from the peer must carry. */
  get nextReceiveSequence(): number {
    return this.receiveSeq;
  }

  /** One NATS message from the peer. */
  receive(payload: Uint8Array): void {
    if (this.destroyed) return;
    if (this.ended) {
      this.destroy(new LinkMessageError('a link message after the end of the stream'));
      return;
    }
    if (payload.length < SEQUENCE_BYTES) {
      this.destroy(new LinkMessageError(`a link message of ${payload.length} bytes has no sequence number`));
      return;
    }
    const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    const seq = bytes.readUInt32BE(0);
    if (seq !== this.receiveSeq) {
      this.destroy(new LinkSequenceError(this.receiveSeq, seq));
      return;
    }
    this.receiveSeq = (this.receiveSeq + 1) >>> 0;
    if (bytes.length === SEQUENCE_BYTES) {
      this.ended = true;
      this.push(null);
      return;
    }
    this.push(bytes.subarray(SEQUENCE_BYTES));
  }

  override _read(): void {
    // Messages are pushed as they arrive (see receive).
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.send([chunk], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.send(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    try {
      this.sendEnd();
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    // A write held for a flush is dropped with the stream.
    this.waiting = undefined;
    try {
      // Tell the peer now rather than at its heartbeat timeout (lost if NATS is down: then it times out).
      this.sendEnd();
    } catch {
      // NATS refused it: the peer's heartbeat notices.
    }
    callback(err);
  }

  private send(pieces: Buffer[], callback: (error?: Error | null) => void): void {
    try {
      this.publishAll(pieces);
    } catch (err) {
      callback(err as Error);
      return;
    }
    if (this.published - this.flushMark >= this.limit / 2) this.startFlush();
    if (this.unconfirmedBytes <= this.limit) {
      callback();
      return;
    }
    this.waiting = () => callback();
    if (this.flushMark < this.published) this.startFlush();
  }

  /** Publishes the pieces in order as messages of at most `maxMessageBytes`, joining small ones. */
  private publishAll(pieces: Buffer[]): void {
    let total = 0;
    for (const piece of pieces) total += piece.length;
    let index = 0;
    let offset = 0;
    while (total > 0) {
      const size = Math.min(total, this.maxMessageBytes);
      const message = Buffer.allocUnsafe(SEQUENCE_BYTES + size);
      message.writeUInt32BE(this.sendSeq, 0);
      let at = SEQUENCE_BYTES;
      while (at < message.length) {
        const piece = pieces[index] as Buffer;
        const take = Math.min(piece.length - offset, message.length - at);
        piece.copy(message, at, offset, offset + take);
        at += take;
        offset += take;
        if (offset === piece.length) {
          index++;
          offset = 0;
        }
      }
      this.publish(message);
      total -= size;
    }
  }

  private sendEnd(): void {
    if (this.endSent) return;
    this.endSent = true;
    const message = Buffer.allocUnsafe(SEQUENCE_BYTES);
    message.writeUInt32BE(this.sendSeq, 0);
    this.publish(message);
  }

  private publish(message: Buffer): void {
    this.transport.publish(message);
    this.sendSeq = (this.sendSeq + 1) >>> 0;
    this.published += message.length;
    const unconfirmed = this.published - this.confirmed;
    if (unconfirmed > this.peakUnconfirmed) this.peakUnconfirmed = unconfirmed;
  }

  private startFlush(): void {
    const mark = this.published;
    this.flushMark = mark;
    let flushed: Promise<void>;
    try {
      flushed = this.transport.flush();
    } catch (err) {
      flushed = Promise.reject(err);
    }
    flushed.then(
      () => {
        if (mark > this.confirmed) this.confirmed = mark;
        const wake = this.waiting;
        if (wake && this.unconfirmedBytes <= this.limit) {
          this.waiting = undefined;
          wake();
        }
      },
      (err: unknown) => {
        this.destroy(new Error(`the NATS connection did not confirm the link's bytes: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
      },
    );
  }
}
