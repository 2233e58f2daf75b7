/**
 * The message exchange: one per connection, on either side of the pipe.
 *
 * It speaks the frame protocol over a duplex stream (a TLS socket, or an
 * in-process stream): sends requests and matches replies by id, dispatches
 * the peer's requests to the local handler concurrently, enforces deadlines,
 * forwards cancellation, keeps the link alive with ping/pong, and when the
 * stream ends fails everything in flight at once.
 */
import { EventEmitter } from 'node:events';
import type { Duplex, Readable } from 'node:stream';
import { encodeChunkHeader, encodeFrame, FrameDecoder, PROTOCOL_VERSION, type Frame, type FrameInit } from '@restpipe/proto';
import type * as wire from '@restpipe/proto';
import type { Logger } from 'pino';
import { BodyTooLargeError, DeadlineExceededError, PipeBrokenError, ProtocolError, RestPipeError, ShuttingDownError } from './errors.js';
import type { CommonConfig } from './config.js';
import { InboundStream, OutboundStream, collectBody, type StreamIO } from './streams.js';
import { EventCode } from './event-codes.js';
import type { Dispatcher, EventReply } from './dispatcher.js';
import type { EventContext, PeerInfo } from './handler.js';
import { HandlerContext } from './event-context.js';
import { Heartbeat } from './pipe/heartbeat.js';
import type { Stats } from './stats.js';

/** Which end of the pipe this exchange is: clients number requests odd, the server even. */
export type PipeRole = 'client' | 'server';

export interface MessageExchangeOptions {
  socket: Duplex;
  role: PipeRole;
  peer: PeerInfo;
  dispatcher: Dispatcher;
  log: Logger;
  stats: Stats;
  /** Frame, body, stream and heartbeat limits (usually the node's config). */
  limits: PipeLimits;
  /** Software name sent in Hello. */
  agent?: string;
  /** Monotonic milliseconds for deadlines. @default performance.now */
  now?: () => number;
}

/** The settings an exchange works within. */
export type PipeLimits = Pick<
  CommonConfig,
  'maxFrameBytes' | 'maxBodyBytes' | 'streamChunkBytes' | 'streamWindowBytes' | 'streamConnectionBufferBytes' | 'heartbeatIntervalMs' | 'heartbeatTimeoutMs'
>;

/** Capability sent in Hello: this side can send and receive streamed bodies. */
const STREAM_CAPABILITY = 'stream';

/** A request to send to the peer. */
export interface OutgoingRequest {
  verb: string;
  noun: string;
  args: string[];
  query: string;
  headers: Array<[name: string, value: string]>;
  mimetype: string;
  /** The body: bytes, or a stream (sent in chunks with flow control). */
  body: Buffer | AsyncIterable<unknown>;
  /** The body's length when known (for a stream), else -1. */
  contentLength?: number;
  /** Fail with `DeadlineExceededError` after this many ms (until the reply starts); 0 waits for ever. */
  deadlineMs: number;
  /** Aborting it cancels the request on the peer too. */
  signal?: AbortSignal;
  /**
   * Receives a function that gives up on the request (as an aborted
   * `signal` would), for callers that would rather not make an
   * AbortController per request.
   */
  onCancel?: (cancel: (reason: Error) => void) => void;
}

/** A fire-and-forget event: no reply, delivered to the peer's handler in order. */
export type OutgoingNotification = Omit<OutgoingRequest, 'deadlineMs' | 'signal' | 'onCancel'>;

/** The peer's reply: a whole body, or a stream of it. */
export interface ReplyResult {
  code: number;
  mimetype: string;
  body: Buffer;
  /** Set when the reply body streams; read it to the end or destroy it. */
  stream?: Readable;
  /** Length of the streamed body when the sender knew it, else -1. */
  contentLength: number;
}

/** A request being handled here. */
interface Incoming {
  ctx: HandlerContext;
  timer: NodeJS.Timeout | undefined;
  /** The request's deadline passed while it was handled: whatever the handler answers now is late. */
  expired: boolean;
}

interface Pending {
  /** When the deadline passes, on the exchange's clock (moved on by upload progress); Infinity for none. */
  deadlineAt: number;
  deadlineMs: number;
  resolve(reply: ReplyResult): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export type ExchangeState = 'open' | 'draining' | 'closed';

const ID_LIMIT = 0x1_0000_0000;

export interface MessageExchangeEvents {
  /** The peer's Hello arrived. */
  ready: [];
  /** The peer sent GoAway: it takes no new requests. */
  goaway: [reason: string];
  /** The stream is gone; everything in flight has failed. */
  close: [err: Error | undefined];
}

export class MessageExchange extends EventEmitter<MessageExchangeEvents> {
  readonly peer: PeerInfo;
  readonly role: PipeRole;
  /** When the connection was set up. */
  readonly connectedAt = new Date();
  private readonly socket: Duplex;
  private readonly dispatcher: Dispatcher;
  private readonly log: Logger;
  private readonly stats: Stats;
  private readonly decoder: FrameDecoder;
  private readonly now: () => number;
  private readonly pending = new Map<number, Pending>();
  private readonly incoming = new Map<number, Incoming>();
  /** Bodies arriving from the peer, by request id (ids are unique per direction by parity). */
  private readonly inbound = new Map<number, InboundStream>();
  /** Bodies being sent to the peer, by request id. */
  private readonly outbound = new Map<number, OutboundStream>();
  private readonly streamIO: StreamIO;
  private drainWaiters: Array<() => void> = [];
  private notifications: Promise<void> = Promise.resolve();
  private readonly limits: PipeLimits;
  /** `DEBUG=1`: log every frame (checked once; a frame log costs nothing otherwise). */
  private readonly traceFrames: boolean;
  private nextId: number;
  private _state: ExchangeState = 'open';
  private peerHello: wire.Hello | undefined;
  private peerLeaving = false;
  private closeError: Error | undefined;
  private readonly heartbeat: Heartbeat;
  private corked = false;
  private peerMaxFrameBytes = Number.MAX_SAFE_INTEGER;
  private peerWindowBytes = 0;
  private peerStreams = false;
  private peakStreamHeldBytes = 0;
  private peakUnsentBytes = 0;

  constructor(readonly opts: MessageExchangeOptions) {
    super();
    this.socket = opts.socket;
    this.role = opts.role;
    this.peer = opts.peer;
    this.dispatcher = opts.dispatcher;
    this.log = opts.log;
    this.stats = opts.stats;
    this.limits = opts.limits;
    this.traceFrames = opts.log.isLevelEnabled('debug');
    this.now = opts.now ?? (() => performance.now());
    this.nextId = this.firstId();
    this.decoder = new FrameDecoder(opts.limits.maxFrameBytes, (frame) => this.onFrame(frame));
    this.streamIO = {
      chunkBytes: opts.limits.streamChunkBytes,
      sendChunk: (id, data, end) => {
        this.sendChunk(id, data, end);
        // A request body still flowing is progress: its deadline counts from the last chunk.
        const pending = this.pending.get(id);
        if (pending?.timer) {
          pending.timer.refresh();
          pending.deadlineAt = this.now() + pending.deadlineMs;
        }
      },
      sendCredit: (id, bytes) => this.trySend({ credit: { id, bytes } }),
      sendCancel: (id, reason) => {
        if (this._state !== 'closed') this.trySend({ cancel: { id, reason } });
      },
      canWrite: () => this.socket.writableLength < this.limits.streamConnectionBufferBytes,
      writable: () => this.writable(),
      held: (bytes) => {
        if (bytes > this.peakStreamHeldBytes) this.peakStreamHeldBytes = bytes;
      },
      done: (id, stream) => {
        if (this.inbound.get(id) === stream) this.inbound.delete(id);
        if (this.outbound.get(id) === stream) this.outbound.delete(id);
      },
    };
    this.socket.on('drain', () => this.releaseDrainWaiters());
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err: Error) => this.close(new PipeBrokenError(`pipe error: ${err.message}`, { cause: err })));
    this.socket.on('close', () => this.close(this.closeError ?? new PipeBrokenError('the pipe closed')));
    this.socket.on('end', () => this.socket.end());
    this.heartbeat = new Heartbeat({
      intervalMs: opts.limits.heartbeatIntervalMs,
      timeoutMs: opts.limits.heartbeatTimeoutMs,
      leads: this.role === 'server',
      sendPing: (seq, rttMicros) => this.trySend({ ping: { seq, rttMicros } }),
      onSilent: (silentMs) => {
        this.log.warn({ peer: this.peer.name, silentMs: Math.round(silentMs) }, 'closing the pipe: the peer stopped answering');
        this.stats.increment('heartbeat.timeouts');
        this.close(new PipeBrokenError(`the peer sent nothing for ${Math.round(silentMs)} ms`));
      },
      onRtt: (rttMs) => this.stats.timing('heartbeat.rtt', rttMs),
    });
    this.send({
      hello: {
        version: PROTOCOL_VERSION,
        capabilities: [STREAM_CAPABILITY],
        agent: opts.agent ?? 'restpipe-node',
        maxFrameBytes: opts.limits.maxFrameBytes,
        initialWindowBytes: opts.limits.streamWindowBytes,
      },
    });
  }

  get state(): ExchangeState {
    return this._state;
  }

  /** True once the peer's Hello arrived and until the exchange closes or drains. */
  get ready(): boolean {
    return this._state === 'open' && this.peerHello !== undefined && !this.peerLeaving;
  }

  /** True once the peer sent GoAway (it drains, restarts, or replaced this connection). */
  get peerGoingAway(): boolean {
    return this.peerLeaving;
  }

  /** Smoothed round-trip time of the last ping, in ms. */
  get rttMs(): number | undefined {
    return this.heartbeat.rttMs;
  }

  /** The peer's Hello: protocol version, capabilities, software. */
  get peerInfo(): wire.Hello | undefined {
    return this.peerHello;
  }

  /** Requests in flight: sent and awaiting a reply, received and being handled, bodies streaming either way. */
  get inFlight(): { outgoing: number; incoming: number; streams: number } {
    return { outgoing: this.pending.size, incoming: this.incoming.size, streams: this.inbound.size + this.outbound.size };
  }

  /**
   * Memory this connection held at its peaks: the most one inbound stream
   * buffered unread (bounded by `streamWindowBytes`), and the most bytes
   * written to the socket but not yet sent (bounded by
   * `streamConnectionBufferBytes` plus one chunk and a few control frames).
   */
  get memory(): { peakStreamHeldBytes: number; peakUnsentBytes: number } {
    return { peakStreamHeldBytes: this.peakStreamHeldBytes, peakUnsentBytes: this.peakUnsentBytes };
  }

  private firstId(): number {
    return this.role === 'client' ? 1 : 2;
  }

  private allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId += 2;
      if (this.nextId >= ID_LIMIT) this.nextId = this.firstId();
      if (!this.pending.has(id)) return id;
    }
  }

  /** Sends an event to the peer's handler and resolves with its reply. */
  request(req: OutgoingRequest): Promise<ReplyResult> {
    if (this._state === 'closed') return Promise.reject(this.closeError ?? new PipeBrokenError('the pipe is closed'));
    if (this._state === 'draining') return Promise.reject(new ShuttingDownError());
    if (this.peerLeaving) return Promise.reject(new ShuttingDownError('the peer is shutting down'));
    if (req.signal?.aborted) return Promise.reject(req.signal.reason);
    const id = this.allocateId();
    return new Promise<ReplyResult>((resolve, reject) => {
      const pending: Pending = {
        deadlineAt: req.deadlineMs > 0 ? this.now() + req.deadlineMs : Number.POSITIVE_INFINITY,
        deadlineMs: req.deadlineMs,
        resolve,
        reject,
        timer: undefined,
        signal: req.signal,
        onAbort: undefined,
      };
      if (req.deadlineMs > 0) {
        pending.timer = setTimeout(() => this.abandon(id, 'deadline', new DeadlineExceededError(req.deadlineMs)), req.deadlineMs);
      }
      if (req.signal) {
        const signal = req.signal;
        pending.onAbort = () => this.abandon(id, 'caller gone', signal.reason instanceof Error ? signal.reason : new Error('request aborted'));
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      this.pending.set(id, pending);
      req.onCancel?.((reason) => this.abandon(id, 'caller gone', reason));
      let streamed = false;
      try {
        streamed = this.mustStream(req.body);
        this.send({
          request: {
            id,
            verb: req.verb,
            noun: req.noun,
            args: req.args,
            query: req.query,
            headers: req.headers.map(([name, value]) => ({ name, value })),
            mimetype: req.mimetype,
            body: streamed ? undefined : (req.body as Buffer),
            deadlineMs: req.deadlineMs,
            streaming: streamed,
            contentLength: Buffer.isBuffer(req.body) ? req.body.length : (req.contentLength ?? -1),
          },
        });
      } catch (err) {
        this.settle(id);
        reject(err);
        return;
      }
      this.stats.increment('requests.sent');
      if (streamed) {
        this.startOutbound(id, req.body, false).catch((err: unknown) => {
          // The body's source failed (e.g. the HTTP upload broke): give up on the request.
          if (this.pending.has(id)) this.abandon(id, 'request body failed', err instanceof Error ? err : new Error(String(err)));
        });
      }
    });
  }

  /** True when a body goes in chunks: any stream, or bytes over one chunk. */
  private mustStream(body: Buffer | AsyncIterable<unknown>): boolean {
    const streamed = !Buffer.isBuffer(body) || body.length > this.limits.streamChunkBytes;
    if (streamed && !this.peerStreams) throw new ProtocolError('the peer cannot receive streamed bodies');
    return streamed;
  }

  /** Pumps a body to the peer under flow control; settles when sent or stopped. */
  private startOutbound(id: number, body: Buffer | AsyncIterable<unknown>, destroySource: boolean): Promise<void> {
    const stream = new OutboundStream(id, this.peerWindowBytes, this.streamIO, destroySource);
    this.outbound.set(id, stream);
    return stream.pump(body);
  }

  /** Resolves at the socket's next drain (or at once when closed, rejecting). */
  private writable(): Promise<void> {
    if (this._state === 'closed') return Promise.reject(this.closeError ?? new PipeBrokenError('the pipe is closed'));
    // A cap below the socket's own high-water mark never sees 'drain': check again on the next turn.
    if (!this.socket.writableNeedDrain) return new Promise<void>((resolve) => setImmediate(resolve));
    return new Promise<void>((resolve) => this.drainWaiters.push(resolve));
  }

  private releaseDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const wake of waiters) wake();
  }

  /**
   * Sends a notification: resolves once it is written to the pipe (not when
   * handled). The peer handles notifications one at a time, in order.
   */
  notify(event: OutgoingNotification): Promise<void> {
    if (this._state !== 'open')
      return Promise.reject(this._state === 'closed' ? (this.closeError ?? new PipeBrokenError('the pipe is closed')) : new ShuttingDownError());
    if (this.peerLeaving) return Promise.reject(new ShuttingDownError('the peer is shutting down'));
    const id = this.allocateId();
    const streamed = this.mustStream(event.body);
    this.send({
      request: {
        id,
        verb: event.verb,
        noun: event.noun,
        args: event.args,
        query: event.query,
        headers: event.headers.map(([name, value]) => ({ name, value })),
        mimetype: event.mimetype,
        body: streamed ? undefined : (event.body as Buffer),
        streaming: streamed,
        notify: true,
        contentLength: Buffer.isBuffer(event.body) ? event.body.length : (event.contentLength ?? -1),
      },
    });
    this.stats.increment('notifications.sent');
    return streamed ? this.startOutbound(id, event.body, false) : Promise.resolve();
  }

  /** Removes a pending request and its timer and listener; returns it. */
  private settle(id: number): Pending | undefined {
    const pending = this.pending.get(id);
    if (!pending) return undefined;
    this.pending.delete(id);
    if (pending.timer) clearTimeout(pending.timer);
    if (pending.onAbort) pending.signal?.removeEventListener('abort', pending.onAbort);
    return pending;
  }

  /** Gives up on a request: tells the peer to stop and fails it locally. */
  private abandon(id: number, reason: string, err: Error): void {
    const pending = this.settle(id);
    if (!pending) return;
    this.outbound.get(id)?.stop(err);
    if (this._state !== 'closed') this.trySend({ cancel: { id, reason } });
    if (err instanceof DeadlineExceededError) this.stats.increment('requests.deadline_exceeded');
    pending.reject(err);
  }

  /**
   * Graceful drain: tells the peer we take no new requests, lets the ones in
   * flight finish. Resolves when nothing is in flight any more or after
   * `graceMs`, then closes.
   */
  async drain(reason: string, graceMs: number): Promise<void> {
    if (this._state === 'closed') return;
    if (this._state === 'open') {
      this._state = 'draining';
      this.trySend({ goaway: { reason, code: EventCode.SHUTTING_DOWN } });
    }
    const deadline = Date.now() + graceMs;
    while (
      this.state !== 'closed' &&
      (this.pending.size > 0 || this.incoming.size > 0 || this.inbound.size > 0 || this.outbound.size > 0) &&
      Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.close(new ShuttingDownError(reason));
  }

  /** Sends GoAway without waiting: the peer should stop sending new requests here. */
  goAway(reason: string): void {
    if (this._state !== 'open') return;
    this._state = 'draining';
    this.trySend({ goaway: { reason, code: EventCode.SHUTTING_DOWN } });
  }

  /**
   * Closes the stream; everything in flight fails with `err` (a
   * `PipeBrokenError` by default). With `flush`, frames already written (a
   * GoAway saying why) go out before the socket closes.
   */
  close(err?: Error, opts?: { flush?: boolean }): void {
    if (this._state === 'closed') return;
    this._state = 'closed';
    const reason = err ?? new PipeBrokenError('the pipe closed');
    this.closeError = reason;
    this.heartbeat.stop();
    const failure = reason instanceof RestPipeError ? reason : new PipeBrokenError(reason.message, { cause: reason });
    for (const id of [...this.pending.keys()]) {
      this.settle(id)?.reject(failure);
    }
    for (const entry of this.incoming.values()) {
      if (entry.timer) clearTimeout(entry.timer);
      entry.ctx.abort(failure);
    }
    this.incoming.clear();
    for (const stream of [...this.inbound.values()]) stream.destroy(failure);
    this.inbound.clear();
    for (const stream of this.outbound.values()) stream.stop(failure);
    this.outbound.clear();
    this.releaseDrainWaiters();
    if (opts?.flush) {
      if (this.corked) {
        this.corked = false;
        this.socket.uncork();
      }
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    } else {
      this.socket.destroy();
    }
    this.emit('close', err);
  }

  private onData(chunk: Buffer): void {
    this.heartbeat.received();
    this.stats.increment('bytes.received', chunk.length);
    try {
      this.decoder.push(chunk);
    } catch (err) {
      this.log.warn({ err, peer: this.peer.name }, 'closing the pipe: the peer sent a bad frame');
      this.stats.increment('frames.bad');
      this.trySend({ goaway: { reason: `bad frame: ${(err as Error).message}`, code: EventCode.BAD_REQUEST } });
      this.close(new ProtocolError(`bad frame from the peer: ${(err as Error).message}`, { cause: err }), { flush: true });
    }
  }

  private onFrame(frame: Frame): void {
    if (this._state === 'closed') return;
    this.stats.increment('frames.received');
    if (this.traceFrames) this.log.debug({ peer: this.peer.name, frame: describeFrame(frame) }, 'frame received');
    if (this.peerHello === undefined && frame.kind !== 'hello') {
      throw new ProtocolError(`expected hello, got ${frame.kind}`);
    }
    switch (frame.kind) {
      case 'hello':
        this.onHello(frame.hello as wire.Hello);
        return;
      case 'request':
        this.onRequest(frame.request as wire.Request);
        return;
      case 'reply':
        this.onReply(frame.reply as wire.Reply);
        return;
      case 'cancel':
        this.onCancel(frame.cancel as wire.Cancel);
        return;
      case 'ping': {
        const ping = frame.ping as wire.Ping;
        this.trySend({ pong: { seq: ping.seq } });
        this.heartbeat.pinged(ping.rttMicros);
        return;
      }
      case 'pong':
        this.heartbeat.ponged((frame.pong as wire.Pong).seq);
        return;
      case 'goaway':
        this.onGoAway(frame.goaway as wire.GoAway);
        return;
      case 'chunk':
        this.onChunk(frame.chunk as wire.Chunk);
        return;
      case 'credit': {
        const credit = frame.credit as wire.Credit;
        this.outbound.get(credit.id)?.grant(credit.bytes);
        return;
      }
      default:
        throw new ProtocolError(`unknown frame kind ${String(frame.kind)}`);
    }
  }

  private onHello(hello: wire.Hello): void {
    if (this.peerHello !== undefined) throw new ProtocolError('a second hello');
    if (hello.version !== PROTOCOL_VERSION) {
      throw new ProtocolError(`the peer speaks protocol version ${hello.version}, this node ${PROTOCOL_VERSION}`);
    }
    this.peerHello = hello;
    if (hello.maxFrameBytes > 0) this.peerMaxFrameBytes = hello.maxFrameBytes;
    this.peerStreams = hello.capabilities.includes(STREAM_CAPABILITY) && hello.initialWindowBytes > 0;
    this.peerWindowBytes = hello.initialWindowBytes;
    this.log.debug({ peer: this.peer.name, agent: hello.agent, version: hello.version }, 'peer said hello');
    this.emit('ready');
  }

  private onRequest(req: wire.Request): void {
    const { id } = req;
    if (!this.isPeerId(id)) throw new ProtocolError(`request id ${id} has the wrong parity for the peer`);
    if (this.incoming.has(id) || this.inbound.has(id)) throw new ProtocolError(`request id ${id} is already in flight`);
    this.stats.increment('requests.received');
    let bodyStream: InboundStream | undefined;
    if (req.streaming) {
      bodyStream = new InboundStream(id, this.limits.streamWindowBytes, this.streamIO);
      this.inbound.set(id, bodyStream);
    }
    if (this._state === 'draining') {
      bodyStream?.destroy();
      if (!req.notify) this.sendError(id, new ShuttingDownError());
      return;
    }
    const ctx = new HandlerContext(this.peer, req);
    const entry: Incoming = { ctx, timer: undefined, expired: false };
    this.incoming.set(id, entry);
    if (req.deadlineMs > 0) {
      // The requester gives up at its deadline; stop the handler then too.
      entry.timer = setTimeout(() => {
        entry.expired = true;
        ctx.abort(new DeadlineExceededError(req.deadlineMs));
      }, req.deadlineMs);
      entry.timer.unref();
    }
    if (req.notify) {
      // Notifications reach the handler one at a time, in the order sent.
      this.notifications = this.notifications.then(() => this.handle(req, ctx, entry, bodyStream));
    } else {
      void this.handle(req, ctx, entry, bodyStream);
    }
  }

  /** Runs the handler for one request and sends its reply; never rejects. */
  private async handle(req: wire.Request, ctx: EventContext, entry: Incoming, bodyStream: InboundStream | undefined): Promise<void> {
    const { id } = req;
    const started = performance.now();
    let reply: EventReply;
    try {
      let body = Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body);
      let stream: Readable | undefined;
      if (bodyStream && this.dispatcher.takesStream(req.verb, req.noun)) {
        stream = bodyStream;
      } else if (bodyStream) {
        body = await collectBody(
          bodyStream,
          this.limits.maxBodyBytes,
          (n) => new BodyTooLargeError(`request body of ${n}+ bytes is over RP_MAX_BODY_BYTES (${this.limits.maxBodyBytes})`),
        );
      } else if (body.length > this.limits.maxBodyBytes) {
        throw new BodyTooLargeError(`request body of ${body.length} bytes is over RP_MAX_BODY_BYTES (${this.limits.maxBodyBytes})`);
      }
      reply = await this.dispatcher.dispatch({ verb: req.verb, noun: req.noun, args: req.args, mimetype: req.mimetype, body, stream }, ctx);
    } catch (err) {
      const e = err instanceof RestPipeError ? err : new PipeBrokenError(`request body broke: ${(err as Error).message}`, { cause: err });
      reply = { code: e.eventCode, mimetype: 'application/json', body: errorBody(e) };
    }
    if (reply.method) {
      this.stats.increment(`handler.${reply.method}.calls`);
      this.stats.timing(`handler.${reply.method}.time`, performance.now() - started);
    }
    if (entry.expired && !req.notify) {
      // Past its deadline the requester answers 504 whatever the handler says: so does this side.
      destroyBody(reply.stream);
      this.stats.increment('replies.late');
      reply = { code: EventCode.DEADLINE_EXCEEDED, mimetype: 'application/json', body: errorBody(new DeadlineExceededError(req.deadlineMs)) };
    }
    this.stats.increment(`requests.code.${reply.code}`);
    if (this.incoming.get(id) !== entry) {
      // Cancelled or closed meanwhile: nobody waits for this reply.
      destroyBody(reply.stream);
      return;
    }
    if (req.notify) {
      this.finishIncoming(id, entry);
      destroyBody(reply.stream);
      if (reply.code !== EventCode.OK) {
        this.stats.increment('notifications.failed');
        this.log.warn(
          { peer: this.peer.name, verb: req.verb, noun: req.noun, code: reply.code, body: reply.body.toString('utf8', 0, 500) },
          'a notification failed',
        );
      }
      return;
    }
    const streamed = reply.stream !== undefined || reply.body.length > this.limits.streamChunkBytes;
    if (!streamed || !this.peerStreams) {
      this.finishIncoming(id, entry);
      this.sendReply(id, reply);
      destroyBody(reply.stream);
      // The handler is done with the request body: the peer may stop sending it.
      if (bodyStream && !bodyStream.readableEnded) bodyStream.destroy();
      return;
    }
    try {
      this.send({
        reply: { id, code: reply.code, mimetype: reply.mimetype, streaming: true, contentLength: reply.stream ? -1 : reply.body.length },
      });
      // The deadline covered the wait for the reply; a long download is not late.
      if (entry.timer) clearTimeout(entry.timer);
      entry.timer = undefined;
      await this.startOutbound(id, reply.stream ?? reply.body, true);
    } catch (err) {
      this.log.debug({ err, peer: this.peer.name, id }, 'streamed reply stopped');
      destroyBody(reply.stream);
      // A handler stream that failed midway: the requester sees the body end early.
      if (this.outbound.get(id) === undefined && this._state !== 'closed' && this.incoming.get(id) === entry) {
        this.trySend({ cancel: { id, reason: `reply stream failed: ${(err as Error).message}` } });
      }
    } finally {
      this.finishIncoming(id, entry);
      // The reply may have been the request body itself (an echo): only now is it unused.
      if (bodyStream && !bodyStream.readableEnded) bodyStream.destroy();
    }
  }

  private finishIncoming(id: number, entry: Incoming): void {
    if (entry.timer) clearTimeout(entry.timer);
    if (this.incoming.get(id) === entry) this.incoming.delete(id);
  }

  /** Ids of requests the peer originated: the server's are even, the client's odd. */
  private isPeerId(id: number): boolean {
    return id % 2 === (this.role === 'client' ? 0 : 1);
  }

  private sendError(id: number, err: RestPipeError): void {
    this.trySend({ reply: { id, code: err.eventCode, mimetype: 'application/json', body: errorBody(err) } });
  }

  private sendReply(id: number, reply: EventReply): void {
    try {
      this.send({ reply: { id, code: reply.code, mimetype: reply.mimetype, body: reply.body } });
    } catch (err) {
      // The reply is over the peer's frame limit: answer with an error instead.
      const e = new BodyTooLargeError((err as Error).message, { cause: err });
      this.trySend({ reply: { id, code: e.eventCode, mimetype: 'application/json', body: errorBody(e) } });
    }
  }

  private onReply(reply: wire.Reply): void {
    const late = this.pending.get(reply.id);
    if (late && this.now() >= late.deadlineAt) {
      // The deadline passed before this reply was read (a busy event loop ran the timer late): it is a 504.
      this.stats.increment('replies.late');
      this.abandon(reply.id, 'deadline', new DeadlineExceededError(late.deadlineMs));
      return;
    }
    const pending = this.settle(reply.id);
    if (!pending) {
      // Normal after a deadline or cancel: the peer answered too late.
      this.log.debug({ peer: this.peer.name, id: reply.id }, 'reply for a request no longer pending');
      this.stats.increment('replies.unmatched');
      return;
    }
    const body = Buffer.isBuffer(reply.body) ? reply.body : Buffer.from(reply.body);
    let stream: InboundStream | undefined;
    if (reply.streaming) {
      stream = new InboundStream(reply.id, this.limits.streamWindowBytes, this.streamIO);
      this.inbound.set(reply.id, stream);
    }
    pending.resolve({ code: reply.code, mimetype: reply.mimetype, body, stream, contentLength: reply.contentLength });
  }

  private onChunk(chunk: wire.Chunk): void {
    const stream = this.inbound.get(chunk.id);
    // The handler's deadline, like the requester's, counts from the body's last chunk.
    if (this.isPeerId(chunk.id)) this.incoming.get(chunk.id)?.timer?.refresh();
    if (!stream) {
      // Normal after a cancel: chunks already on the wire arrive late.
      this.stats.increment('chunks.unmatched');
      return;
    }
    stream.receive(Buffer.isBuffer(chunk.data) ? chunk.data : Buffer.from(chunk.data), chunk.end);
  }

  private onCancel(cancel: wire.Cancel): void {
    const { id, reason } = cancel;
    const err = new Error(`cancelled by the peer: ${reason}`);
    if (this.isPeerId(id)) {
      // The requester gave up: stop its handler and both bodies.
      const entry = this.incoming.get(id);
      if (entry) {
        this.finishIncoming(id, entry);
        entry.ctx.abort(err);
      }
      this.inbound.get(id)?.destroy(err);
      this.outbound.get(id)?.stop(err);
    } else {
      // The responder will read no more of our request body, or broke off its reply body.
      this.outbound.get(id)?.stop(err);
      const stream = this.inbound.get(id);
      if (stream) {
        this.inbound.delete(id);
        stream.destroy(new PipeBrokenError(`the peer broke off the reply: ${reason}`));
      }
    }
  }

  private onGoAway(goaway: wire.GoAway): void {
    this.log.info({ peer: this.peer.name, reason: goaway.reason }, 'the peer is going away');
    this.peerLeaving = true;
    this.emit('goaway', goaway.reason);
  }

  /** Encodes and writes one frame; many frames in one tick go out in one write. */
  private send(frame: FrameInit): void {
    if (this._state === 'closed') throw this.closeError ?? new PipeBrokenError('the pipe is closed');
    const bytes = encodeFrame(frame, this.peerMaxFrameBytes);
    if (this.traceFrames) this.log.debug({ peer: this.peer.name, frame: describeFrame(frame), bytes: bytes.length }, 'frame sent');
    this.corkForThisTick();
    this.socket.write(bytes);
    this.noteUnsent();
    this.stats.increment('frames.sent');
    this.stats.increment('bytes.sent', bytes.length);
  }

  /** Writes a body chunk: its header, then the data as it is (no copy into an encoder). */
  private sendChunk(id: number, data: Buffer, end: boolean): void {
    if (this._state === 'closed') throw this.closeError ?? new PipeBrokenError('the pipe is closed');
    const header = encodeChunkHeader(id, data.length, end, this.peerMaxFrameBytes);
    if (this.traceFrames) this.log.debug({ peer: this.peer.name, frame: { kind: 'chunk', id, data: `${data.length} bytes`, end } }, 'frame sent');
    this.corkForThisTick();
    this.socket.write(header);
    if (data.length > 0) this.socket.write(data);
    this.noteUnsent();
    this.stats.increment('frames.sent');
    this.stats.increment('bytes.sent', header.length + data.length);
  }

  private noteUnsent(): void {
    const unsent = this.socket.writableLength;
    if (unsent > this.peakUnsentBytes) this.peakUnsentBytes = unsent;
  }

  /** Corks the socket until the next tick, so the frames written meanwhile leave in one write. */
  private corkForThisTick(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(() => {
      this.corked = false;
      this.socket.uncork();
    });
  }

  /** `send` for frames whose loss is harmless (the pipe is closing anyway). */
  private trySend(frame: FrameInit): void {
    try {
      this.send(frame);
    } catch (err) {
      this.log.debug({ err, peer: this.peer.name }, 'frame not sent');
    }
  }
}

/** A frame for the debug log: its kind and small fields, bodies as their length. */
function describeFrame(frame: FrameInit): Record<string, unknown> {
  for (const [kind, value] of Object.entries(frame)) {
    if (!value || typeof value !== 'object') continue;
    const out: Record<string, unknown> = { kind };
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (v instanceof Uint8Array) out[k] = `${v.length} bytes`;
      else if (k !== 'headers') out[k] = v;
    }
    return out;
  }
  return { kind: 'unknown' };
}

function destroyBody(stream: AsyncIterable<unknown> | undefined): void {
  if (stream && typeof (stream as Readable).destroy === 'function') (stream as Readable).destroy();
}

/** The JSON body of an error answered by RestPipe itself. */
export function errorBody(err: RestPipeError): Buffer {
  return Buffer.from(JSON.stringify({ error: { code: err.code, message: err.message } }));
}
