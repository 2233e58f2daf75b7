/**
 * The in-flight cap (RP_MAX_IN_FLIGHT): a handler that hangs cannot pile up
 * state. Beyond the cap the gateway answers 503 / 247 with Retry-After at
 * once, every request gets an answer, what the pipe holds stays at the cap,
 * and another client's requests are untouched.
 */
import { ServerEventHandler } from '@restpipe/server';
import type { EventContext } from '@restpipe/shared';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, httpClient, onClose, startClient, startServer } from './helpers/pipe.js';

afterEach(closeAll);

/** Below the 64 concurrent callers, so the cap is what turns requests away. */
const CAP = 20;

class HangingHandler extends ServerEventHandler {
  started = 0;
  async get_hang(ctx: EventContext) {
    this.started++;
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
    return { late: true };
  }
  get_time() {
    return { time_from_server: Date.now() / 1000 };
  }
}

describe('the in-flight cap', () => {
  it('a hung handler and 20,000 requests: every one answered, 503 beyond the cap at once, the pipe holds at most the cap, others untouched', async () => {
    const env = { RP_MAX_IN_FLIGHT: String(CAP) };
    const handler = new HangingHandler();
    const server = await startServer({ handler, env });
    const stuck = await startClient(server, { name: 'stuck', env });
    const other = await startClient(server, { name: 'other', env });
    const agent = new Agent({ connections: 64, pipelining: 1 });
    onClose(() => agent.close());

    let peakOutgoing = 0;
    const exchange = stuck.exchange!;
    const watch = setInterval(() => (peakOutgoing = Math.max(peakOutgoing, exchange.inFlight.outgoing)), 1);
    onClose(() => clearInterval(watch));

    const statuses = new Map<number, number>();
    let retryAfter = 0;
    const TOTAL = 20_000;
    let next = 0;
    const worker = async () => {
      while (next < TOTAL) {
        next++;
        const res = await request(`${stuck.gatewayAddress}/server/hang`, { dispatcher: agent, headers: { 'x-restpipe-timeout-ms': '2000' } });
        await res.body.arrayBuffer();
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        if (res.statusCode === 503) {
          expect(res.headers['x-event-return-code']).toBe('247');
          if (res.headers['retry-after'] === '1') retryAfter++;
        }
        peakOutgoing = Math.max(peakOutgoing, exchange.inFlight.outgoing);
      }
    };
    const load = Promise.all(Array.from({ length: 64 }, worker));
    // Meanwhile another client's requests answer as usual.
    const http = httpClient();
    for (let i = 0; i < 20; i++) {
      const res = await http('GET', `${other.gatewayAddress}/server/time`);
      expect(res.status).toBe(200);
    }
    await load;

    const total = [...statuses.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe(TOTAL);
    // Only the requests within the cap reached the handler; they waited for their deadline.
    expect([...statuses.keys()].sort()).toEqual([503, 504]);
    expect(statuses.get(504)).toBeGreaterThanOrEqual(CAP);
    expect(retryAfter).toBe(statuses.get(503));
    expect(peakOutgoing).toBeLessThanOrEqual(CAP);
    expect(handler.started).toBeLessThanOrEqual(statuses.get(504) ?? 0);
    const counters = stuck.status().counters as Record<string, number>;
    expect(counters['requests.overloaded']).toBe(statuses.get(503));
    expect(counters['gateway.status.503']).toBe(statuses.get(503));
    const after = await http('GET', `${other.gatewayAddress}/server/time`);
    expect(after.status).toBe(200);
  }, 120_000);
});
