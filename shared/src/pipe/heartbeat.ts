/**
 * Keepalive for one connection: pings the peer when the link has been quiet,
 * measures the round trip, and reports a peer silent for the timeout.
 *
 * One timer per connection, armed for the next moment something is due
 * (a ping, or the silence limit). Traffic from the peer only stamps the time;
 * the timer, when it wakes early, re-arms for the new moment. A silent peer
 * is therefore reported within the timeout plus the timer's own latency,
 * never a polling tick later.
 *
 * Only one side starts pings on an idle link (the server, every interval;
 * the client only if the server has been quiet half an interval longer), so
 * an idle link carries one ping/pong pair per interval. Each ping carries the
 * pinger's latest round-trip time, so the side that only answers learns it
 * too without a second pair.
 */

export interface HeartbeatOptions {
  /** Ping when nothing came from the peer for this long. */
  intervalMs: number;
  /** Report the peer silent when nothing came from it for this long. */
  timeoutMs: number;
  /** The side that pings first on an idle link. */
  leads: boolean;
  /** Writes a Ping frame carrying this side's round-trip time in microseconds (0: none yet). */
  sendPing(seq: number, rttMicros: number): void;
  /** The peer sent nothing for `silentMs` (≥ the timeout). Called once; the heartbeat stops. */
  onSilent(silentMs: number): void;
  /** A round trip was measured here, or learnt from the peer's ping. */
  onRtt?(rttMs: number, measuredHere: boolean): void;
  /** Monotonic milliseconds. @default performance.now */
  now?: () => number;
}

export class Heartbeat {
  private readonly now: () => number;
  private readonly pingAfterMs: number;
  private lastReceivedAt: number;
  private timer: NodeJS.Timeout | undefined;
  private dueAt = Number.POSITIVE_INFINITY;
  private pingSeq = 0;
  /** When the outstanding ping went out; 0 when none is outstanding. */
  private pingSentAt = 0;
  private rtt: number | undefined;
  private stopped = false;

  constructor(private readonly opts: HeartbeatOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.pingAfterMs = opts.leads ? opts.intervalMs : opts.intervalMs * 1.5;
    this.lastReceivedAt = this.now();
    this.arm();
  }

  /** Smoothed round-trip time in ms, once known. */
  get rttMs(): number | undefined {
    return this.rtt;
  }

  /** Something arrived from the peer. Cheap: called for every socket read. */
  received(): void {
    this.lastReceivedAt = this.now();
  }

  /** The peer's Ping: learn its round trip when it carries one (the pong is the caller's to send). */
  pinged(rttMicros: number): void {
    if (rttMicros > 0 && this.pingSentAt === 0) this.record(rttMicros / 1000, false);
  }

  /** The peer's Pong for `seq`. */
  ponged(seq: number): void {
    if (seq !== this.pingSeq || this.pingSentAt === 0) return;
    const rtt = this.now() - this.pingSentAt;
    this.pingSentAt = 0;
    this.record(rtt, true);
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private record(rtt: number, measuredHere: boolean): void {
    this.rtt = this.rtt === undefined ? rtt : this.rtt * 0.8 + rtt * 0.2;
    this.opts.onRtt?.(rtt, measuredHere);
  }

  /** The next moment something is due: the silence limit, and a ping unless one is outstanding. */
  private nextDue(): number {
    const silentAt = this.lastReceivedAt + this.opts.timeoutMs;
    if (this.pingSentAt !== 0) {
      // A pong lost with an earlier ping: ping again one interval after it went out.
      return Math.min(silentAt, this.pingSentAt + this.opts.intervalMs);
    }
    return Math.min(silentAt, this.lastReceivedAt + this.pingAfterMs);
  }

  private arm(): void {
    if (this.stopped) return;
    const due = this.nextDue();
    if (this.timer && due >= this.dueAt) return; // the armed timer comes first; it re-arms when it wakes
    if (this.timer) clearTimeout(this.timer);
    this.dueAt = due;
    this.timer = setTimeout(() => this.wake(), Math.max(0, due - this.now()));
    this.timer.unref();
  }

  private wake(): void {
    this.timer = undefined;
    this.dueAt = Number.POSITIVE_INFINITY;
    if (this.stopped) return;
    const now = this.now();
    const silentMs = now - this.lastReceivedAt;
    if (silentMs >= this.opts.timeoutMs) {
      this.stop();
      this.opts.onSilent(silentMs);
      return;
    }
    if (this.pingSentAt !== 0 && now - this.pingSentAt >= this.opts.intervalMs) this.pingSentAt = 0; // that pong is not coming
    if (this.pingSentAt === 0 && silentMs >= this.pingAfterMs) {
      this.pingSeq = (this.pingSeq + 1) >>> 0;
      this.pingSentAt = now;
      this.opts.sendPing(this.pingSeq, this.rtt === undefined ? 0 : Math.max(1, Math.round(this.rtt * 1000)));
    }
    this.arm();
  }
}
