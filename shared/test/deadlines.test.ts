/**
 * Deadlines on both sides of one exchange, with a hand-moved clock: once a
 * request's deadline has passed, its answer is code 244 on every path,
 * whatever the handler returns afterwards, and the late result is counted.
 */
import { DeadlineExceededError, EventCode, EventHandler, type EventContext } from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock, exchangePair, get, type ExchangePair } from './helpers.js';

let pair: ExchangePair | undefined;
afterEach(() => {
  pair?.close();
  pair = undefined;
});

/** Answers `wait` when the test releases it. */
class HeldHandler extends EventHandler {
  release: (() => void) | undefined;
  private onCall: (() => void) | undefined;
  readonly called = new Promise<void>((resolve) => (this.onCall = resolve));
  async get_wait(_ctx: EventContext) {
    this.onCall?.();
    await new Promise<void>((resolve) => (this.release = resolve));
    return { ok: true };
  }
}

describe('the requesting side', () => {
  it('a reply read after the deadline passed is a DeadlineExceededError, not the late result', async () => {
    const clock = new ManualClock();
    const handler = new HeldHandler();
    pair = await exchangePair({ serverHandler: handler, clientNow: clock.now });
    const answer = pair.client.request(get('wait', 1000)).then(
      (r) => r,
      (e: unknown) => e,
    );
    await handler.called;
    // The deadline passes on the requester's clock, but its timer has not run yet (a busy loop).
    clock.advance(1001);
    handler.release?.();
    const result = await answer;
    expect(result).toBeInstanceOf(DeadlineExceededError);
    expect(pair.clientStats.count('replies.late')).toBe(1);
    expect(pair.clientStats.count('requests.deadline_exceeded')).toBe(1);
  });

  it('a reply within the deadline is the handler result', async () => {
    const clock = new ManualClock();
    const handler = new HeldHandler();
    pair = await exchangePair({ serverHandler: handler, clientNow: clock.now });
    const answer = pair.client.request(get('wait', 1000));
    await handler.called;
    clock.advance(999);
    handler.release?.();
    const reply = await answer;
    expect(reply.code).toBe(EventCode.OK);
    expect(JSON.parse(reply.body.toString())).toEqual({ ok: true });
    expect(pair.clientStats.count('replies.late')).toBe(0);
  });
});
