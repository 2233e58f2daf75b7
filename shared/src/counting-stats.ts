/**
 * A stats sink that keeps running totals of every counter (for the
 * `/_restpipe/status` endpoint) and forwards everything to another sink.
 */
import type { Stats } from './stats.js';

export class CountingStats implements Stats {
  private readonly totals = new Map<string, number>();

  constructor(private readonly next: Stats) {}

  increment(name: string, value = 1): void {
    this.totals.set(name, (this.totals.get(name) ?? 0) + value);
    this.next.increment(name, value);
  }

  gauge(name: string, value: number): void {
    this.next.gauge(name, value);
  }

  timing(name: string, ms: number): void {
    this.next.timing(name, ms);
  }

  close(): Promise<void> {
    return this.next.close();
  }

  /** Every counter's total since start, by name, sorted. */
  counters(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const name of [...this.totals.keys()].sort()) out[name] = this.totals.get(name) as number;
    return out;
  }
}
