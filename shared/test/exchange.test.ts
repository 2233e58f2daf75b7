/**
 * The exchange's parts working together over an in-memory duplex: request
 * ids by parity, the state machine, fail-all on close, cancellation, stream
 * credit, drain waiting for what is in flight, and the in-flight cap.
 */
import { Readable } from 'node:stream';
import { EventCode, EventHandler, OverloadedError, PipeBrokenError, ShuttingDownError, type EventContext, type PostData } from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { RequestIds } from '../src/pipe/request-ids.js';
import { exchangePair, get, type ExchangePair } from './helpers.js';

let pair: ExchangePair | undefined;
afterEach(() => {
  pair?.close();
  pair = undefined;
});

/** Handlers that wait until released, echo streams, and count their signals. */
class Handler extends EventHandler {
  static override readonly streamedBodies = ['put_count'];
  waiting: Array<() => void> = [];
  aborted: string[] = [];
  async get_hold(ctx: EventContext) {
    await new Promise<void>((resolve) => {
      this.waiting.push(resolve);
      ctx.signal.addEventListener('abort', () => {
        this.aborted.push(String((ctx.signal.reason as Error).message));
        resolve();
      });
    });
    return { held: true };
  }
  get_now() {
    return { ok: 1 };
  }
  async put_count(_ctx: EventContext, post: PostData) {
    let bytes = 0;
    for await (const piece of post.stream as Readable) bytes += (piece as Buffer).length;
    return { bytes };
  }
  release(): void {
    for (const wake of this.waiting.splice(0)) wake();
  }
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 2));
  expect(check()).toBe(true);
}

describe('request ids', () => {
  it('the client numbers odd, the server even, and each knows the other’s', () => {
    const c = new RequestIds('client');
    const s = new RequestIds('server');
    expect([c.allocate(() => false), c.allocate(() => false)]).toEqual([1, 3]);
    expect([s.allocate(() => false), s.allocate(() => false)]).toEqual([2, 4]);
    expect(c.isPeerId(2)).toBe(true);
    expect(s.isPeerId(1)).toBe(true);
  });

  it('wrap before 2^32 and skip ids still in flight', () => {
    const ids = new RequestIds('client', 0xffff_fffd);
    expect(ids.allocate(() => false)).toBe(0xffff_fffd);
    expect(ids.allocate(() => false)).toBe(0xffff_ffff);
    expect(ids.allocate((id) => id === 1)).toBe(3);
  });

  it('say so when every id is taken, instead of spinning', () => {
    const ids = new RequestIds('server');
    expect(() => ids.allocate(() => true)).toThrow(RangeError);
  });
});

describe('the exchange', () => {
  it('moves handshaking → open on the peer’s Hello, then draining → closed; requests answer and ids alternate', async () => {
    pair = await exchangePair({ serverHandler: new Handler() });
    expect(pair.client.state).toBe('open');
    const reply = await pair.client.request(get('now', 1000));
    expect(reply.code).toBe(EventCode.OK);
    expect(JSON.parse(reply.body.toString())).toEqual({ ok: 1 });
    await pair.client.drain('bye', 1000);
    expect(pair.client.state).toBe('closed');
    await expect(pair.client.request(get('now', 1000))).rejects.toBeInstanceOf(ShuttingDownError);
  });

  it('a peer’s GoAway makes it peer-leaving: no new requests out, answered ones finish', async () => {
    const handler = new Handler();
    pair = await exchangePair({ clientHandler: handler });
    const inFlight = pair.server.request(get('hold', 5000));
    await until(() => handler.waiting.length === 1);
    pair.client.goAway('restarting');
    await until(() => pair!.server.state === 'peer-leaving');
    expect(pair.server.ready).toBe(false);
    expect(pair.server.peerGoingAway).toBe(true);
    await expect(pair.server.request(get('now', 1000))).rejects.toBeInstanceOf(ShuttingDownError);
    handler.release();
    expect((await inFlight).code).toBe(EventCode.OK);
  });

  it('close fails every request in flight at once and aborts every handler', async () => {
    const handler = new Handler();
    pair = await exchangePair({ serverHandler: handler });
    const calls = [1, 2, 3].map(() => pair!.client.request(get('hold', 60_000)).catch((e: unknown) => e));
    await until(() => handler.waiting.length === 3);
    expect(pair.client.inFlight.outgoing).toBe(3);
    expect(pair.server.inFlight.incoming).toBe(3);
    pair.client.close(new PipeBrokenError('cut'));
    for (const result of await Promise.all(calls)) expect(result).toBeInstanceOf(PipeBrokenError);
    await until(() => handler.aborted.length === 3);
    expect(pair.client.inFlight).toEqual({ outgoing: 0, incoming: 0, streams: 0 });
    expect(pair.server.inFlight).toEqual({ outgoing: 0, incoming: 0, streams: 0 });
  });

  it('a caller that gives up cancels the handler on the other side', async () => {
    const handler = new Handler();
    pair = await exchangePair({ serverHandler: handler });
    const ac = new AbortController();
    const call = pair.client.request({ ...get('hold', 60_000), signal: ac.signal }).catch((e: unknown) => e);
    await until(() => handler.waiting.length === 1);
    ac.abort(new Error('caller went away'));
    expect(await call).toBeInstanceOf(Error);
    await until(() => handler.aborted.length === 1);
    expect(handler.aborted[0]).toMatch(/cancelled by the peer: caller gone/);
    await until(() => pair!.server.inFlight.incoming === 0);
  });

  it('a streamed body arrives whole within the window’s credit', async () => {
    pair = await exchangePair({ serverHandler: new Handler(), limits: { streamWindowBytes: 256 * 1024, streamChunkBytes: 16 * 1024 } });
    const body = Readable.from(
      (function* () {
        for (let i = 0; i < 64; i++) yield Buffer.alloc(32 * 1024, i);
      })(),
    );
    const reply = await pair.client.request({ verb: 'put', noun: 'count', args: [], query: '', headers: [], mimetype: '', body, deadlineMs: 10_000 });
    expect(JSON.parse(reply.body.toString())).toEqual({ bytes: 64 * 32 * 1024 });
    expect(pair.server.memory.peakStreamHeldBytes).toBeLessThanOrEqual(256 * 1024);
    expect(pair.server.inFlight.streams).toBe(0);
  });

  it('drain resolves as soon as the last request finishes, not at the grace period', async () => {
    const handler = new Handler();
    pair = await exchangePair({ serverHandler: handler });
    const call = pair.client.request(get('hold', 60_000));
    await until(() => handler.waiting.length === 1);
    const drained = pair.server.drain('stopping', 60_000);
    await until(() => pair!.server.state === 'draining');
    handler.release();
    expect((await call).code).toBe(EventCode.OK);
    await drained;
    expect(pair.server.state).toBe('closed');
  });

  it('beyond the in-flight cap a request is refused at once on either side, and counted', async () => {
    const handler = new Handler();
    pair = await exchangePair({ serverHandler: handler, limits: { maxInFlight: 2 } });
    const held = [pair.client.request(get('hold', 60_000)), pair.client.request(get('hold', 60_000))];
    await until(() => handler.waiting.length === 2);
    await expect(pair.client.request(get('now', 1000))).rejects.toBeInstanceOf(OverloadedError);
    expect(pair.clientStats.count('requests.overloaded')).toBe(1);
    handler.release();
    await Promise.all(held);
    // The handling side refuses too when its own count is at the cap (a peer with a higher cap).
    const lopsided = await exchangePair({ serverHandler: handler, serverLimits: { maxInFlight: 1 } });
    try {
      const first = lopsided.client.request(get('hold', 60_000));
      await until(() => handler.waiting.length === 1);
      const refused = await lopsided.client.request(get('now', 1000));
      expect(refused.code).toBe(EventCode.OVERLOADED);
      expect(lopsided.serverStats.count('requests.overloaded')).toBe(1);
      handler.release();
      await first;
    } finally {
      lopsided.close();
    }
  });
});
