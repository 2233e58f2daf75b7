/** The one deadline timer of an exchange, on fake timers. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DeadlineSweep, type Deadline } from '../src/pipe/deadline-sweep.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

function entry(deadlineAt: number, expired: string[], name: string): Deadline {
  return { deadlineAt, expire: () => expired.push(name) };
}

describe('DeadlineSweep', () => {
  it('expires each entry at its deadline, in deadline order, on one timer', () => {
    const sweep = new DeadlineSweep();
    const expired: string[] = [];
    const now = performance.now();
    for (const [name, ms] of [
      ['c', 300],
      ['a', 100],
      ['d', 400],
      ['b', 200],
    ] as const)
      sweep.add(entry(now + ms, expired, name));
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(99);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual(['a']);
    vi.advanceTimersByTime(300);
    expect(expired).toEqual(['a', 'b', 'c', 'd']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a removed entry never expires, and the timer goes when nothing waits', () => {
    const sweep = new DeadlineSweep();
    const expired: string[] = [];
    const a = entry(performance.now() + 100, expired, 'a');
    sweep.add(a);
    sweep.remove(a);
    vi.advanceTimersByTime(1000);
    expect(expired).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a postponed entry expires at its new deadline, not the old one', () => {
    const sweep = new DeadlineSweep();
    const expired: string[] = [];
    const a = entry(performance.now() + 100, expired, 'a');
    const b = entry(performance.now() + 120, expired, 'b');
    sweep.add(a);
    sweep.add(b);
    vi.advanceTimersByTime(50);
    sweep.postpone(a, performance.now() + 100);
    vi.advanceTimersByTime(70);
    expect(expired).toEqual(['b']);
    vi.advanceTimersByTime(29);
    expect(expired).toEqual(['b']);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual(['b', 'a']);
  });

  it('an entry with no deadline is not filed; close stops everything', () => {
    const sweep = new DeadlineSweep();
    const expired: string[] = [];
    sweep.add(entry(Number.POSITIVE_INFINITY, expired, 'never'));
    expect(vi.getTimerCount()).toBe(0);
    sweep.add(entry(performance.now() + 10, expired, 'a'));
    sweep.close();
    vi.advanceTimersByTime(100);
    expect(expired).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('ten thousand entries with the same timeout cost one timer and expire together', () => {
    const sweep = new DeadlineSweep();
    let count = 0;
    const at = performance.now() + 3000;
    for (let i = 0; i < 10_000; i++) sweep.add({ deadlineAt: at + (i % 7), expire: () => count++ });
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(3010);
    expect(count).toBe(10_000);
    expect(sweep.size).toBe(0);
  });
});
