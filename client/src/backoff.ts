/**
 * Exponential backoff with full jitter (each wait is random between 0 and
 * min(cap, initial × 2^attempt)), as in "Exponential Backoff And Jitter"
 * (AWS Architecture Blog). Full jitter spreads thousands of agents that lost
 * the same server, so they do not all come back in the same instant.
 */
export interface BackoffOptions {
  /** Ceiling of the first wait, in ms. */
  initialMs: number;
  /** Ceiling of any wait, in ms. */
  maxMs: number;
  /** Random source in [0, 1); injectable for tests. */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private readonly random: () => number;

  constructor(private readonly opts: BackoffOptions) {
    this.random = opts.random ?? Math.random;
  }

  /** Waits so far without a reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The next wait in ms; advances the attempt count. */
  nextDelayMs(): number {
    const ceiling = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.floor(this.random() * ceiling);
  }

  /** Back to the first, short wait (after a stable connection). */
  reset(): void {
    this.attempt = 0;
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
