/**
 * Exponential backoff with full jitter (each wait is random between 0 and
 * its ceiling), as in "Exponential Backoff And Jitter" (AWS Architecture
 * Blog). Full jitter spreads thousands of agents that lost the same server,
 * so they do not all come back in the same instant.
 *
 * The ceiling is the least of the cap, initial × 2^attempt, and half the
 * outage so far (never below the initial wait). The outage runs from the
 * last `reset()` (a stable connection ended) or from construction. The third
 * bound keeps a wait from running far ahead of the outage: an agent that
 * failed many quick attempts early in a server restart (refused while the
 * server was down, turned away by its full handshake queue) would otherwise
 * draw waits of 16–30 s just after the server is back. Its next attempt
 * still comes no sooner than the doubling allows, and a long outage reaches
 * the cap as before.
 */
export interface BackoffOptions {
  /** Ceiling of the first wait, in ms. */
  initialMs: number;
  /** Ceiling of any wait, in ms. */
  maxMs: number;
  /** Random source in [0, 1); injectable for tests. */
  random?: () => number;
  /** Clock in ms; injectable for tests. @default Date.now */
  now?: () => number;
}

export class Backoff {
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private readonly random: () => number;
  private readonly now: () => number;
  private outageSince: number;

  constructor(private readonly opts: BackoffOptions) {
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    this.outageSince = this.now();
  }

  /** Waits so far without a reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The next wait in ms; advances the attempt count. */
  nextDelayMs(): number {
    const { initialMs, maxMs } = this.opts;
    const outageBound = Math.max(initialMs, (this.now() - this.outageSince) / 2);
    const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(this.attempt, 30), outageBound);
    this.attempt++;
    return Math.floor(this.random() * ceiling);
  }

  /** Back to the first, short wait, and the outage starts now (a stable connection ended). */
  reset(): void {
    this.attempt = 0;
    this.outageSince = this.now();
  }

  /** Waits the next delay; `close()` ends the wait early. */
  wait(): Promise<void> {
    const ms = this.nextDelayMs();
    return new Promise<void>((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.wake = undefined;
        resolve();
      }, ms);
    });
  }

  /** Ends a wait in progress at once. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.wake?.();
    this.wake = undefined;
  }
}
