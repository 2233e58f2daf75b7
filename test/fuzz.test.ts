/**
 * Fuzzing the frame decoder (random buffers and mutated valid frames, split
 * at random points) and, lightly, a live server (random garbage frames over
 * real TLS connections).
 *
 * Every run uses a new seed; a failure names it. Reproduce with
 * `FUZZ_SEED=<seed> npx vitest run test/fuzz.test.ts`.
 */
import { FrameDecoder, FrameError, PROTOCOL_VERSION, encodeFrame, type Frame, type FrameInit } from '@restpipe/proto';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, httpClient, startClient, waitFor } from './helpers/pipe.js';
import { hello, rawTlsPeer, startLoggedServer, varint, withPrefix } from './helpers/raw-peer.js';

afterEach(closeAll);

const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const MAX_FRAME = 64 * 1024;
/** A 32-bit length prefix takes at most 5 varint bytes. */
const MAX_PREFIX = 5;

const ALPHABET = Array.from('abcXYZ019_/-. é€\u0000\uffff🙂');

/** mulberry32: small, fast, good enough to fuzz with, and reproducible from its seed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    /** 0 ≤ x < n */
    int,
    /** Mostly small, sometimes large: a size up to `max`. */
    size: (max: number) => (next() < 0.8 ? int(Math.min(64, max) + 1) : int(max + 1)),
    bool: (p = 0.5) => next() < p,
    pick: <T>(items: readonly T[]): T => items[int(items.length)] as T,
    bytes: (n: number) => {
      const out = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) out[i] = int(256);
      return out;
    },
    string: (n: number) => {
      // Whole code points only: a lone surrogate is not a string protobuf can carry (see the codec test).
      let s = '';
      for (let i = 0; i < n; i++) s += ALPHABET[int(ALPHABET.length)];
      return s;
    },
  };
}
type Rng = ReturnType<typeof prng>;

/** Runs `body`; a failure is rethrown naming the seed that reproduces it. */
function withSeed(what: string, body: (rng: Rng) => void | Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await body(prng(SEED));
    } catch (err) {
      const message = `${what} failed with FUZZ_SEED=${SEED}: ${(err as Error).message}`;
      console.error(message);
      throw Object.assign(new Error(message, { cause: err }), { stack: `${message}\n${(err as Error).stack ?? ''}` });
    }
  };
}

/** A random valid frame of a random kind (possibly larger than MAX_FRAME). */
function randomFrame(rng: Rng): FrameInit {
  const u32 = () => (rng.bool(0.3) ? rng.pick([0, 1, 2, 0x7fffffff, 0xffffffff]) : rng.int(2 ** 32));
  const bytes = () => rng.bytes(rng.bool(0.02) ? MAX_FRAME - 100 + rng.int(200) : rng.size(512));
  const headers = () => Array.from({ length: rng.int(4) }, () => ({ name: rng.string(rng.size(16)), value: rng.string(rng.size(32)) }));
  const sint64 = () => rng.pick([-1, 0, 1, rng.int(2 ** 31), -rng.int(2 ** 31), Number.MAX_SAFE_INTEGER]);
  switch (rng.int(9)) {
    case 0:
      return {
        hello: {
          version: rng.bool() ? PROTOCOL_VERSION : u32(),
          capabilities: Array.from({ length: rng.int(4) }, () => rng.string(rng.size(10))),
          agent: rng.string(rng.size(40)),
          maxFrameBytes: u32(),
          initialWindowBytes: u32(),
        },
      };
    case 1:
      return {
        request: {
          id: u32(),
          verb: rng.pick(['get', 'post', 'put', 'delete', 'patch', '', rng.string(5)]),
          noun: rng.string(rng.size(30)),
          args: Array.from({ length: rng.int(4) }, () => rng.string(rng.size(10))),
          query: rng.string(rng.size(30)),
          headers: headers(),
          mimetype: rng.string(rng.size(20)),
          body: bytes(),
          deadlineMs: u32(),
          streaming: rng.bool(),
          notify: rng.bool(),
          contentLength: sint64(),
        },
      };
    case 2:
      return {
        reply: {
          id: u32(),
          code: u32(),
          mimetype: rng.string(rng.size(20)),
          body: bytes(),
          streaming: rng.bool(),
          contentLength: sint64(),
          headers: headers(),
        },
      };
    case 3:
      return { chunk: { id: u32(), data: bytes(), end: rng.bool() } };
    case 4:
      return { credit: { id: u32(), bytes: u32() } };
    case 5:
      return { cancel: { id: u32(), reason: rng.string(rng.size(40)) } };
    case 6:
      return { ping: { seq: u32() } };
    case 7:
      return { pong: { seq: u32() } };
    default:
      return { goaway: { reason: rng.string(rng.size(40)), code: u32() } };
  }
}

function encoded(rng: Rng): Buffer {
  return Buffer.from(encodeFrame(randomFrame(rng), Number.MAX_SAFE_INTEGER));
}

/** Bit flips, truncations, insertions, deletions, duplications, new prefixes, concatenations. */
function mutate(rng: Rng, input: Buffer): Buffer {
  let buf = Buffer.from(input);
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds; r++) {
    switch (rng.int(8)) {
      case 0: // flip 1–8 bits
        if (buf.length === 0) break;
        for (let i = 1 + rng.int(8); i > 0; i--) {
          const at = rng.int(buf.length);
          buf[at] = (buf[at] as number) ^ (1 << rng.int(8));
        }
        break;
      case 1: // truncate
        buf = buf.subarray(0, rng.int(buf.length + 1));
        break;
      case 2: // insert random bytes
        {
          const at = rng.int(buf.length + 1);
          buf = Buffer.concat([buf.subarray(0, at), rng.bytes(1 + rng.int(16)), buf.subarray(at)]);
        }
        break;
      case 3: // delete a span
        {
          const at = rng.int(buf.length + 1);
          buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + 1 + rng.int(16))]);
        }
        break;
      case 4: // duplicate a span
        {
          const at = rng.int(buf.length + 1);
          const span = buf.subarray(at, at + 1 + rng.int(64));
          buf = Buffer.concat([buf.subarray(0, at), span, span, buf.subarray(at + span.length)]);
        }
        break;
      case 5: // replace the length prefix with another varint
        {
          let skip = 0;
          while (skip < buf.length && skip < MAX_PREFIX && ((buf[skip] as number) & 0x80) !== 0) skip++;
          const length = rng.pick([0, 1, rng.int(MAX_FRAME + 1), MAX_FRAME, MAX_FRAME + 1, rng.int(2 ** 32), 2 ** 31, 2 ** 35 - 1]);
          buf = Buffer.concat([varint(length), buf.subarray(skip + 1)]);
        }
        break;
      case 6: // append another frame (valid or garbage)
        buf = Buffer.concat([buf, rng.bool() ? encoded(rng) : rng.bytes(rng.size(64))]);
        break;
      default: // overwrite a byte with an interesting value
        if (buf.length === 0) break;
        buf[rng.int(buf.length)] = rng.pick([0x00, 0x7f, 0x80, 0xff, 0x0b, 0x0c, 0x0f, 0x78, 0x0a]);
    }
  }
  return buf;
}

/** Hand-made nasties: prefixes alone, endless varints, deep groups, huge declared fields. */
function special(rng: Rng): Buffer {
  switch (rng.int(7)) {
    case 0:
      return varint(MAX_FRAME + 1 + rng.int(2 ** 31));
    case 1:
      return Buffer.alloc(1 + rng.int(10), 0xff);
    case 2: // nested start-groups as deep as a frame allows
      return withPrefix(Buffer.alloc(1 + rng.int(MAX_FRAME), rng.pick([0x0b, 0x7b, 0x13])));
    case 3: // a bytes field declaring more than the frame holds
      return withPrefix(Buffer.concat([Buffer.from([0x22]), varint(rng.int(2 ** 32)), rng.bytes(rng.size(32))]));
    case 4: // a prefix declaring the maximum, then only part of it
      return Buffer.concat([varint(MAX_FRAME), rng.bytes(rng.int(MAX_FRAME))]);
    case 5: // a nested message declared longer than its frame
      return withPrefix(Buffer.concat([Buffer.from([0x12]), varint(1000), Buffer.from([0x08, 0x01])]));
    default: // many tiny valid frames
      return Buffer.concat(Array.from({ length: 1 + rng.int(200) }, () => encodeFrame({ ping: { seq: rng.int(1000) } })));
  }
}

/** Splits `buf` into random pieces: whole, a few, or many tiny ones. */
function splits(rng: Rng, buf: Buffer): Buffer[] {
  const mode = rng.int(4);
  if (mode === 0 || buf.length === 0) return [buf];
  const pieces: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const n = mode === 1 && buf.length <= 4096 ? 1 : 1 + rng.int(mode === 2 ? 16 : Math.max(1, buf.length >> 1));
    pieces.push(buf.subarray(at, at + n));
    at += n;
  }
  return pieces;
}

interface Outcome {
  frames: Frame[];
  error: unknown;
}

/** Feeds `pieces` to a fresh decoder, checking the invariants at every step. */
function feed(pieces: Buffer[]): Outcome {
  const largestPush = pieces.reduce((m, p) => Math.max(m, p.length), 0);
  const frames: Frame[] = [];
  let decoder: FrameDecoder | undefined;
  decoder = new FrameDecoder(MAX_FRAME, (frame) => {
    if (frame.kind === undefined) throw new Error('a frame without a kind reached the callback');
    // Inside a push the rest of that push may be held as well.
    if (decoder!.bufferedBytes > MAX_FRAME + MAX_PREFIX + largestPush) throw new Error(`buffered ${decoder!.bufferedBytes} bytes inside a push`);
    frames.push(frame);
  });
  let error: unknown;
  for (const piece of pieces) {
    try {
      decoder.push(piece);
    } catch (err) {
      if (!(err instanceof FrameError)) throw new Error(`push threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, { cause: err });
      error = err;
      if (decoder.bufferedBytes !== 0) throw new Error(`buffered ${decoder.bufferedBytes} bytes after an error`);
      // A failed decoder ignores everything after.
      const count = frames.length;
      decoder.push(Buffer.from(encodeFrame({ ping: { seq: 1 } })));
      if (frames.length !== count) throw new Error('a failed decoder delivered a frame');
      break;
    }
    // Between pushes: at most one incomplete frame (its prefix and part of its body).
    if (decoder.bufferedBytes > MAX_FRAME + MAX_PREFIX) throw new Error(`buffered ${decoder.bufferedBytes} bytes between pushes`);
    if (decoder.bufferedBytes > MAX_FRAME + largestPush) throw new Error(`buffered ${decoder.bufferedBytes} bytes, over max + largest push`);
  }
  return { frames, error };
}

describe('FrameDecoder fuzz', () => {
  it(
    'random bytes, mutated frames and nasties split at random points: only FrameErrors, bounded buffering, bounded heap',
    withSeed('decoder fuzz', (rng) => {
      const started = Date.now();
      const baseline = process.memoryUsage();
      let peak = 0;
      const tally = { cases: 0, frames: 0, errors: new Map<string, number>() };
      const run = (input: Buffer) => {
        const { frames, error } = feed(splits(rng, input));
        tally.cases++;
        tally.frames += frames.length;
        if (error) tally.errors.set((error as FrameError).code, (tally.errors.get((error as FrameError).code) ?? 0) + 1);
        if (tally.cases % 250 === 0) {
          const m = process.memoryUsage();
          peak = Math.max(peak, m.heapUsed + m.arrayBuffers - baseline.heapUsed - baseline.arrayBuffers);
        }
      };
      // Control: valid frames, concatenated and split anywhere, come out exactly as they went in.
      for (let i = 0; i < 1000; i++) {
        const inits = Array.from({ length: 1 + rng.int(5) }, () => randomFrame(rng)).filter((f) => encodeFrame(f, Number.MAX_SAFE_INTEGER).length <= MAX_FRAME);
        const bytes = Buffer.concat(inits.map((f) => encodeFrame(f, MAX_FRAME + MAX_PREFIX)));
        const { frames, error } = feed(splits(rng, bytes));
        expect(error).toBeUndefined();
        expect(frames.map((f) => f.kind)).toEqual(inits.map((f) => Object.keys(f)[0]));
        tally.cases++;
      }
      for (let i = 0; i < 6000; i++) run(rng.bytes(rng.size(2048)));
      for (let i = 0; i < 8000; i++) run(mutate(rng, rng.bool(0.7) ? encoded(rng) : Buffer.concat([encoded(rng), encoded(rng), encoded(rng)])));
      for (let i = 0; i < 1000; i++) run(special(rng));
      const elapsed = Date.now() - started;
      console.info(
        `decoder fuzz: FUZZ_SEED=${SEED}, ${tally.cases} cases, ${tally.frames} frames decoded, errors ${JSON.stringify(Object.fromEntries(tally.errors))}, heap peak +${Math.round(peak / 2 ** 20)} MiB, ${elapsed} ms`,
      );
      expect(tally.errors.size).toBeGreaterThanOrEqual(3);
      expect(peak).toBeLessThan(256 * 1024 * 1024);
    }),
  );
});

describe('live server fuzz', () => {
  it(
    '50 random garbage frames with valid length prefixes over real TLS: each connection closed, logged once, the good client served',
    withSeed('live fuzz', async (rng) => {
      const { server, log, stats } = await startLoggedServer();
      const good = await startClient(server, { name: 'good' });
      await waitFor(() => server.registry.get('good')?.ready === true, 5000, 'the good client');
      const http = httpClient();
      let closedCount = 0;
      for (let i = 0; i < 50; i++) {
        const afterHello = i % 2 === 1;
        // Before Hello anything but a Hello of our version is fatal; after it, use bodies that are not a valid frame.
        let body: Buffer;
        let expectOpen = false;
        for (;;) {
          body = rng.bool(0.5) ? rng.bytes(1 + rng.size(512)) : mutate(rng, encoded(rng).subarray(1)).subarray(0, MAX_FRAME);
          const { frames, error } = feed([withPrefix(body)]);
          if (afterHello) {
            if (error) break;
            continue;
          }
          expectOpen = error === undefined && frames.length === 1 && frames[0]?.kind === 'hello' && frames[0].hello?.version === PROTOCOL_VERSION;
          break;
        }
        const peer = await rawTlsPeer(server.pipeAddress.port);
        peer.send(afterHello ? Buffer.concat([encodeFrame(hello()), withPrefix(body)]) : withPrefix(body));
        if (expectOpen) {
          await sleepUntil(() => peer.frames.length >= 1, 1000);
          expect(peer.isClosed(), `connection ${i} (a valid Hello) stays up`).toBe(false);
          peer.socket.destroy();
        } else {
          await peer.waitClosed(5000).catch(() => {
            throw new Error(`connection ${i} was not closed after the body ${body.toString('hex').slice(0, 200)}`);
          });
          closedCount++;
        }
        await waitFor(() => server.registry.get('raw-peer') === undefined, 5000, 'the raw peer removed');
      }
      const badFrames = log.warnings().filter((l) => l.msg === 'closing the pipe: the peer sent a bad frame');
      expect(badFrames).toHaveLength(closedCount);
      expect(log.warnings()).toHaveLength(closedCount);
      expect(stats.count('frames.bad')).toBe(closedCount);
      const res = await http('GET', `${server.gatewayAddress}/client/good/time`);
      expect(res.status).toBe(200);
      expect(res.json()).toHaveProperty('time_from_client');
      expect(good.state).toBe('connected');
      expect(server.registry.get('good')?.state).toBe('open');
    }),
  );
});

async function sleepUntil(check: () => boolean, ms: number): Promise<void> {
  await waitFor(check, ms).catch(() => undefined);
}
