/**
 * The client's list of servers: parsing `RP_CLIENT_TARGET_HOSTNAME` into
 * targets (in step with the setting's own check), the shuffle, and the
 * rotation's rounds that decide when the backoff waits.
 */
import { TargetRotation, loadClientConfig, parseTargets, targetAddress, type Target } from '@restpipe/client';
import { ConfigError } from '@restpipe/shared';
import { describe, expect, it } from 'vitest';

/** A seeded generator (mulberry32), so that "random" orders are the same on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Just under 1: Fisher–Yates swaps nothing, the listed order stays. */
const KEEP_ORDER = () => 0.999999;

const targets = (list: string): readonly Target[] => parseTargets(list, 1234);

describe('parseTargets', () => {
  it('reads host, host:port and [IPv6]:port entries, a bare host on the default port', () => {
    expect(parseTargets('a.example.com, b.example.com:4443 ,[::1]:9000,[fe80::1],127.0.0.1:1', 1500)).toEqual([
      { host: 'a.example.com', port: 1500, servername: 'a.example.com' },
      { host: 'b.example.com', port: 4443, servername: 'b.example.com' },
      { host: '::1', port: 9000, servername: '::1' },
      { host: 'fe80::1', port: 1500, servername: 'fe80::1' },
      { host: '127.0.0.1', port: 1, servername: '127.0.0.1' },
    ]);
  });

  it('gives every target the servername when one is given', () => {
    expect(parseTargets('10.0.0.1,10.0.0.2:99', 1234, 'pipe.example.com').map((t) => t.servername)).toEqual(['pipe.example.com', 'pipe.example.com']);
  });

  it('counts a repeated entry once (the same host and port, in any case)', () => {
    expect(targets('a.example.com,A.example.com:1234,a.example.com:1235').map(targetAddress)).toEqual(['a.example.com:1234', 'a.example.com:1235']);
  });

  it('refuses exactly what the setting refuses, and takes what it takes', async () => {
    const values = [
      'localhost',
      'a,b',
      'a:1,[::1]:2',
      '',
      ' ',
      'a,',
      ',a',
      'a,,b',
      'a:0',
      'a:65536',
      'a:65535',
      'a:',
      '::1',
      '[::1',
      'a b',
      '[x]',
      'a:1:2',
      'a:123456',
    ];
    for (const value of values) {
      const parsed = (() => {
        try {
          parseTargets(value, 1234);
          return true;
        } catch (err) {
          expect(err, value).toBeInstanceOf(ConfigError);
          return false;
        }
      })();
      // An empty value means the default (localhost): the loader never parses it.
      if (value.trim() === '') continue;
      const loaded = await loadClientConfig({ RP_CLIENT_TARGET_HOSTNAME: value }).then(
        () => true,
        () => false,
      );
      expect(parsed, value).toBe(loaded);
    }
  });
});

describe('targetAddress', () => {
  it('puts IPv6 addresses in brackets', () => {
    expect(targetAddress({ host: '::1', port: 1234 })).toBe('[::1]:1234');
    expect(targetAddress({ host: 'a.example.com', port: 1 })).toBe('a.example.com:1');
  });
});

describe('TargetRotation', () => {
  it('shuffles the list once: every order comes up, about equally often', () => {
    const list = targets('a,b,c');
    const random = seeded(42);
    const counts = new Map<string, number>();
    for (let i = 0; i < 6000; i++) {
      const order = new TargetRotation(list, random).targets.map((t) => t.host).join('');
      counts.set(order, (counts.get(order) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual(['abc', 'acb', 'bac', 'bca', 'cab', 'cba']);
    for (const n of counts.values()) expect(n).toBeGreaterThan(800);
  });

  it('dials in its order, moving on after each failure, and says to wait once per round', () => {
    const rotation = new TargetRotation(targets('a,b,c'), KEEP_ORDER);
    const dialed: string[] = [];
    const waits: number[] = [];
    for (let attempt = 1; attempt <= 7; attempt++) {
      dialed.push(rotation.begin().host);
      if (rotation.failed()) waits.push(attempt);
    }
    expect(dialed).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a']);
    expect(waits).toEqual([3, 6]);
  });

  it('with one target waits after every failure, GoAway or broken pipe (as a single server always did)', () => {
    const rotation = new TargetRotation(targets('a'));
    rotation.begin();
    expect(rotation.failed()).toBe(true);
    rotation.begin();
    expect(rotation.ended({ sentAway: true, stable: true })).toBe(true);
    rotation.begin();
    expect(rotation.ended({ sentAway: true, stable: false })).toBe(true);
    rotation.begin();
    expect(rotation.ended({ sentAway: false, stable: true })).toBe(true);
    expect(rotation.current.host).toBe('a');
  });

  it('after a GoAway dials the next target at once, and waits once the others failed too', () => {
    const rotation = new TargetRotation(targets('a,b,c'), KEEP_ORDER);
    rotation.begin(); // a: up, stable, then GoAway
    expect(rotation.ended({ sentAway: true, stable: true })).toBe(false);
    expect(rotation.begin().host).toBe('b');
    expect(rotation.failed()).toBe(false);
    expect(rotation.begin().host).toBe('c');
    expect(rotation.failed()).toBe(true);
    expect(rotation.current.host).toBe('a');
  });

  it('after a broken pipe waits first, then tries a full round from the next target', () => {
    const rotation = new TargetRotation(targets('a,b'), KEEP_ORDER);
    rotation.begin();
    expect(rotation.ended({ sentAway: false, stable: true })).toBe(true);
    expect(rotation.begin().host).toBe('b');
    expect(rotation.failed()).toBe(false);
    expect(rotation.begin().host).toBe('a');
    expect(rotation.failed()).toBe(true);
  });

  it('waits once per round when pipes that were not up for long are sent away one after the other', () => {
    // Two agents sharing one identity on two instances replace each other: no loop at full speed.
    const rotation = new TargetRotation(targets('a,b'), KEEP_ORDER);
    const waits: boolean[] = [];
    for (let i = 0; i < 4; i++) {
      rotation.begin();
      waits.push(rotation.ended({ sentAway: true, stable: false }));
    }
    expect(waits).toEqual([false, true, false, true]);
  });

  it('refuses an empty list', () => {
    expect(() => new TargetRotation([])).toThrow(ConfigError);
  });
});
