/**
 * Paces the server's TLS handshakes. Connections are accepted at once
 * (so the kernel's listen queue never overflows), but at most `max`
 * handshakes are in progress at a time; the others wait, unread, and the
 * newest is started first. Why: when thousands of agents come back
 * together (a server restart), starting every handshake at once shares
 * the CPU among all of them, each takes longer than the clients' connect
 * timeout, and nearly all of the work is thrown away; started a bounded
 * number at a time, each completes in milliseconds. Newest first, because
 * under overload the oldest waiters are the likeliest to have given up:
 * work goes to clients still waiting, and the starved ones come back with
 * a fresh connection after their backoff.
 *
 * A connection that waited longer than `maxWaitMs` is closed without a
 * handshake (counted in `connections.queue_timeouts`); its client retries.
 * A handshake counts against `max` until it completes or fails, or for
 * `leaseMs` at most: a peer that stalls mid-handshake (or never speaks)
 * cannot hold a slot for longer, so a few silent connections cannot shut
 * everyone out; the TLS server's own handshake timeout still ends it.
 *
 * `holdUntil()` starts no handshake until a promise settles (or a bound
 * passes) while connections are still accepted: the server holds its
 * handshakes while its extra accept handles arrive, one event-loop turn
 * each (accept-handles.ts), since a restart storm's TLS work would make
 * every one of those turns long.
 */
import type { Socket } from 'node:net';
import type { Logger, Stats } from '@restpipe/shared';

export interface HandshakeQueueOptions {
  /** Handshakes in progress at once (`RP_SERVER_HANDSHAKES_MAX`). */
  readonly max: number;
  /** Longest wait for a handshake to start, ms (`RP_SERVER_HANDSHAKE_QUEUE_S`). */
  readonly maxWaitMs: number;
  /** Longest time a handshake counts against `max`, ms. @default 1000 */
  readonly leaseMs?: number;
  /** Starts the TLS handshake of an accepted socket (hands it to the TLS server). */
  readonly start: (socket: Socket) => void;
  readonly stats: Stats;
  /** Told, at warn and at most every 5 s, how many waiters were closed. */
  readonly log?: Logger;
}

/** What `/_restpipe/status` shows of the queue. */
export interface HandshakeQueueStatus {
  readonly inProgress: number;
  readonly waiting: number;
  readonly max: number;
}

interface Waiter {
  readonly socket: Socket;
  readonly since: number;
}

/** How often waiters and leases are checked while there are any, ms. */
const SWEEP_MS = 250;
/** Closed waiters are logged at most this often, ms. */
const LOG_EVERY_MS = 5000;

export class HandshakeQueue {
  /** Sockets whose handshake counts against `max`, with the time it started. */
  private readonly running = new Map<Socket, number>();
  /** Waiting sockets, oldest first: the newest is taken from the end, the expired from `head`. */
  private waiters: Array<Waiter | undefined> = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Waiters closed since the last log line, and when that was. */
  private expiredUnlogged = 0;
  private loggedAt = Number.NEGATIVE_INFINITY;
  private readonly leaseMs: number;
  /** Handshakes are held (`holdUntil`): admitted sockets wait, none starts. */
  private held = false;
  private holdTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: HandshakeQueueOptions) {
    this.leaseMs = opts.leaseMs ?? 1000;
  }

  /** An accepted socket (not yet read from): its handshake starts now, or when a slot frees. */
  admit(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    if (!this.held && this.running.size < this.opts.max) {
      this.begin(socket);
      return;
    }
    this.waiters.push({ socket, since: performance.now() });
    this.arm();
  }

  /** The handshake of `socket` completed or failed, or the socket closed: its slot is free. Idempotent. */
  done(socket: Socket | undefined): void {
    if (!socket || !this.running.delete(socket)) return;
    this.pump();
  }

  /**
   * Starts no handshake until `until` settles or `maxMs` passes, whichever
   * comes first; sockets admitted meanwhile wait (their `maxWaitMs` runs),
   * then start as usual, newest first.
   */
  holdUntil(until: Promise<unknown>, maxMs: number): void {
    if (this.closed || this.held) return;
    this.held = true;
    const release = () => {
      if (!this.held) return;
      this.held = false;
      clearTimeout(this.holdTimer);
      this.holdTimer = undefined;
      if (!this.closed) this.pump();
    };
    this.holdTimer = setTimeout(release, maxMs);
    this.holdTimer.unref();
    until.then(release, release);
  }

  get status(): HandshakeQueueStatus {
    return { inProgress: this.running.size, waiting: this.waiters.length - this.head, max: this.opts.max };
  }

  /** Closes every waiting socket and takes no more; handshakes in progress go on. */
  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    for (let i = this.head; i < this.waiters.length; i++) this.waiters[i]?.socket.destroy();
    this.waiters = [];
    this.head = 0;
    this.running.clear();
  }

  private begin(socket: Socket): void {
    this.running.set(socket, performance.now());
    socket.once('close', () => this.done(socket));
    this.arm();
    this.opts.start(socket);
  }

  /** Starts waiting handshakes, newest first, while slots are free. */
  private pump(): void {
    while (!this.held && this.running.size < this.opts.max && this.waiters.length > this.head) {
      const next = this.waiters.pop() as Waiter;
      if (next.socket.destroyed) continue;
      this.begin(next.socket);
    }
    this.compact();
  }

  private arm(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => this.sweep(), SWEEP_MS);
    this.timer.unref();
  }

  /** Closes waiters past their wait, frees slots past their lease, and stops when nothing is left. */
  private sweep(): void {
    const now = performance.now();
    while (this.waiters.length > this.head) {
      const oldest = this.waiters[this.head] as Waiter;
      if (now - oldest.since < this.opts.maxWaitMs) break;
      this.waiters[this.head++] = undefined;
      if (oldest.socket.destroyed) continue;
      this.opts.stats.increment('connections.queue_timeouts');
      this.expiredUnlogged++;
      oldest.socket.destroy();
    }
    if (this.expiredUnlogged > 0 && now - this.loggedAt >= LOG_EVERY_MS) {
      this.opts.log?.warn(
        { closed: this.expiredUnlogged, waiting: this.status.waiting, max: this.opts.max, maxWaitMs: this.opts.maxWaitMs },
        'closed connections that waited too long for a TLS handshake (a reconnect storm?); their clients retry after their backoff',
      );
      this.expiredUnlogged = 0;
      this.loggedAt = now;
    }
    for (const [socket, since] of this.running) if (now - since >= this.leaseMs) this.running.delete(socket);
    this.pump();
    if (this.running.size === 0 && this.waiters.length === this.head && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Drops the expired head of the waiting list once it is most of the array. */
  private compact(): void {
    if (this.head === this.waiters.length) {
      this.waiters = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.waiters.length) {
      this.waiters = this.waiters.slice(this.head);
      this.head = 0;
    }
  }
}
