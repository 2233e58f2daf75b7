/**
 * The links of this instance to the other instances of the cluster: one
 * `MessageExchange` each, over a `LinkStream` on NATS, the same exchange as
 * a client's TLS pipe (framing, frame limits, credit, deadlines, cancel,
 * in-flight cap, heartbeat).
 *
 * Opening: this instance (B, role `client`) asks `<ns>.inst.<A>.link` with
 * `{"from": B, "link": L}` (L: 16 random hex digits); A makes its end (role
 * `server`, dispatching to the forwarding router) and answers `{"ok": true}`;
 * then both exchanges say hello on `<ns>.link.<A>.<L>` (B → A) and
 * `<ns>.link.<B>.<L>` (A → B). No subscriber on A's subject: NATS answers
 * "no responders" at once and the open fails fast with `InstanceGoneError`.
 * One link per instance is opened on demand and shared by every request.
 *
 * A link dies with its stream (a sequence gap, a bad frame, the peer's end),
 * its heartbeat (1 s / 3 s), the NATS connection going down (messages may be
 * lost then: every link is destroyed), or `dropInstance` (the directory saw
 * the instance go); whatever was in flight on it fails.
 */
import { randomBytes } from 'node:crypto';
import { NoRespondersError, TimeoutError, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  InstanceGoneError,
  MessageExchange,
  ShuttingDownError,
  type EventRouter,
  type InFlight,
  type Logger,
  type PipeLimits,
  type Stats,
} from '@restpipe/shared';
import { LinkMessageError, LinkSequenceError, LinkStream, SEQUENCE_BYTES } from './link-stream.js';
import type { NatsLink } from './nats-connection.js';
import { Subjects } from './subjects.js';

/** Heartbeat of a link: a killed instance's links die within the timeout. */
export const LINK_HEARTBEAT_INTERVAL_MS = 1000;
export const LINK_HEARTBEAT_TIMEOUT_MS = 3000;
/** Most bytes of data in one NATS message of a link (less when the server's `max_payload` is smaller). */
export const LINK_MESSAGE_MAX_BYTES = 512 * 1024;
/** Names and link ids in an open request are at most this long. */
const MAX_NAME_LENGTH = 256;
const LINK_ID = /^[0-9a-f]{16}$/;

export interface LinkTableOptions {
  nats: NatsLink;
  namespace: string;
  instance: string;
  log: Logger;
  stats: Stats;
  /** The node's pipe limits (frame size, stream window, buffer, in-flight cap); the heartbeat is the link's own. */
  limits: PipeLimits;
  /** Answers the requests that arrive on links (the forwarding router). */
  router: EventRouter;
  /** @default LINK_HEARTBEAT_INTERVAL_MS */
  heartbeatIntervalMs?: number;
  /** @default LINK_HEARTBEAT_TIMEOUT_MS */
  heartbeatTimeoutMs?: number;
}

export type LinkDirection = 'out' | 'in';

export interface LinkStatus {
  /** The instance at the other end. */
  instance: string;
  /** The link id. */
  link: string;
  /** `out`: opened here (requests go out); `in`: opened by the other instance. */
  direction: LinkDirection;
  /** The exchange's state, or `opening` until the other end answered. */
  state: string;
  inFlight: InFlight;
  /**
   * Memory peaks: the most one inbound stream held unread, the most bytes
   * written but not yet published, and the most published but not yet
   * confirmed by the NATS server (see LinkStream).
   */
  memory: { peakStreamHeldBytes: number; peakUnsentBytes: number; peakUnconfirmedBytes: number };
}

interface Link {
  readonly id: string;
  readonly instance: string;
  readonly direction: LinkDirection;
  readonly stream: LinkStream;
  exchange: MessageExchange | undefined;
}

interface Opening {
  readonly promise: Promise<MessageExchange>;
  link: Link | undefined;
  done: boolean;
  succeed(exchange: MessageExchange): void;
  fail(err: Error): void;
}

const NOTHING_IN_FLIGHT: InFlight = Object.freeze({ outgoing: 0, incoming: 0, streams: 0 });

/** The exchange's counters a link reports, under `cluster.link.`; the rest would count link traffic as client traffic. */
const LINK_METRICS = new Map<string, string>([
  ['bytes.sent', 'cluster.link.bytes.sent'],
  ['bytes.received', 'cluster.link.bytes.received'],
  ['frames.bad', 'cluster.link.frames.bad'],
  ['heartbeat.rtt', 'cluster.link.heartbeat.rtt'],
  ['heartbeat.timeouts', 'cluster.link.heartbeat.timeouts'],
  ['requests.sent', 'cluster.link.requests.sent'],
  ['requests.received', 'cluster.link.requests.received'],
  ['requests.deadline_exceeded', 'cluster.link.requests.deadline_exceeded'],
  ['requests.overloaded', 'cluster.link.requests.overloaded'],
]);

/** A stats sink for link exchanges: the names in LINK_METRICS, prefixed `cluster.link.`; others dropped. */
function linkStats(stats: Stats): Stats {
  const names = LINK_METRICS;
  return {
    increment(name, value) {
      const n = names.get(name);
      if (n) stats.increment(n, value);
    },
    gauge(name, value) {
      const n = names.get(name);
      if (n) stats.gauge(n, value);
    },
    timing(name, ms) {
      const n = names.get(name);
      if (n) stats.timing(n, ms);
    },
    close: async () => {},
  };
}

export class LinkTable {
  private readonly nats: NatsLink;
  private readonly subjects: Subjects;
  private readonly instance: string;
  private readonly log: Logger;
  private readonly stats: Stats;
  private readonly exchangeStats: Stats;
  private readonly limits: PipeLimits;
  private readonly router: EventRouter;
  private readonly heartbeatTimeoutMs: number;
  /** Every link, by id. */
  private readonly links = new Map<string, Link>();
  /** The link this instance uses for requests to each instance. */
  private readonly current = new Map<string, Link>();
  private readonly opening = new Map<string, Opening>();
  private subscribedOn: NatsConnection | undefined;
  /** The server confirmed the subscriptions on the current connection. */
  private confirmed = false;
  private listeners: Array<() => void> = [];
  private subscriptions: Subscription[] = [];
  private started = false;
  private closing = false;
  private readonly onUp = (nc: NatsConnection): void => this.subscribe(nc);
  private readonly onDown = (reason: string): void => this.natsDown(reason);

  constructor(opts: LinkTableOptions) {
    this.nats = opts.nats;
    this.subjects = new Subjects(opts.namespace);
    this.instance = opts.instance;
    this.log = opts.log;
    this.stats = opts.stats;
    this.exchangeStats = linkStats(opts.stats);
    this.router = opts.router;
    this.heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? LINK_HEARTBEAT_TIMEOUT_MS;
    this.limits = {
      ...opts.limits,
      heartbeatIntervalMs: opts.heartbeatIntervalMs ?? LINK_HEARTBEAT_INTERVAL_MS,
      heartbeatTimeoutMs: this.heartbeatTimeoutMs,
    };
  }

  /** Takes link requests and link bytes whenever NATS is up (subscribing again on a new connection). */
  start(): void {
    if (this.started || this.closing) return;
    this.started = true;
    this.nats.on('up', this.onUp);
    this.nats.on('down', this.onDown);
    const nc = this.nats.connection;
    if (nc) this.subscribe(nc);
  }

  /**
   * A ready link exchange to `instance`, opened once and reused (callers at
   * the same time share one open). Rejects with `InstanceGoneError` when the
   * instance does not answer (no responders: at once) or NATS is down, and
   * `ShuttingDownError` once this table closes.
   */
  pipeTo(instance: string): Promise<MessageExchange> {
    if (this.closing) return Promise.reject(new ShuttingDownError('this instance is shutting down'));
    if (instance === this.instance) return Promise.reject(new Error(`instance "${instance}" is this instance: no link to itself`));
    const link = this.current.get(instance);
    if (link?.exchange?.ready) return Promise.resolve(link.exchange);
    // Going away (the peer's GoAway) or gone: its requests finish on it, new ones take a new link.
    if (link) this.current.delete(instance);
    const pending = this.opening.get(instance);
    if (pending) return pending.promise;
    return this.open(instance);
  }

  /** The directory says `instance` is gone: its links close, what is in flight on them fails with `InstanceGoneError`. */
  dropInstance(instance: string, reason: string): void {
    const err = new InstanceGoneError(`instance "${instance}" is gone: ${reason}`);
    this.opening.get(instance)?.fail(err);
    for (const link of [...this.links.values()]) if (link.instance === instance) this.destroy(link, err);
  }

  status(): LinkStatus[] {
    return [...this.links.values()].map((link) => ({
      instance: link.instance,
      link: link.id,
      direction: link.direction,
      state: link.exchange?.state ?? 'opening',
      inFlight: link.exchange?.inFlight ?? { ...NOTHING_IN_FLIGHT },
      memory: {
        peakStreamHeldBytes: link.exchange?.memory.peakStreamHeldBytes ?? 0,
        peakUnsentBytes: link.exchange?.memory.peakUnsentBytes ?? 0,
        peakUnconfirmedBytes: link.stream.peakUnconfirmedBytes,
      },
    }));
  }

  /**
   * Drains every link (GoAway: the others send nothing new here; what is in
   * flight gets `graceMs` to finish), then closes them and stops listening.
   */
  async close(graceMs = 1000): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.nats.off('up', this.onUp);
    this.nats.off('down', this.onDown);
    const stopping = new ShuttingDownError('this instance is shutting down');
    for (const opening of [...this.opening.values()]) opening.fail(stopping);
    await Promise.all(
      [...this.links.values()].map(async (link) => {
        if (link.exchange) await link.exchange.drain('the instance is shutting down', graceMs);
        link.stream.destroy();
      }),
    );
    for (const link of [...this.links.values()]) this.destroy(link, stopping);
    const nc = this.subscribedOn;
    this.unsubscribe();
    this.wakeListeners();
    // Once the server has the unsubscription, others asking for a link here hear "no responders" at once.
    if (nc && nc === this.nats.connection) await nc.flush().catch(() => undefined);
  }

  /**
   * Resolves once this table's subscriptions are in place at the NATS
   * server: a flush after subscribing (or after nats.js resubscribed on a
   * reconnect) came back. Until then another instance asking for a link may
   * hear "no responders". Resolves at once after `close()`.
   */
  listening(): Promise<void> {
    if (this.confirmed || this.closing) return Promise.resolve();
    return new Promise<void>((resolve) => this.listeners.push(resolve));
  }

  private subscribe(nc: NatsConnection): void {
    if (this.closing) return;
    if (nc !== this.subscribedOn) this.subscribeOn(nc);
    // A new subscription, or nats.js sent them again after a reconnect: confirm they arrived.
    this.confirmed = false;
    nc.flush().then(
      () => {
        if (nc !== this.subscribedOn || !this.nats.isUp) return;
        this.confirmed = true;
        this.wakeListeners();
      },
      () => undefined,
    );
  }

  private wakeListeners(): void {
    const listeners = this.listeners;
    this.listeners = [];
    for (const wake of listeners) wake();
  }

  private subscribeOn(nc: NatsConnection): void {
    // Subscriptions of an earlier connection died with it.
    this.unsubscribe();
    this.subscribedOn = nc;
    this.subscriptions = [
      nc.subscribe(this.subjects.linkOpen(this.instance), {
        callback: (err, msg) => {
          if (err) this.log.warn({ err }, 'link request subscription failed');
          else this.onOpenRequest(nc, msg);
        },
      }),
      nc.subscribe(this.subjects.linkDataAll(this.instance), {
        callback: (err, msg) => {
          if (err) this.log.warn({ err }, 'link data subscription failed');
          else this.onData(msg);
        },
      }),
    ];
  }

  private unsubscribe(): void {
    for (const sub of this.subscriptions) {
      try {
        sub.unsubscribe();
      } catch {
        // The connection is closed: the subscription went with it.
      }
    }
    this.subscriptions = [];
    this.subscribedOn = undefined;
  }

  /** NATS dropped: messages may have been lost, so no link can be trusted. */
  private natsDown(reason: string): void {
    this.confirmed = false;
    const err = (instance: string) => new InstanceGoneError(`the link to instance "${instance}" broke: the NATS connection went down (${reason})`);
    for (const [instance, opening] of [...this.opening]) opening.fail(err(instance));
    for (const link of [...this.links.values()]) this.destroy(link, err(link.instance));
  }

  private open(instance: string): Promise<MessageExchange> {
    let resolve!: (exchange: MessageExchange) => void;
    let reject!: (err: Error) => void;
    const promise = new Promise<MessageExchange>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const opening: Opening = {
      promise,
      link: undefined,
      done: false,
      succeed: (exchange) => {
        if (opening.done) return;
        opening.done = true;
        if (this.opening.get(instance) === opening) this.opening.delete(instance);
        resolve(exchange);
      },
      fail: (err) => {
        if (opening.done) return;
        opening.done = true;
        if (this.opening.get(instance) === opening) this.opening.delete(instance);
        if (opening.link) this.destroy(opening.link, err);
        this.stats.increment('cluster.links.open_failed');
        reject(err);
      },
    };
    this.opening.set(instance, opening);
    this.runOpen(instance, opening).then(
      (exchange) => opening.succeed(exchange),
      (err: unknown) => opening.fail(err instanceof Error ? err : new Error(String(err))),
    );
    return promise;
  }

  private async runOpen(instance: string, opening: Opening): Promise<MessageExchange> {
    const nc = this.nats.connection;
    if (!nc) throw new InstanceGoneError(`cannot reach instance "${instance}": the NATS connection is down`);
    const id = randomBytes(8).toString('hex');
    // Registered before asking: the other end's hello may arrive before its answer.
    const link = this.createLink(id, instance, 'out', nc);
    opening.link = link;
    const subject = this.subjects.linkOpen(instance);
    let answer: Msg;
    try {
      answer = await nc.request(subject, JSON.stringify({ from: this.instance, link: id }), { timeout: this.heartbeatTimeoutMs });
    } catch (err) {
      if (err instanceof NoRespondersError || (err instanceof Error && err.cause instanceof NoRespondersError)) {
        throw new InstanceGoneError(`instance "${instance}" is not in the cluster (no responders on ${subject})`, { cause: err });
      }
      if (err instanceof TimeoutError) {
        throw new InstanceGoneError(`instance "${instance}" did not answer the link request within ${this.heartbeatTimeoutMs} ms`, { cause: err });
      }
      throw new InstanceGoneError(`cannot open a link to instance "${instance}": ${(err as Error).message}`, { cause: err });
    }
    if (opening.done) throw new InstanceGoneError(`the link to instance "${instance}" was given up`);
    const refusal = refusalOf(answer);
    if (refusal !== undefined) throw new InstanceGoneError(`instance "${instance}" refused the link: ${refusal}`);
    const exchange = this.createExchange(link, 'client');
    await this.whenReady(exchange, instance);
    if (opening.done || this.closing) throw new InstanceGoneError(`the link to instance "${instance}" was given up`);
    this.current.set(instance, link);
    this.stats.increment('cluster.links.opened');
    this.log.debug({ instance, link: id }, 'link opened');
    return exchange;
  }

  /** Resolves once the other end's hello arrived; rejects when the link closes or stays silent past the heartbeat timeout. */
  private whenReady(exchange: MessageExchange, instance: string): Promise<void> {
    if (exchange.ready) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        exchange.off('ready', onReady);
        exchange.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onReady = () => done();
      const onClose = (err: Error | undefined) =>
        done(err instanceof InstanceGoneError ? err : new InstanceGoneError(`the link to instance "${instance}" closed before it was ready`, { cause: err }));
      const timer = setTimeout(() => {
        const err = new InstanceGoneError(`instance "${instance}" did not say hello on the link within ${this.heartbeatTimeoutMs} ms`);
        done(err);
        exchange.close(err);
      }, this.heartbeatTimeoutMs);
      exchange.once('ready', onReady);
      exchange.once('close', onClose);
    });
  }

  /** Another instance asks for a link. */
  private onOpenRequest(nc: NatsConnection, msg: Msg): void {
    const request = parseOpenRequest(msg);
    const refusal = typeof request === 'string' ? request : this.refusal(request);
    if (refusal !== undefined || typeof request === 'string') {
      this.stats.increment('cluster.links.refused');
      this.log.debug({ why: refusal }, 'link request refused');
      respond(msg, { ok: false, error: refusal });
      return;
    }
    const link = this.createLink(request.link, request.from, 'in', nc);
    this.createExchange(link, 'server');
    this.stats.increment('cluster.links.accepted');
    this.log.debug({ instance: request.from, link: request.link }, 'link accepted');
    respond(msg, { ok: true });
  }

  /** Why a well-formed link request is refused here, or undefined when it is not. */
  private refusal(request: OpenRequest): string | undefined {
    if (this.closing) return 'the instance is shutting down';
    if (request.from === this.instance) return 'a link to itself';
    if (this.links.has(request.link)) return `link ${request.link} is in use`;
    return undefined;
  }

  /** Bytes for one of this instance's links. */
  private onData(msg: Msg): void {
    const subject = msg.subject;
    const id = subject.slice(subject.lastIndexOf('.') + 1);
    const link = this.links.get(id);
    if (!link) {
      // Late bytes of a link closed here (normal: the peer's end marker after this side destroyed it), or of one that never was.
      this.stats.increment('cluster.links.late_messages');
      return;
    }
    link.stream.receive(msg.data);
  }

  private createLink(id: string, instance: string, direction: LinkDirection, nc: NatsConnection): Link {
    const subject = this.subjects.linkData(instance, id);
    const stream = new LinkStream({
      transport: {
        publish: (payload) => nc.publish(subject, payload),
        flush: () => nc.flush(),
      },
      maxMessageBytes: Math.max(1, Math.min(this.nats.maxPayload() - SEQUENCE_BYTES, LINK_MESSAGE_MAX_BYTES)),
      unconfirmedBytes: this.limits.streamConnectionBufferBytes,
    });
    const link: Link = { id, instance, direction, stream, exchange: undefined };
    this.links.set(id, link);
    stream.on('error', (err) => {
      if (err instanceof LinkSequenceError) {
        this.stats.increment('cluster.links.sequence_gaps');
        this.log.warn({ instance, link: id, err: err.message }, 'link closed: its messages arrived out of sequence (NATS dropped some)');
      } else if (err instanceof LinkMessageError) {
        this.stats.increment('cluster.links.bad_messages');
        this.log.warn({ instance, link: id, err: err.message }, 'link closed: a malformed message');
      }
    });
    stream.on('close', () => this.forget(link));
    return link;
  }

  private createExchange(link: Link, role: 'client' | 'server'): MessageExchange {
    const exchange = new MessageExchange({
      socket: link.stream,
      role,
      peer: { name: link.instance, address: 'nats' },
      dispatcher: this.router,
      log: this.log,
      stats: this.exchangeStats,
      limits: this.limits,
      agent: 'restpipe-server-link',
    });
    link.exchange = exchange;
    exchange.on('close', (err) => {
      // No new requests on it; it stays in `links` until its stream closed (the peer's end may still arrive).
      if (this.current.get(link.instance) === link) this.current.delete(link.instance);
      this.stats.increment('cluster.links.closed');
      this.log.debug({ instance: link.instance, link: link.id, direction: link.direction, reason: err?.message }, 'link closed');
    });
    return exchange;
  }

  private destroy(link: Link, err: Error): void {
    this.forget(link);
    if (link.exchange) link.exchange.close(err);
    link.stream.destroy();
  }

  private forget(link: Link): void {
    if (this.links.get(link.id) === link) this.links.delete(link.id);
    if (this.current.get(link.instance) === link) this.current.delete(link.instance);
  }
}

interface OpenRequest {
  from: string;
  link: string;
}

/** A link request's fields, or why it is malformed. */
function parseOpenRequest(msg: Msg): OpenRequest | string {
  let request: unknown;
  try {
    request = JSON.parse(msg.string());
  } catch {
    return 'the request is not JSON';
  }
  const { from, link } = (request ?? {}) as { from?: unknown; link?: unknown };
  if (typeof from !== 'string' || from.length === 0 || from.length > MAX_NAME_LENGTH) return '"from" must name the instance';
  if (typeof link !== 'string' || !LINK_ID.test(link)) return '"link" must be 16 hex digits';
  return { from, link };
}

/** Why the other end refused a link, or undefined when it accepted. */
function refusalOf(answer: Msg): string | undefined {
  let body: unknown;
  try {
    body = answer.json();
  } catch {
    return 'its answer is not JSON';
  }
  if (body && typeof body === 'object' && (body as { ok?: unknown }).ok === true) return undefined;
  const error = (body as { error?: unknown } | null)?.error;
  return typeof error === 'string' ? error.slice(0, MAX_NAME_LENGTH) : 'no reason given';
}

function respond(msg: Msg, body: object): void {
  try {
    msg.respond(JSON.stringify(body));
  } catch {
    // The connection went away meanwhile: the asker times out.
  }
}
