import { Backoff } from '@restpipe/client';
import { afterEach, describe, expect, it, vi } from 'vitest';

describe('Backoff', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('waits below a ceiling that doubles from the initial wait up to the cap (full jitter)', () => {
    const top = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => 0.999999 });
    const ceilings = Array.from({ length: 10 }, () => top.nextDelayMs() + 1);
    expect(ceilings).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
    const bottom = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => 0 });
    expect(Array.from({ length: 5 }, () => bottom.nextDelayMs())).toEqual([0, 0, 0, 0, 0]);
  });

  it('goes back to the short first wait after reset', () => {
    const b = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => 0.5 });
    for (let i = 0; i < 8; i++) b.nextDelayMs();
    expect(b.attempts).toBe(8);
    b.reset();
    expect(b.nextDelayMs()).toBe(250);
  });

  it('never overflows however many attempts', () => {
    const b = new Backoff({ initialMs: 500, maxMs: 30_000, random: () => 0.999 });
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
