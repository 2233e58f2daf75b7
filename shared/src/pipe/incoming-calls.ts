/**
 * Requests the peer sends: each dispatched to the handler at once (many in
 * flight), notifications one at a time in the order sent, deadlines on the
 * exchange's one sweep (the handler's signal aborts when it passes, and a
 * late answer is replaced by 244), cancellation by the peer, and the
 * in-flight cap. Replies go out whole, or streamed within the peer's credit.
 */
import type { Readable } from 'node:stream';
import type { Request } from '@restpipe/proto';
import type { Logger } from 'pino';
import type { EventReply, EventRouter, RouteInfo } from '../dispatcher.js';
import { BodyTooLargeError, DeadlineExceededError, OverloadedError, PipeBrokenError, RestPipeError, ShuttingDownError } from '../errors.js';
import { EventCode } from '../event-codes.js';
import { HandlerContext } from '../event-context.js';
import type { PeerInfo } from '../handler.js';
import type { Stats } from '../stats.js';
import type { Deadline, DeadlineSweep } from './deadline-sweep.js';
import type { FrameWriter } from './frame-writer.js';
import { destroyBody, type StreamTable } from './stream-table.js';
import { collectBody, type InboundStream } from './streams.js';

/** What the incoming calls need from their exchange. */
export interface IncomingHost {
  writer: FrameWriter;
  streams: StreamTable;
  sweep: DeadlineSweep;
  dispatcher: EventRouter;
  stats: Stats;
  log: Logger;
  peer: PeerInfo;
  now: () => number;
  /** Largest body a handler that takes the body whole accepts. */
  maxBodyBytes: number;
  /** Replies up to this size go inside the reply frame; larger ones stream. */
  chunkBytes: number;
  /** Requests being handled at most; more answer `OverloadedError` at once. */
  maxInFlight: number;
  peerStreams(): boolean;
  /** This side is draining: new requests answer `ShuttingDownError`. */
  draining(): boolean;
  closed(): boolean;
  settled(): void;
}

interface Handling extends Deadline {
  readonly id: number;
  readonly deadlineMs: number;
  readonly ctx: HandlerContext;
  /** The deadline passed while the handler ran: whatever it answers now is late. */
  expired: boolean;
}

/** Metric names built once, not per request. */
const codeNames = new Map<number, string>();
function codeName(code: number): string {
  let name = codeNames.get(code);
  if (name === undefined) {
    name = `requests.code.${code}`;
    if (codeNames.size < 1024) codeNames.set(code, name);
  }
  return name;
}

export class IncomingCalls {
  private readonly handling = new Map<number, Handling>();
  private readonly methodNames = new Map<string, { calls: string; time: string }>();
  private notifications: Promise<void> = Promise.resolve();

  constructor(private readonly host: IncomingHost) {}

  /** Requests being handled here. */
  get size(): number {
    return this.handling.size;
  }

  has(id: number): boolean {
    return this.handling.has(id);
  }

  /** The peer's Request (or notification). */
  onRequest(req: Request): void {
    const host = this.host;
    const { id } = req;
    host.stats.increment('requests.received');
    const bodyStream = req.streaming ? host.streams.openInbound(id) : undefined;
    if (host.draining()) {
      bodyStream?.destroy();
      if (!req.notify) this.sendError(id, new ShuttingDownError());
      return;
    }
    if (this.handling.size >= host.maxInFlight) {
      bodyStream?.destroy();
      host.stats.increment('requests.overloaded');
      if (!req.notify) this.sendError(id, new OverloadedError(host.maxInFlight));
      else host.log.warn({ peer: host.peer.name, verb: req.verb, noun: req.noun }, 'a notification was dropped: too many requests in flight');
      return;
    }
    const ctx = new HandlerContext(host.peer, req);
    const entry: Handling = {
      id,
      deadlineMs: req.deadlineMs,
      deadlineAt: req.deadlineMs > 0 ? host.now() + req.deadlineMs : Number.POSITIVE_INFINITY,
      ctx,
      expired: false,
      // The requester gives up at its deadline; stop the handler then too.
      expire: () => {
        entry.expired = true;
        ctx.abort(new DeadlineExceededError(req.deadlineMs));
      },
    };
    this.handling.set(id, entry);
    host.sweep.add(entry);
    if (req.notify) {
      // Notifications reach the handler one at a time, in the order sent.
      this.notifications = this.notifications.then(() => this.handle(req, entry, bodyStream));
    } else {
      void this.handle(req, entry, bodyStream);
    }
  }

  /** A chunk of the request body under `id` arrived: the handler's deadline, like the requester's, counts from now. */
  progressed(id: number): void {
    const entry = this.handling.get(id);
    if (entry && entry.deadlineMs > 0) this.host.sweep.postpone(entry, this.host.now() + entry.deadlineMs);
  }

  /** The requester gave up: stop its handler and both bodies. */
  onCancel(id: number, reason: string): void {
    const err = new Error(`cancelled by the peer: ${reason}`);
    const entry = this.handling.get(id);
    if (entry) {
      this.finish(entry);
      entry.ctx.abort(err);
    }
    this.host.streams.destroyInbound(id, err);
    this.host.streams.stopOutbound(id, err);
  }

  /** The exchange closed: every handler's signal aborts with `err`; their answers go nowhere. */
  failAll(err: Error): void {
    const failure = err instanceof RestPipeError ? err : new PipeBrokenError(err.message, { cause: err });
    const entries = [...this.handling.values()];
    this.handling.clear();
    for (const entry of entries) {
      this.host.sweep.remove(entry);
      entry.ctx.abort(failure);
    }
  }

  /** Runs the handler for one request and sends its reply; never rejects. */
  private async handle(req: Request, entry: Handling, bodyStream: InboundStream | undefined): Promise<void> {
    const host = this.host;
    const { id } = req;
    const started = performance.now();
    let reply: EventReply;
    let route: RouteInfo | undefined;
    try {
      let body = Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body);
      let stream: Readable | undefined;
      // The handler is resolved once for the request (and remembered for the next).
      route = host.dispatcher.route(req.verb, req.noun);
      if (bodyStream && route?.streamed) {
        stream = bodyStream;
      } else if (bodyStream) {
        body = await collectBody(
          bodyStream,
          host.maxBodyBytes,
          (n) => new BodyTooLargeError(`request body of ${n}+ bytes is over RP_MAX_BODY_BYTES (${host.maxBodyBytes})`),
        );
      } else if (body.length > host.maxBodyBytes) {
        throw new BodyTooLargeError(`request body of ${body.length} bytes is over RP_MAX_BODY_BYTES (${host.maxBodyBytes})`);
      }
      reply = await host.dispatcher.dispatch(
        {
          verb: req.verb,
          noun: req.noun,
          args: req.args,
          mimetype: req.mimetype,
          body,
          stream,
          deadlineMs: req.deadlineMs,
          notify: req.notify,
          contentLength: Number(req.contentLength ?? -1),
        },
        entry.ctx,
        route,
      );
    } catch (err) {
      const e = err instanceof RestPipeError ? err : new PipeBrokenError(`request body broke: ${(err as Error).message}`, { cause: err });
      reply = { code: e.eventCode, mimetype: 'application/json', body: errorBody(e) };
    }
    if (reply.method) {
      const names = this.namesOf(reply.method);
      host.stats.increment(names.calls);
      host.stats.timing(names.time, performance.now() - started);
    }
    if (entry.expired && !req.notify) {
      // Past its deadline the requester answers 504 whatever the handler says: so does this side.
      destroyBody(reply.stream);
      host.stats.increment('replies.late');
      reply = { code: EventCode.DEADLINE_EXCEEDED, mimetype: 'application/json', body: errorBody(new DeadlineExceededError(req.deadlineMs)) };
    }
    host.stats.increment(codeName(reply.code));
    if (this.handling.get(id) !== entry) {
      // Cancelled or closed meanwhile: nobody waits for this reply.
      destroyBody(reply.stream);
      return;
    }
    if (req.notify) {
      this.finish(entry);
      destroyBody(reply.stream);
      if (reply.code !== EventCode.OK) {
        host.stats.increment('notifications.failed');
        host.log.warn(
          { peer: host.peer.name, verb: req.verb, noun: req.noun, code: reply.code, body: reply.body.toString('utf8', 0, 500) },
          'a notification failed',
        );
      }
      return;
    }
    const streamed = reply.stream !== undefined || reply.body.length > host.chunkBytes;
    if (!streamed || !host.peerStreams()) {
      this.finish(entry);
      this.sendReply(id, reply);
      destroyBody(reply.stream);
      // The handler is done with the request body: the peer may stop sending it.
      if (bodyStream && !bodyStream.readableEnded) bodyStream.destroy();
      return;
    }
    try {
      host.writer.send({
        reply: {
          id,
          code: reply.code,
          mimetype: reply.mimetype,
          streaming: true,
          contentLength: reply.stream ? (reply.contentLength ?? -1) : reply.body.length,
        },
      });
      // The deadline covered the wait for the reply; a long download is not late.
      host.sweep.remove(entry);
      await host.streams.startOutbound(id, reply.stream ?? reply.body, true);
    } catch (err) {
      host.log.debug({ err, peer: host.peer.name, id }, 'streamed reply stopped');
      destroyBody(reply.stream);
      // A handler stream that failed midway: the requester sees the body end early.
      if (!host.streams.hasOutbound(id) && !host.closed() && this.handling.get(id) === entry) {
        host.writer.trySend({ cancel: { id, reason: `reply stream failed: ${(err as Error).message}` } });
      }
    } finally {
      this.finish(entry);
      // The reply may have been the request body itself (an echo): only now is it unused.
      if (bodyStream && !bodyStream.readableEnded) bodyStream.destroy();
    }
  }

  private namesOf(method: string): { calls: string; time: string } {
    let names = this.methodNames.get(method);
    if (!names) {
      names = { calls: `handler.${method}.calls`, time: `handler.${method}.time` };
      this.methodNames.set(method, names);
    }
    return names;
  }

  private finish(entry: Handling): void {
    this.host.sweep.remove(entry);
    if (this.handling.get(entry.id) === entry) {
      this.handling.delete(entry.id);
      this.host.settled();
    }
  }

  private sendError(id: number, err: RestPipeError): void {
    this.host.writer.trySend({ reply: { id, code: err.eventCode, mimetype: 'application/json', body: errorBody(err) } });
  }

  private sendReply(id: number, reply: EventReply): void {
    try {
      this.host.writer.send({ reply: { id, code: reply.code, mimetype: reply.mimetype, body: reply.body } });
    } catch (err) {
      // The reply is over the peer's frame limit: answer with an error instead.
      this.sendError(id, new BodyTooLargeError((err as Error).message, { cause: err }));
    }
  }
}

/** The JSON body of an error answered by RestPipe itself. */
export function errorBody(err: RestPipeError): Buffer {
  return Buffer.from(JSON.stringify({ error: { code: err.code, message: err.message } }));
}
