/**
 * Deadlines over a real TLS pipe: a handler that answers after its request's
 * deadline passed (it waited on ctx.signal, which aborts at the deadline)
 * answers code 244 on the wire, whatever it returned, and the late result is
 * counted; a raw peer without timers of its own sees exactly what the node sends.
 */
import type { Frame } from '@restpipe/proto';
import { ServerEventHandler } from '@restpipe/server';
import type { EventContext } from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, waitFor } from './helpers/pipe.js';
import { hello, rawTlsPeer, startLoggedServer } from './helpers/raw-peer.js';

afterEach(closeAll);

class LateHandler extends ServerEventHandler {
  /** Waits for its signal (the deadline), then answers as if nothing happened. */
  async get_wait(ctx: EventContext) {
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
    return { ok: true };
  }
  async get_wait_tuple(ctx: EventContext) {
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
    return ['text/plain', 0, 'late but fine?'];
  }
}

describe('a handler answering after its deadline', () => {
  for (const noun of ['wait', 'wait_tuple']) {
    it(`answers 244 on the wire (${noun}), and counts the late result`, async () => {
      const { server, stats } = await startLoggedServer({ handler: new LateHandler() });
      const peer = await rawTlsPeer(server.pipeAddress.port);
      peer.send(hello());
      peer.send({ request: { id: 1, verb: 'get', noun, args: [], query: '', mimetype: '', deadlineMs: 150 } });
      await waitFor(() => peer.frames.some((f: Frame) => f.kind === 'reply'), 5000, 'the reply');
      const reply = peer.frames.find((f: Frame) => f.kind === 'reply')?.reply;
      expect(reply?.id).toBe(1);
      expect(reply?.code).toBe(244);
      expect(JSON.parse(Buffer.from(reply?.body ?? []).toString())).toMatchObject({ error: { code: 'RP_DEADLINE_EXCEEDED' } });
      expect(stats.count('replies.late')).toBe(1);
      expect(stats.count('requests.code.244')).toBe(1);
      expect(stats.count('requests.code.0')).toBe(0);
    });
  }
});
