import { Backoff } from '@restpipe/client';
import { afterEach, describe, expect, it, vi } from 'vitest';

describe('Backoff', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('waits below a ceiling that doubles from the initial wait up to the cap (full jitter)', () => {
    // A clock far into the outage, so only the doubling and the cap bound the ceiling.
    let now = 0;
    const top = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => 0.999999, now: () => now });
    now = 3_600_000;
    const ceilings = Array.from({ length: 10 }, () => top.nextDelayMs() + 1);
    expect(ceilings).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
    const bottom = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => 0 });
    expect(Array.from({ length: 5 }, () => bottom.nextDelayMs())).toEqual([0, 0, 0, 0, 0]);
  });

  it('bounds each ceiling by half the outage so far, never below the initial wait', () => {
    let now = 1_000_000;
    const b = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => 0.999999, now: () => now });
    const ceilingAt = (ms: number) => {
      now = 1_000_000 + ms;
      return b.nextDelayMs() + 1;
    };
    // Eight quick failures in the first 2 s: the doubling alone would reach 64 s (capped at 30 s).
    expect([0, 100, 300, 600, 1000, 1400, 1800, 2000].map(ceilingAt)).toEqual([500, 500, 500, 500, 500, 700, 900, 1000]);
    // 20 s into the outage the ceiling is 10 s, not the cap; a long outage reaches the cap.
    expect(ceilingAt(20_000)).toBe(10_000);
    expect(ceilingAt(600_000)).toBe(30_000);
    // The doubling still holds the ceiling down after a reset, however long the last outage was.
    b.reset();
    now += 60_000;
    expect(b.nextDelayMs() + 1).toBe(500);
    expect(b.nextDelayMs() + 1).toBe(1000);
  });

  it('starts the outage again at reset (a stable connection ended)', () => {
    let now = 0;
    const b = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => 0.999999, now: () => now });
    now = 100_000;
    b.reset();
    for (let i = 0; i < 6; i++) b.nextDelayMs();
    now += 4_000;
    expect(b.nextDelayMs() + 1).toBe(2000);
  });

  it('goes back to the short first wait after reset', () => {
    let now = 0;
    const b = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => 0.5, now: () => now });
    now = 3_600_000;
    for (let i = 0; i < 8; i++) b.nextDelayMs();
    expect(b.attempts).toBe(8);
    b.reset();
    expect(b.nextDelayMs()).toBe(250);
  });

  it('never overflows however many attempts', () => {
    let now = 0;
    const b = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => 0.999, now: () => now });
    now = 3_600_000;
    for (let i = 0; i < 10_000; i++) expect(b.nextDelayMs()).toBeLessThan(30_000);
  });

  it('wait() resolves after the delay, and close() ends it early', async () => {
    vi.useFakeTimers();
    const b = new Backoff({ initialMs: 1000, maxMs: 1000, random: () => 0.5 });
    let done = false;
    const waiting = b.wait().then(() => (done = true));
    await vi.advanceTimersByTimeAsync(499);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await waiting;
    expect(done).toBe(true);
    let early = false;
    const second = b.wait().then(() => (early = true));
    b.close();
    await second;
    expect(early).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });
});
