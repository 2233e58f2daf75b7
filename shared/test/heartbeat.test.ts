/**
 * The heartbeat, on fake timers: a silent peer is reported when the timeout
 * has passed since its last frame (not a polling tick later), an idle link
 * carries one ping/pong pair per interval, and both sides learn the round
 * trip from that one pair.
 */
import { FrameDecoder, PROTOCOL_VERSION, encodeFrame, type Frame } from '@restpipe/proto';
import { Dispatcher, EventHandler, MessageExchange, duplexPair } from '@restpipe/shared';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Heartbeat, type HeartbeatOptions } from '../src/pipe/heartbeat.js';
import { CountingSink, LIMITS } from './helpers.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'Date', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

function heartbeat(overrides: Partial<HeartbeatOptions> = {}) {
  const pings: Array<{ seq: number; rttMicros: number; at: number }> = [];
  const silences: number[] = [];
  const rtts: Array<[number, boolean]> = [];
  const hb = new Heartbeat({
    intervalMs: 5000,
    timeoutMs: 10_000,
    leads: true,
    sendPing: (seq, rttMicros) => pings.push({ seq, rttMicros, at: performance.now() }),
    onSilent: (ms) => silences.push(ms),
    onRtt: (ms, here) => rtts.push([ms, here]),
    ...overrides,
  });
  return { hb, pings, silences, rtts };
}

describe('Heartbeat', () => {
  it('reports a silent peer exactly when the timeout has passed since its last frame', () => {
    const { hb, silences } = heartbeat();
    vi.advanceTimersByTime(1234);
    hb.received();
    vi.advanceTimersByTime(9999);
    expect(silences).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(silences).toEqual([10_000]);
    vi.advanceTimersByTime(60_000);
    expect(silences).toHaveLength(1);
    hb.stop();
  });

  it('the leading side pings after one quiet interval, the other after one and a half', () => {
    const lead = heartbeat();
    const follow = heartbeat({ leads: false });
    vi.advanceTimersByTime(5000);
    expect(lead.pings.map((p) => p.at)).toEqual([5000]);
    expect(follow.pings).toEqual([]);
    vi.advanceTimersByTime(2500);
    expect(follow.pings.map((p) => p.at)).toEqual([7500]);
    lead.hb.stop();
    follow.hb.stop();
  });

  it('an idle link answered at once carries one ping per interval, and no silence', () => {
    const { hb, pings, silences } = heartbeat({
      sendPing: (seq) => {
        pings.push({ seq, rttMicros: 0, at: performance.now() });
        // The peer's pong arrives 20 ms later.
        setTimeout(() => {
          hb.received();
          hb.ponged(seq);
        }, 20);
      },
    });
    vi.advanceTimersByTime(60_000);
    expect(silences).toEqual([]);
    expect(pings.length).toBeGreaterThanOrEqual(11);
    expect(pings.length).toBeLessThanOrEqual(12);
    expect(hb.rttMs).toBe(20);
    hb.stop();
  });

  it('a lost pong is pinged again one interval later; the peer is still dropped at the timeout', () => {
    const { hb, pings, silences } = heartbeat({ intervalMs: 3000, timeoutMs: 10_000 });
    vi.advanceTimersByTime(10_000);
    expect(pings.map((p) => p.at)).toEqual([3000, 6000, 9000]);
    expect(silences).toEqual([10_000]);
    hb.stop();
  });

  it('carries the measured round trip in the next ping, and the other side learns it', () => {
    const leader = heartbeat();
    vi.advanceTimersByTime(5000);
    vi.advanceTimersByTime(30);
    leader.hb.received();
    leader.hb.ponged(1);
    expect(leader.rtts).toEqual([[30, true]]);
    vi.advanceTimersByTime(5000);
    expect(leader.pings[1]?.rttMicros).toBe(30_000);
    const follower = heartbeat({ leads: false });
    follower.hb.pinged(leader.pings[1]!.rttMicros);
    expect(follower.hb.rttMs).toBe(30);
    expect(follower.rtts).toEqual([[30, false]]);
    leader.hb.stop();
    follower.hb.stop();
  });
});

describe('an exchange with a peer that goes silent', () => {
  it('closes when the timeout has passed since the last frame, however that falls against the interval', async () => {
    const [mine, theirs] = duplexPair();
    const stats = new CountingSink();
    const exchange = new MessageExchange({
      socket: mine,
      role: 'server',
      peer: { name: 'quiet', address: undefined },
      dispatcher: new Dispatcher(new EventHandler()),
      log: pino({ level: 'silent' }),
      stats,
      limits: { ...LIMITS, heartbeatIntervalMs: 5000, heartbeatTimeoutMs: 10_000 },
    });
    const frames: Frame[] = [];
    const decoder = new FrameDecoder(LIMITS.maxFrameBytes, (f) => frames.push(f));
    theirs.on('data', (chunk: Buffer) => decoder.push(chunk));
    let closedAt = -1;
    exchange.once('close', () => (closedAt = Date.now()));
    const start = Date.now();
    theirs.write(
      encodeFrame({
        hello: { version: PROTOCOL_VERSION, capabilities: ['stream'], agent: 'test', maxFrameBytes: LIMITS.maxFrameBytes, initialWindowBytes: 65536 },
      }),
    );
    await vi.advanceTimersByTimeAsync(1200);
    // The last frame the peer ever sends, 1.2 s in.
    theirs.write(encodeFrame({ ping: { seq: 7 } }));
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(10_000 - 1);
    expect(closedAt).toBe(-1);
    await vi.advanceTimersByTimeAsync(1);
    expect(closedAt - start).toBe(11_200);
    expect(stats.count('heartbeat.timeouts')).toBe(1);
    // It pinged the quiet peer in between, and answered the peer's ping.
    expect(frames.some((f) => f.kind === 'ping')).toBe(true);
    expect(frames.find((f) => f.kind === 'pong')?.pong?.seq).toBe(7);
  });
});
