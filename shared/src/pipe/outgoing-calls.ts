/**
 * Requests this side sends: the wire request built once, replies matched by
 * id, deadlines on the exchange's one sweep (moved on while a request body
 * is still flowing), cancellation when the caller goes away, the in-flight
 * cap, and every call failed at once when the exchange closes.
 */
import type { Readable } from 'node:stream';
import type { FrameInit, Reply } from '@restpipe/proto';
import type { Logger } from 'pino';
import { DeadlineExceededError, OverloadedError, PipeBrokenError, ProtocolError, RestPipeError } from '../errors.js';
import type { Stats } from '../stats.js';
import type { Deadline, DeadlineSweep } from './deadline-sweep.js';
import type { FrameWriter } from './frame-writer.js';
import type { RequestIds } from './request-ids.js';
import type { StreamTable } from './stream-table.js';

/** A request header as it travels: built once by the gateway. */
export interface EventHeader {
  name: string;
  value: string;
}

/** A request to send to the peer. */
export interface OutgoingRequest {
  verb: string;
  noun: string;
  args: string[];
  query: string;
  headers: EventHeader[];
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

/** What the outgoing calls need from their exchange. */
export interface OutgoingHost {
  writer: FrameWriter;
  ids: RequestIds;
  sweep: DeadlineSweep;
  streams: StreamTable;
  stats: Stats;
  log: Logger;
  peerName: string;
  now: () => number;
  /** Bodies up to this size go inside the request frame; larger ones stream. */
  chunkBytes: number;
  /** Requests in flight at most; more answer `OverloadedError` at once. */
  maxInFlight: number;
  /** True once the peer's Hello said it takes streamed bodies. */
  peerStreams(): boolean;
  /** True once the exchange closed (no Cancel is sent then). */
  closed(): boolean;
  /** A call settled (for the exchange's idle check). */
  settled(): void;
}

interface Call extends Deadline {
  readonly id: number;
  readonly deadlineMs: number;
  resolve(reply: ReplyResult): void;
  reject(err: Error): void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

const EMPTY = Buffer.alloc(0);

/** The wire form of a request or notification: built in one place. */
export function wireRequest(id: number, req: OutgoingNotification, streamed: boolean, deadlineMs: number, notify: boolean): NonNullable<FrameInit['request']> {
  return {
    id,
    verb: req.verb,
    noun: req.noun,
    args: req.args,
    query: req.query,
    headers: req.headers,
    mimetype: req.mimetype,
    body: streamed ? undefined : (req.body as Buffer),
    deadlineMs,
    streaming: streamed,
    notify,
    contentLength: Buffer.isBuffer(req.body) ? req.body.length : (req.contentLength ?? -1),
  };
}

export class OutgoingCalls {
  private readonly calls = new Map<number, Call>();
  private readonly inUse = (id: number): boolean => this.calls.has(id) || this.host.streams.hasInbound(id) || this.host.streams.hasOutbound(id);

  constructor(private readonly host: OutgoingHost) {}

  /** Requests sent and awaiting their reply. */
  get size(): number {
    return this.calls.size;
  }

  /** Sends a request; resolves with the peer's reply. */
  request(req: OutgoingRequest): Promise<ReplyResult> {
    const host = this.host;
    if (req.signal?.aborted) return Promise.reject(req.signal.reason);
    if (this.calls.size >= host.maxInFlight) {
      host.stats.increment('requests.overloaded');
      return Promise.reject(new OverloadedError(host.maxInFlight));
    }
    const id = host.ids.allocate(this.inUse);
    return new Promise<ReplyResult>((resolve, reject) => {
      const call: Call = {
        id,
        deadlineMs: req.deadlineMs,
        deadlineAt: req.deadlineMs > 0 ? host.now() + req.deadlineMs : Number.POSITIVE_INFINITY,
        expire: () => this.abandon(id, 'deadline', new DeadlineExceededError(req.deadlineMs)),
        resolve,
        reject,
        signal: req.signal,
        onAbort: undefined,
      };
      this.calls.set(id, call);
      host.sweep.add(call);
      if (req.signal) {
        const signal = req.signal;
        call.onAbort = () => this.abandon(id, 'caller gone', signal.reason instanceof Error ? signal.reason : new Error('request aborted'));
        signal.addEventListener('abort', call.onAbort, { once: true });
      }
      req.onCancel?.((reason) => this.abandon(id, 'caller gone', reason));
      let streamed: boolean;
      try {
        streamed = this.mustStream(req.body);
        host.writer.send({ request: wireRequest(id, req, streamed, req.deadlineMs, false) });
      } catch (err) {
        this.settle(id);
        reject(err);
        return;
      }
      host.stats.increment('requests.sent');
      if (streamed) {
        host.streams.startOutbound(id, req.body, false).catch((err: unknown) => {
          // The body's source failed (e.g. the HTTP upload broke): give up on the request.
          if (this.calls.has(id)) this.abandon(id, 'request body failed', err instanceof Error ? err : new Error(String(err)));
        });
      }
    });
  }

  /** Sends a notification; resolves once it is written (and its body sent), not when handled. */
  notify(event: OutgoingNotification): Promise<void> {
    const host = this.host;
    const id = host.ids.allocate(this.inUse);
    const streamed = this.mustStream(event.body);
    host.writer.send({ request: wireRequest(id, event, streamed, 0, true) });
    host.stats.increment('notifications.sent');
    return streamed ? host.streams.startOutbound(id, event.body, false) : Promise.resolve();
  }

  /** A chunk of the request body under `id` went out: its deadline counts from now. */
  progressed(id: number): void {
    const call = this.calls.get(id);
    if (call && call.deadlineMs > 0) this.host.sweep.postpone(call, this.host.now() + call.deadlineMs);
  }

  /** The peer's Reply. */
  onReply(reply: Reply): void {
    const host = this.host;
    const call = this.calls.get(reply.id);
    if (!call) {
      // Normal after a deadline or cancel: the peer answered too late.
      host.log.debug({ peer: host.peerName, id: reply.id }, 'reply for a request no longer pending');
      host.stats.increment('replies.unmatched');
      return;
    }
    if (host.now() >= call.deadlineAt) {
      // The deadline passed before this reply was read (a busy event loop ran the sweep late): it is a 504.
      host.stats.increment('replies.late');
      this.abandon(reply.id, 'deadline', new DeadlineExceededError(call.deadlineMs));
      return;
    }
    this.settle(reply.id);
    const body = reply.body.length === 0 ? EMPTY : Buffer.isBuffer(reply.body) ? reply.body : Buffer.from(reply.body);
    const stream = reply.streaming ? host.streams.openInbound(reply.id) : undefined;
    call.resolve({ code: reply.code, mimetype: reply.mimetype, body, stream, contentLength: Number(reply.contentLength) });
  }

  /** The peer's Cancel for one of our requests: it reads no more of our body, or broke off its reply. */
  onCancel(id: number, reason: string): void {
    this.host.streams.stopOutbound(id, new Error(`cancelled by the peer: ${reason}`));
    this.host.streams.destroyInbound(id, new PipeBrokenError(`the peer broke off the reply: ${reason}`));
  }

  /** The exchange closed: every call fails with `err`. */
  failAll(err: Error): void {
    const failure = err instanceof RestPipeError ? err : new PipeBrokenError(err.message, { cause: err });
    for (const id of [...this.calls.keys()]) this.settle(id)?.reject(failure);
  }

  /** True when a body goes in chunks: any stream, or bytes over one chunk. */
  private mustStream(body: Buffer | AsyncIterable<unknown>): boolean {
    const streamed = !Buffer.isBuffer(body) || body.length > this.host.chunkBytes;
    if (streamed && !this.host.peerStreams()) throw new ProtocolError('the peer cannot receive streamed bodies');
    return streamed;
  }

  /** Removes a call, its deadline and its listener; returns it. */
  private settle(id: number): Call | undefined {
    const call = this.calls.get(id);
    if (!call) return undefined;
    this.calls.delete(id);
    this.host.sweep.remove(call);
    if (call.onAbort) call.signal?.removeEventListener('abort', call.onAbort);
    this.host.settled();
    return call;
  }

  /** Gives up on a request: tells the peer to stop and fails it locally. */
  private abandon(id: number, reason: string, err: Error): void {
    const call = this.settle(id);
    if (!call) return;
    const host = this.host;
    host.streams.stopOutbound(id, err);
    if (!host.closed()) host.writer.trySend({ cancel: { id, reason } });
    if (err instanceof DeadlineExceededError) host.stats.increment('requests.deadline_exceeded');
    call.reject(err);
  }
}
