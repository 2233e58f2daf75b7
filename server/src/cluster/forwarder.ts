/**
 * The holding instance's end of a link: requests another instance sends for
 * a client connected here go on to that client's pipe, and its reply comes
 * back as the answer.
 *
 * The request names its client as `args[0]` (the real arguments follow), so
 * the wire format is the pipe's own. Bodies pass through as streams with
 * their credit both ways, never collected (`route()` says every valid noun
 * takes its body as a stream); the deadline goes on as the asker gave it;
 * the asker giving up (its caller gone, its deadline) cancels the request
 * on the client's pipe.
 */
import {
  BadRequestError,
  InvalidNounError,
  PipeBrokenError,
  RestPipeError,
  UnknownClientError,
  errorBody,
  isValidNoun,
  type EventContext,
  type EventReply,
  type EventRouter,
  type IncomingEvent,
  type Logger,
  type Pipe,
  type RouteInfo,
  type Stats,
} from '@restpipe/shared';

export interface ForwardingRouterOptions {
  /** The pipe of the client connected here under `name`, if any. */
  localPipe(name: string): Pipe | undefined;
  log: Logger;
  stats: Stats;
}

const STREAMED: RouteInfo = Object.freeze({ streamed: true });

const EMPTY = Buffer.alloc(0);

export class ForwardingRouter implements EventRouter {
  private readonly localPipe: (name: string) => Pipe | undefined;
  private readonly log: Logger;
  private readonly stats: Stats;

  constructor(opts: ForwardingRouterOptions) {
    this.localPipe = opts.localPipe;
    this.log = opts.log;
    this.stats = opts.stats;
  }

  /** Every valid noun streams its body through; the client's handler decides what it does with it. */
  route(_verb: string, noun: string): RouteInfo | undefined {
    return isValidNoun(noun) ? STREAMED : undefined;
  }

  async dispatch(event: IncomingEvent, ctx: EventContext, route: RouteInfo | undefined): Promise<EventReply> {
    const [name, ...args] = event.args;
    try {
      if (!route) throw new InvalidNounError(event.noun);
      if (name === undefined) throw new BadRequestError('a forwarded request must name its client as the first argument');
      const pipe = this.localPipe(name);
      if (!pipe) {
        this.stats.increment('cluster.forward.unknown_client');
        throw new UnknownClientError(name);
      }
      const forwarded = {
        verb: event.verb,
        noun: event.noun,
        args,
        query: ctx.rawQuery,
        headers: Object.entries(ctx.headers).map(([header, value]) => ({ name: header, value })),
        mimetype: event.mimetype,
        body: event.stream ?? event.body,
        contentLength: event.stream ? (event.contentLength ?? -1) : event.body.length,
      };
      if (event.notify === true) {
        // Handed on in the order it came; the client's handler runs it on its own time.
        this.stats.increment('cluster.forward.notifications');
        await pipe.notify(forwarded);
        return { code: 0, mimetype: '', body: EMPTY };
      }
      this.stats.increment('cluster.forward.requests');
      const result = await pipe.request({
        ...forwarded,
        deadlineMs: event.deadlineMs ?? 0,
        onCancel: (cancel) => {
          const signal = ctx.signal;
          const reason = () => (signal.reason instanceof Error ? signal.reason : new Error('the asking instance gave up'));
          if (signal.aborted) cancel(reason());
          else signal.addEventListener('abort', () => cancel(reason()), { once: true });
        },
      });
      return { code: result.code, mimetype: result.mimetype, body: result.body, stream: result.stream, contentLength: result.contentLength };
    } catch (err) {
      const e = err instanceof RestPipeError ? err : new PipeBrokenError(`forwarding to client "${name}" failed: ${(err as Error).message}`, { cause: err });
      if (!(e instanceof UnknownClientError)) this.log.debug({ client: name, noun: event.noun, err: e.message }, 'forwarded request failed');
      return { code: e.eventCode, mimetype: 'application/json', body: errorBody(e) };
    }
  }
}
