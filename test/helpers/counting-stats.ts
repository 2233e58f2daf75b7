/** A stats sink for tests that counts what it is given (no statsd, no socket). */
import type { Stats } from '@restpipe/shared';

export class CountingStats implements Stats {
  readonly counters = new Map<string, number>();
  increment(name: string, value = 1): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + value);
  }
  gauge(): void {}
  timing(): void {}
  async close(): Promise<void> {}
  count(name: string): number {
    return this.counters.get(name) ?? 0;
  }
}
