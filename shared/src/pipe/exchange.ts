/**
 * The message exchange: one per connection, on either side of the pipe.
 *
 * A slim owner of the pipe's parts, each in its own file behind a narrow
 * interface: the frame writer (the transport seam), the heartbeat, request
 * ids, the outgoing and incoming calls, the stream table, and one deadline
 * sweep. The exchange holds the one state machine, routes each frame to its
 * part, and on close fails every part once.
 * The states and their moves are in exchange-state.ts.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import {
  FrameDecoder,
  type Cancel,
  type Chunk,
  type Credit,
  type Frame,
  type GoAway,
  type Hello,
  type PartedChunk,
  type Ping,
  type Pong,
  type Reply,
  type Request,
} from '@restpipe/proto';
import type { Logger } from 'pino';
import type { EventRouter } from '../dispatcher.js';
import { PipeBrokenError, ProtocolError, RestPipeError, ShuttingDownError } from '../errors.js';
import { EventCode } from '../event-codes.js';
import type { PeerInfo } from '../handler.js';
import type { Stats } from '../stats.js';
import { DeadlineSweep } from './deadline-sweep.js';
import { ourHello, peerTerms } from './handshake.js';
import { type ExchangeState, nextState } from './exchange-state.js';
import type { PipeLimits } from './limits.js';
import { FrameWriter } from './frame-writer.js';
import { Heartbeat } from './heartbeat.js';
import { IncomingCalls } from './incoming-calls.js';
import { OutgoingCalls, type OutgoingNotification, type OutgoingRequest, type ReplyResult } from './outgoing-calls.js';
import type { InFlight, Pipe } from './pipe.js';
import { RequestIds, type PipeRole } from './request-ids.js';
import { StreamTable } from './stream-table.js';
import { describeFrame } from './trace.js';

export interface MessageExchangeOptions {
  socket: Duplex;
  role: PipeRole;
  peer: PeerInfo;
  /** Answers the peer's requests: a handler's `Dispatcher`, or any other `EventRouter`. */
  dispatcher: EventRouter;
  log: Logger;
  stats: Stats;
  /** Frame, body, stream, heartbeat and in-flight limits (usually the node's config). */
  limits: PipeLimits;
  /** Software name sent in Hello. */
  agent?: string;
  /** Monotonic milliseconds for deadlines and heartbeats. @default performance.now */
  now?: () => number;
}

/** Default of `RP_MAX_IN_FLIGHT`. */
const DEFAULT_MAX_IN_FLIGHT = 10_000;

export interface MessageExchangeEvents {
  /** The peer's Hello arrived. */
  ready: [];
  /** The peer sent GoAway: it takes no new requests. */
  goaway: [reason: string];
  /** The stream is gone; everything in flight has failed. */
  close: [err: Error | undefined];
}

export type { ExchangeState, PipeLimits };

export class MessageExchange extends EventEmitter<MessageExchangeEvents> implements Pipe {
  readonly peer: PeerInfo;
  readonly role: PipeRole;
  /** When the connection was set up. */
  readonly connectedAt = new Date();
  private readonly socket: Duplex;
  private readonly log: Logger;
  private readonly stats: Stats;
  private readonly traceFrames: boolean;
  private readonly writer: FrameWriter;
  private readonly sweep: DeadlineSweep;
  private readonly ids: RequestIds;
  private readonly streams: StreamTable;
  private readonly outgoing: OutgoingCalls;
  private readonly incoming: IncomingCalls;
  private readonly heartbeat: Heartbeat;
  private readonly decoder: FrameDecoder;
  private _state: ExchangeState = 'handshaking';
  private peerHello: Hello | undefined;
  private peerSentGoAway = false;
  private peerStreams = false;
  private closeError: Error | undefined;
  private idleWaiter: (() => void) | undefined;
  private framesReceived = 0;

  constructor(opts: MessageExchangeOptions) {
    super();
    this.socket = opts.socket;
    this.role = opts.role;
    this.peer = opts.peer;
    this.log = opts.log;
    this.stats = opts.stats;
    this.traceFrames = opts.log.isLevelEnabled('debug');
    const { limits } = opts;
    const now = opts.now ?? (() => performance.now());
    const maxInFlight = limits.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    const closed = () => this._state === 'closed';
    const settled = () => this.checkIdle();
    const peerStreams = () => this.peerStreams;
    const { socket, stats, log } = opts;
    this.writer = new FrameWriter({ socket, stats, log, peerName: opts.peer.name, connectionBufferBytes: limits.streamConnectionBufferBytes });
    this.sweep = new DeadlineSweep(now);
    this.ids = new RequestIds(opts.role);
    const { writer, sweep } = this;
    const chunkBytes = limits.streamChunkBytes;
    this.streams = new StreamTable({
      writer,
      windowBytes: limits.streamWindowBytes,
      chunkBytes,
      onSent: (id) => this.outgoing.progressed(id),
      closed,
      settled,
    });
    const common = { writer, streams: this.streams, sweep, stats, log, now, maxInFlight, peerStreams, closed, settled };
    this.outgoing = new OutgoingCalls({ ...common, ids: this.ids, peerName: opts.peer.name, chunkBytes });
    const draining = () => this._state === 'draining';
    this.incoming = new IncomingCalls({ ...common, dispatcher: opts.dispatcher, peer: opts.peer, maxBodyBytes: limits.maxBodyBytes, chunkBytes, draining });
    this.heartbeat = new Heartbeat({
      intervalMs: limits.heartbeatIntervalMs,
      timeoutMs: limits.heartbeatTimeoutMs,
      leads: opts.role === 'server',
      now,
      sendPing: (seq, rttMicros) => void this.writer.trySend({ ping: { seq, rttMicros } }),
      onSilent: (silentMs) => {
        this.log.warn({ peer: this.peer.name, silentMs: Math.round(silentMs) }, 'closing the pipe: the peer stopped answering');
        this.stats.increment('heartbeat.timeouts');
        this.close(new PipeBrokenError(`the peer sent nothing for ${Math.round(silentMs)} ms`));
      },
      onRtt: (rttMs) => this.stats.timing('heartbeat.rtt', rttMs),
    });
    this.decoder = new FrameDecoder(limits.maxFrameBytes, (frame) => this.onFrame(frame), { chunkParts: true });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err: Error) => this.close(new PipeBrokenError(`pipe error: ${err.message}`, { cause: err })));
    this.socket.on('close', () => this.close(this.closeError ?? new PipeBrokenError('the pipe closed')));
    this.socket.on('end', () => this.socket.end());
    this.writer.send({ hello: ourHello(limits, opts.agent) });
  }

  get state(): ExchangeState {
    return this._state;
  }

  /** True once the peer's Hello arrived and until the exchange closes or drains, or the peer leaves. */
  get ready(): boolean {
    return this._state === 'open';
  }

  /** True once the peer sent GoAway (it drains, restarts, or replaced this connection). */
  get peerGoingAway(): boolean {
    return this.peerSentGoAway;
  }

  /** Smoothed round-trip time of the heartbeats, in ms (measured here, or learnt from the peer's pings). */
  get rttMs(): number | undefined {
    return this.heartbeat.rttMs;
  }

  /** The peer's Hello: protocol version, capabilities, software. */
  get peerInfo(): Hello | undefined {
    return this.peerHello;
  }

  get inFlight(): InFlight {
    return { outgoing: this.outgoing.size, incoming: this.incoming.size, streams: this.streams.size };
  }

  /**
   * Memory this connection held at its peaks: the most one inbound stream
   * buffered unread (bounded by `streamWindowBytes`), and the most bytes
   * written to the socket but not yet sent (bounded by
   * `streamConnectionBufferBytes` plus one chunk and a few control frames).
   */
  get memory(): { peakStreamHeldBytes: number; peakUnsentBytes: number } {
    return { peakStreamHeldBytes: this.streams.peakHeldBytes, peakUnsentBytes: this.writer.peakUnsentBytes };
  }

  /** Sends an event to the peer's handler and resolves with its reply. */
  request(req: OutgoingRequest): Promise<ReplyResult> {
    const refused = this.refusal();
    return refused ? Promise.reject(refused) : this.outgoing.request(req);
  }

  /**
   * Sends a notification: resolves once it is written to the pipe (not when
   * handled). The peer handles notifications one at a time, in order.
   */
  notify(event: OutgoingNotification): Promise<void> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    try {
      return this.outgoing.notify(event);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Why a new request cannot go out now, or undefined when it can. */
  private refusal(): Error | undefined {
    switch (this._state) {
      case 'closed':
        return this.closeError ?? new PipeBrokenError('the pipe is closed');
      case 'draining':
        return new ShuttingDownError();
      case 'peer-leaving':
        return new ShuttingDownError('the peer is shutting down');
      default:
        return undefined;
    }
  }

  /**
   * Graceful drain: tells the peer we take no new requests, lets the ones in
   * flight finish. When nothing is in flight any more (or after `graceMs`)
   * it closes, flushing what is written; resolves once the socket closed.
   */
  async drain(reason: string, graceMs: number): Promise<void> {
    if (this._state === 'closed') return;
    this.goAway(reason);
    if (!this.idle()) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(finish, graceMs);
        timer.unref();
        function finish() {
          clearTimeout(timer);
          resolve();
        }
        this.idleWaiter = finish;
      });
      this.idleWaiter = undefined;
    }
    // Flush: the last replies may still be corked for this tick; resolve once
    // they left and the socket closed (at most a second later, see FrameWriter.end).
    this.close(new ShuttingDownError(reason), { flush: true });
    const socket = this.socket;
    if (!socket.closed && !socket.destroyed) await new Promise<void>((resolve) => socket.once('close', () => resolve()));
  }

  /** Sends GoAway without waiting: the peer should stop sending new requests here. */
  goAway(reason: string): void {
    if (this._state === 'draining' || this._state === 'closed') return;
    this.transition('draining');
    this.writer.trySend({ goaway: { reason, code: EventCode.SHUTTING_DOWN } });
  }

  /**
   * Closes the stream; everything in flight fails with `err` (a
   * `PipeBrokenError` by default). With `flush`, frames already written (a
   * GoAway saying why) go out before the socket closes.
   */
  close(err?: Error, opts?: { flush?: boolean }): void {
    if (this._state === 'closed') return;
    this.transition('closed');
    const reason = err ?? new PipeBrokenError('the pipe closed');
    this.closeError = reason;
    const failure = reason instanceof RestPipeError ? reason : new PipeBrokenError(reason.message, { cause: reason });
    this.heartbeat.stop();
    this.sweep.close();
    this.outgoing.failAll(failure);
    this.incoming.failAll(failure);
    this.streams.failAll(failure);
    this.writer.fail(failure);
    this.flushReceived();
    if (opts?.flush) this.writer.end();
    else this.writer.destroy();
    this.idleWaiter?.();
    this.emit('close', err);
  }

  private transition(to: ExchangeState): void {
    const from = this._state;
    try {
      this._state = nextState(from, to);
    } catch (err) {
      this.log.error({ peer: this.peer.name, from, to }, 'illegal exchange state transition');
      throw err;
    }
    if (this.traceFrames) this.log.debug({ peer: this.peer.name, from, to }, 'exchange state');
  }

  private idle(): boolean {
    return this.outgoing.size === 0 && this.incoming.size === 0 && this.streams.size === 0;
  }

  /** A call or stream settled: wake a drain waiting for nothing in flight. */
  private checkIdle(): void {
    if (this.idleWaiter && this.idle()) this.idleWaiter();
  }

  private onData(chunk: Buffer): void {
    this.heartbeat.received();
    this.stats.increment('bytes.received', chunk.length);
    try {
      this.decoder.push(chunk);
    } catch (err) {
      this.log.warn({ err, peer: this.peer.name }, 'closing the pipe: the peer sent a bad frame');
      this.stats.increment('frames.bad');
      this.writer.trySend({ goaway: { reason: `bad frame: ${(err as Error).message}`, code: EventCode.BAD_REQUEST } });
      this.close(new ProtocolError(`bad frame from the peer: ${(err as Error).message}`, { cause: err }), { flush: true });
    }
    this.flushReceived();
  }

  /** Frames are counted once per socket read, not per frame. */
  private flushReceived(): void {
    if (this.framesReceived === 0) return;
    this.stats.increment('frames.received', this.framesReceived);
    this.framesReceived = 0;
  }

  private onFrame(frame: Frame): void {
    if (this._state === 'closed') return;
    this.framesReceived++;
    if (this.traceFrames) this.log.debug({ peer: this.peer.name, frame: describeFrame(frame) }, 'frame received');
    if (this.peerHello === undefined && frame.kind !== 'hello') throw new ProtocolError(`expected hello, got ${frame.kind}`);
    switch (frame.kind) {
      case 'chunk': {
        const chunk = frame.chunk as Chunk | PartedChunk;
        // The handler's deadline, like the requester's, counts from the body's last chunk.
        if (this.ids.isPeerId(chunk.id)) this.incoming.progressed(chunk.id);
        // Normal after a cancel: chunks already on the wire arrive late.
        if (!this.streams.receiveChunk(chunk)) this.stats.increment('chunks.unmatched');
        return;
      }
      case 'credit': {
        const credit = frame.credit as Credit;
        this.streams.grant(credit.id, credit.bytes);
        return;
      }
      case 'request':
        this.onRequest(frame.request as Request);
        return;
      case 'reply':
        this.outgoing.onReply(frame.reply as Reply);
        return;
      case 'cancel': {
        const { id, reason } = frame.cancel as Cancel;
        if (this.ids.isPeerId(id)) this.incoming.onCancel(id, reason);
        else this.outgoing.onCancel(id, reason);
        return;
      }
      case 'ping': {
        const ping = frame.ping as Ping;
        this.writer.trySend({ pong: { seq: ping.seq } });
        this.heartbeat.pinged(ping.rttMicros);
        return;
      }
      case 'pong':
        this.heartbeat.ponged((frame.pong as Pong).seq);
        return;
      case 'hello':
        this.onHello(frame.hello as Hello);
        return;
      case 'goaway':
        this.onGoAway((frame.goaway as GoAway).reason);
        return;
      default:
        throw new ProtocolError(`unknown frame kind ${String(frame.kind)}`);
    }
  }

  private onHello(hello: Hello): void {
    if (this.peerHello !== undefined) throw new ProtocolError('a second hello');
    const terms = peerTerms(hello);
    this.peerHello = hello;
    if (terms.maxFrameBytes > 0) this.writer.maxFrameBytes = terms.maxFrameBytes;
    this.peerStreams = terms.streams;
    this.streams.peerWindowBytes = terms.windowBytes;
    this.log.debug({ peer: this.peer.name, agent: hello.agent, version: hello.version }, 'peer said hello');
    if (this._state === 'handshaking') this.transition('open');
    this.emit('ready');
  }

  private onRequest(req: Request): void {
    const { id } = req;
    if (!this.ids.isPeerId(id)) throw new ProtocolError(`request id ${id} has the wrong parity for the peer`);
    if (this.incoming.has(id) || this.streams.hasInbound(id)) throw new ProtocolError(`request id ${id} is already in flight`);
    this.incoming.onRequest(req);
  }

  private onGoAway(reason: string): void {
    this.log.info({ peer: this.peer.name, reason }, 'the peer is going away');
    this.peerSentGoAway = true;
    if (this._state === 'open' || this._state === 'handshaking') this.transition('peer-leaving');
    this.emit('goaway', reason);
  }
}
