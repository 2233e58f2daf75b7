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
import type { Duplex } from 'node:stream';
import { encodeFrame, FrameDecoder, PROTOCOL_VERSION, type Frame, type FrameInit } from '@restpipe/proto';
import type * as wire from '@restpipe/proto';
import type { Logger } from 'pino';
import { DeadlineExceededError, PipeBrokenError, ProtocolError, RestPipeError, ShuttingDownError } from './errors.js';
import { EventCode } from './event-codes.js';
import type { Dispatcher, EventReply } from './dispatcher.js';
import type { EventContext, PeerInfo } from './handler.js';
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
  /** Largest frame accepted from the peer. */
  maxFrameBytes: number;
  /** Ping when nothing was received for this long. */
  heartbeatIntervalMs: number;
  /** Declare the peer dead when nothing was received for this long. */
  heartbeatTimeoutMs: number;
  /** Software name sent in Hello. */
  agent?: string;
}

/** A request to send to the peer. */
export interface OutgoingRequest {
  verb: string;
  noun: string;
  args: string[];
  query: string;
  headers: Array<[name: string, value: string]>;
  mimetype: string;
  body: Buffer;
  /** Fail with `DeadlineExceededError` after this many ms; 0 waits for ever. */
  deadlineMs: number;
  /** Aborting it cancels the request on the peer too. */
  signal?: AbortSignal;
}

export type ReplyResult = EventReply;

interface Pending {
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
  private readonly pending = new Map<number, Pending>();
  private readonly incoming = new Map<number, AbortController>();
  private nextId: number;
  private _state: ExchangeState = 'open';
  private peerHello: wire.Hello | undefined;
  private peerGoingAway = false;
  private closeError: Error | undefined;
  private lastReceivedAt = Date.now();
  private readonly heartbeat: NodeJS.Timeout;
  private pingSeq = 0;
  private pingSentAt = 0;
  private _rttMs: number | undefined;
  private corked = false;
  private peerMaxFrameBytes = Number.MAX_SAFE_INTEGER;

  constructor(private readonly opts: MessageExchangeOptions) {
    super();
    this.socket = opts.socket;
    this.role = opts.role;
    this.peer = opts.peer;
    this.dispatcher = opts.dispatcher;
    this.log = opts.log;
    this.stats = opts.stats;
    this.nextId = this.firstId();
    this.decoder = new FrameDecoder(opts.maxFrameBytes, (frame) => this.onFrame(frame));
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err: Error) => this.close(new PipeBrokenError(`pipe error: ${err.message}`, { cause: err })));
    this.socket.on('close', () => this.close(this.closeError ?? new PipeBrokenError('the pipe closed')));
    this.socket.on('end', () => this.socket.end());
    const tick = Math.max(10, Math.min(opts.heartbeatIntervalMs, opts.heartbeatTimeoutMs) / 2);
    this.heartbeat = setInterval(() => this.checkHeartbeat(), tick);
    this.heartbeat.unref();
    this.send({
      hello: {
        version: PROTOCOL_VERSION,
        capabilities: [],
        agent: opts.agent ?? 'restpipe-node',
        maxFrameBytes: opts.maxFrameBytes,
      },
    });
  }

  get state(): ExchangeState {
    return this._state;
  }

  /** True once the peer's Hello arrived and until the exchange closes or drains. */
  get ready(): boolean {
    return this._state === 'open' && this.peerHello !== undefined && !this.peerGoingAway;
  }

  /** Smoothed round-trip time of the last ping, in ms. */
  get rttMs(): number | undefined {
    return this._rttMs;
  }

  /** The peer's Hello: protocol version, capabilities, software. */
  get peerInfo(): wire.Hello | undefined {
    return this.peerHello;
  }

  /** Requests in flight: sent and awaiting a reply, received and being handled. */
  get inFlight(): { outgoing: number; incoming: number } {
    return { outgoing: this.pending.size, incoming: this.incoming.size };
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
    if (this.peerGoingAway) return Promise.reject(new ShuttingDownError('the peer is shutting down'));
    if (req.signal?.aborted) return Promise.reject(req.signal.reason);
    const id = this.allocateId();
    return new Promise<ReplyResult>((resolve, reject) => {
      const pending: Pending = { resolve, reject, timer: undefined, signal: req.signal, onAbort: undefined };
      if (req.deadlineMs > 0) {
        pending.timer = setTimeout(() => this.abandon(id, 'deadline', new DeadlineExceededError(req.deadlineMs)), req.deadlineMs);
      }
      if (req.signal) {
        const signal = req.signal;
        pending.onAbort = () => this.abandon(id, 'caller gone', signal.reason instanceof Error ? signal.reason : new Error('request aborted'));
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      this.pending.set(id, pending);
      try {
        this.send({
          request: {
            id,
            verb: req.verb,
            noun: req.noun,
            args: req.args,
            query: req.query,
            headers: req.headers.map(([name, value]) => ({ name, value })),
            mimetype: req.mimetype,
            body: req.body,
            deadlineMs: req.deadlineMs,
          },
        });
      } catch (err) {
        this.settle(id);
        reject(err);
        return;
      }
      this.stats.increment('requests.sent');
    });
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
    while (this.state !== 'closed' && (this.pending.size > 0 || this.incoming.size > 0) && Date.now() < deadline) {
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

  /** Closes the stream; everything in flight fails with `err` (a `PipeBrokenError` by default). */
  close(err?: Error): void {
    if (this._state === 'closed') return;
    this._state = 'closed';
    const reason = err ?? new PipeBrokenError('the pipe closed');
    this.closeError = reason;
    clearInterval(this.heartbeat);
    const failure = reason instanceof RestPipeError ? reason : new PipeBrokenError(reason.message, { cause: reason });
    for (const id of [...this.pending.keys()]) {
      this.settle(id)?.reject(failure);
    }
    for (const controller of this.incoming.values()) controller.abort(failure);
    this.incoming.clear();
    this.socket.destroy();
    this.emit('close', err);
  }

  private onData(chunk: Buffer): void {
    this.lastReceivedAt = Date.now();
    this.stats.increment('bytes.received', chunk.length);
    try {
      this.decoder.push(chunk);
    } catch (err) {
      this.log.warn({ err, peer: this.peer.name }, 'closing the pipe: the peer sent a bad frame');
      this.stats.increment('frames.bad');
      this.trySend({ goaway: { reason: `bad frame: ${(err as Error).message}`, code: EventCode.BAD_REQUEST } });
      this.close(new ProtocolError(`bad frame from the peer: ${(err as Error).message}`, { cause: err }));
    }
  }

  private onFrame(frame: Frame): void {
    if (this._state === 'closed') return;
    this.stats.increment('frames.received');
    if (this.peerHello === undefined && frame.kind !== 'hello') {
      throw new ProtocolError(`expected hello, got ${frame.kind}`);
    }
    switch (frame.kind) {
      case 'hello':
        return this.onHello(frame.hello as wire.Hello);
      case 'request':
        return this.onRequest(frame.request as wire.Request);
      case 'reply':
        return this.onReply(frame.reply as wire.Reply);
      case 'cancel':
        return this.onCancel(frame.cancel as wire.Cancel);
      case 'ping':
        this.trySend({ pong: { seq: (frame.ping as wire.Ping).seq } });
        return;
      case 'pong':
        return this.onPong(frame.pong as wire.Pong);
      case 'goaway':
        return this.onGoAway(frame.goaway as wire.GoAway);
      case 'chunk':
      case 'credit':
        // Streamed bodies are not negotiated in Hello yet: a peer must not send these.
        throw new ProtocolError(`unexpected ${frame.kind} frame: streaming was not negotiated`);
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
    this.log.debug({ peer: this.peer.name, agent: hello.agent, version: hello.version }, 'peer said hello');
    this.emit('ready');
  }

  private onRequest(req: wire.Request): void {
    const { id } = req;
    const peerParity = this.role === 'client' ? 0 : 1;
    if (id % 2 !== peerParity) throw new ProtocolError(`request id ${id} has the wrong parity for the peer`);
    if (this.incoming.has(id)) throw new ProtocolError(`request id ${id} is already in flight`);
    this.stats.increment('requests.received');
    if (this._state === 'draining') {
      if (!req.notify) this.sendReply(id, { code: EventCode.SHUTTING_DOWN, mimetype: 'application/json', body: errorBody(new ShuttingDownError()) });
      return;
    }
    const controller = new AbortController();
    this.incoming.set(id, controller);
    let timer: NodeJS.Timeout | undefined;
    if (req.deadlineMs > 0) {
      // The requester gives up at its deadline; stop the handler then too.
      timer = setTimeout(() => controller.abort(new DeadlineExceededError(req.deadlineMs)), req.deadlineMs);
      timer.unref();
    }
    const headers: Record<string, string> = Object.create(null);
    for (const h of req.headers) if (h.name) headers[h.name.toLowerCase()] = h.value ?? '';
    const ctx: EventContext = {
      peer: this.peer,
      verb: req.verb,
      noun: req.noun,
      query: parseQuery(req.query),
      rawQuery: req.query,
      headers,
      signal: controller.signal,
      requestId: id,
    };
    const started = performance.now();
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body);
    void this.dispatcher
      .dispatch({ verb: req.verb, noun: req.noun, args: req.args, mimetype: req.mimetype, body }, ctx)
      .then((reply) => {
        if (timer) clearTimeout(timer);
        if (reply.method) {
          this.stats.increment(`handler.${reply.method}.calls`);
          this.stats.timing(`handler.${reply.method}.time`, performance.now() - started);
        }
        this.stats.increment(`requests.code.${reply.code}`);
        if (this.incoming.get(id) !== controller) return; // cancelled or closed meanwhile
        this.incoming.delete(id);
        if (!req.notify) this.sendReply(id, reply);
      });
  }

  private sendReply(id: number, reply: EventReply): void {
    try {
      this.send({ reply: { id, code: reply.code, mimetype: reply.mimetype, body: reply.body } });
    } catch (err) {
      // The reply is over the peer's frame limit: answer with an error instead.
      const e = new RestPipeError('RP_BODY_TOO_LARGE', EventCode.BODY_TOO_LARGE, (err as Error).message);
      this.trySend({ reply: { id, code: e.eventCode, mimetype: 'application/json', body: errorBody(e) } });
    }
  }

  private onReply(reply: wire.Reply): void {
    const pending = this.settle(reply.id);
    if (!pending) {
      // Normal after a deadline or cancel: the peer answered too late.
      this.log.debug({ peer: this.peer.name, id: reply.id }, 'reply for a request no longer pending');
      this.stats.increment('replies.unmatched');
      return;
    }
    const body = Buffer.isBuffer(reply.body) ? reply.body : Buffer.from(reply.body);
    pending.resolve({ code: reply.code, mimetype: reply.mimetype, body });
  }

  private onCancel(cancel: wire.Cancel): void {
    const controller = this.incoming.get(cancel.id);
    if (!controller) return;
    this.incoming.delete(cancel.id);
    controller.abort(new Error(`cancelled by the peer: ${cancel.reason}`));
  }

  private onPong(pong: wire.Pong): void {
    if (pong.seq !== this.pingSeq || this.pingSentAt === 0) return;
    const rtt = performance.now() - this.pingSentAt;
    this.pingSentAt = 0;
    this._rttMs = this._rttMs === undefined ? rtt : this._rttMs * 0.8 + rtt * 0.2;
    this.stats.timing('heartbeat.rtt', rtt);
  }

  private onGoAway(goaway: wire.GoAway): void {
    this.log.info({ peer: this.peer.name, reason: goaway.reason }, 'the peer is going away');
    this.peerGoingAway = true;
    this.emit('goaway', goaway.reason);
  }

  private checkHeartbeat(): void {
    const silentMs = Date.now() - this.lastReceivedAt;
    if (silentMs >= this.opts.heartbeatTimeoutMs) {
      this.log.warn({ peer: this.peer.name, silentMs }, 'closing the pipe: the peer stopped answering');
      this.stats.increment('heartbeat.timeouts');
      this.close(new PipeBrokenError(`the peer sent nothing for ${silentMs} ms`));
      return;
    }
    if (silentMs >= this.opts.heartbeatIntervalMs && this.pingSentAt === 0) {
      this.pingSeq = (this.pingSeq + 1) >>> 0;
      this.pingSentAt = performance.now();
      this.trySend({ ping: { seq: this.pingSeq } });
    } else if (this.pingSentAt !== 0 && performance.now() - this.pingSentAt >= this.opts.heartbeatIntervalMs) {
      this.pingSentAt = 0; // the pong was lost with an earlier ping; ping again on the next tick
    }
  }

  /** Encodes and writes one frame; many frames in one tick go out in one write. */
  private send(frame: FrameInit): void {
    if (this._state === 'closed') throw this.closeError ?? new PipeBrokenError('the pipe is closed');
    const bytes = encodeFrame(frame, this.peerMaxFrameBytes);
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(bytes);
    this.stats.increment('frames.sent');
    this.stats.increment('bytes.sent', bytes.length);
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

/** Parses a raw query string; a key given twice maps to an array of values. */
export function parseQuery(raw: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null);
  if (!raw) return out;
  for (const [key, value] of new URLSearchParams(raw)) {
    const prev = out[key];
    if (prev === undefined) out[key] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[key] = [prev, value];
  }
  return out;
}

/** The JSON body of an error answered by RestPipe itself. */
export function errorBody(err: RestPipeError): Buffer {
  return Buffer.from(JSON.stringify({ error: { code: err.code, message: err.message } }));
}
