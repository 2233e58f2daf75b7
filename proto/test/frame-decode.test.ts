/**
 * The frame decoder reads the Frame envelope by hand and calls the generated
 * decoder of the one kind it carries. It must agree with the generated
 * `Frame.decode` on every input: the same frames accepted, the same decoded
 * values, the same errors for the rest.
 *
 * The fuzz cases use a new seed on each run; a failure names it. Reproduce
 * with `FUZZ_SEED=<seed> npx vitest run proto/test/frame-decode.test.ts`.
 */
import { describe, expect, it } from 'vitest';
import { FrameDecoder, FrameError, PROTOCOL_VERSION, encodeFrame, wire, type Frame, type FrameInit, type FrameKind } from '@restpipe/proto';

const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const KINDS: FrameKind[] = ['hello', 'request', 'reply', 'chunk', 'credit', 'cancel', 'ping', 'pong', 'goaway'];
const FIELD: Record<FrameKind, number> = { hello: 1, request: 2, reply: 3, chunk: 4, credit: 5, cancel: 6, ping: 7, pong: 8, goaway: 9 };

/** One frame of every kind with every field set. */
const FULL: Record<FrameKind, FrameInit> = {
  hello: {
    hello: { version: PROTOCOL_VERSION, capabilities: ['stream', 'notify'], agent: 'restpipe-node/0.1.0', maxFrameBytes: 1 << 20, initialWindowBytes: 1 << 16 },
  },
  request: {
    request: {
      id: 4_294_967_295,
      verb: 'post',
      noun: 'time/utc',
      args: ['hello ', 'wörld', ''],
      query: 'k=1&k=2',
      headers: [
        { name: 'x-custom', value: 'yes' },
        { name: 'accept', value: '*/*' },
      ],
      mimetype: 'application/json',
      body: Buffer.from('{"a":1}'),
      deadlineMs: 30_000,
      streaming: true,
      notify: true,
      contentLength: -1,
    },
  },
  reply: {
    reply: {
      id: 3,
      code: 251,
      mimetype: 'text/plain',
      body: Buffer.from([0, 1, 2, 255]),
      streaming: true,
      contentLength: 123_456_789_012,
      headers: [{ name: 'etag', value: '"x"' }],
    },
  },
  chunk: { chunk: { id: 5, data: Buffer.alloc(1000, 0xab), end: true } },
  credit: { credit: { id: 7, bytes: 65_536 } },
  cancel: { cancel: { id: 9, reason: 'deadline' } },
  ping: { ping: { seq: 1 } },
  pong: { pong: { seq: 4_294_967_295 } },
  goaway: { goaway: { reason: 'the server is shutting down', code: 246 } },
};

type Outcome = { error: string; message: string } | { frame: Frame };

/** What the FrameDecoder makes of one frame body. */
function viaDecoder(body: Uint8Array): Outcome {
  const frames: Frame[] = [];
  const decoder = new FrameDecoder(Number.MAX_SAFE_INTEGER, (f) => frames.push(f));
  try {
    decoder.push(Buffer.concat([varint(body.length), body]));
  } catch (err) {
    if (!(err instanceof FrameError)) throw err;
    return { error: err.name, message: err.message };
  }
  expect(frames).toHaveLength(1);
  return { frame: frames[0] as Frame };
}

/** What the decoder made of a frame body when it called the generated `Frame.decode`. */
function viaGenerated(body: Uint8Array): Outcome {
  let frame: Frame;
  try {
    frame = wire.Frame.decode(body);
  } catch (err) {
    return { error: 'MalformedFrameError', message: `frame does not decode: ${(err as Error).message}` };
  }
  if (frame.kind === undefined) return { error: 'UnknownFrameError', message: 'frame carries no known kind' };
  return { frame };
}

/** The kind and the fields of every kind, unset ones as null. */
function shape(frame: Frame): Record<string, unknown> {
  return Object.fromEntries([['kind', frame.kind], ...KINDS.map((k) => [k, frame[k] ?? null])]);
}

/** Checks that both decoders agree on `body`; returns what they made of it. */
function agree(body: Uint8Array): Outcome {
  const ours = viaDecoder(body);
  const theirs = viaGenerated(body);
  if ('frame' in ours && 'frame' in theirs) {
    expect(shape(ours.frame)).toEqual(shape(theirs.frame));
  } else {
    expect(ours).toEqual(theirs);
  }
  return ours;
}

function varint(value: number): Buffer {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}

/** One field on the wire: its tag, then `payload` (with a length in front for wire type 2). */
function field(number: number, wireType: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const tag = varint(number * 8 + wireType);
  return wireType === 2 ? Buffer.concat([tag, varint(payload.length), payload]) : Buffer.concat([tag, payload]);
}

/** The bytes of the kind's message alone (what follows the Frame's tag and length). */
function message(init: FrameInit): Buffer {
  const kind = KINDS.find((k) => init[k] != null) as FrameKind;
  const type = wire[(kind === 'goaway' ? 'GoAway' : kind[0]!.toUpperCase() + kind.slice(1)) as 'Request'];
  return Buffer.from(type.encode(init[kind] as never).finish());
}

/** A frame body without its length prefix. */
function body(init: FrameInit): Buffer {
  const framed = Buffer.from(encodeFrame(init, Number.MAX_SAFE_INTEGER));
  let prefix = 1;
  while ((framed[prefix - 1] as number) >= 0x80) prefix++;
  return framed.subarray(prefix);
}

/** Unknown fields of every wire type, a group with a nested group included. */
const UNKNOWN_FIELDS = Buffer.concat([
  field(15, 0, varint(300)),
  field(16, 1, Buffer.alloc(8, 1)),
  field(17, 2, Buffer.from('ignored')),
  field(18, 5, Buffer.alloc(4, 2)),
  field(19, 3),
  field(1, 0, varint(1)),
  field(20, 3),
  field(20, 4),
  field(19, 4),
]);

describe('the hand-written Frame decoder agrees with Frame.decode', () => {
  it.each(KINDS)('%s with every field set', (kind) => {
    const out = agree(body(FULL[kind]));
    expect('frame' in out && out.frame.kind).toBe(kind);
  });

  it.each(KINDS)('%s with every field at its default (an empty message)', (kind) => {
    const empty = field(FIELD[kind], 2);
    const out = agree(empty);
    expect('frame' in out && out.frame[kind]).toBeTruthy();
  });

  it.each(KINDS)('%s with unknown fields of every wire type inside the message', (kind) => {
    for (const [where, sub] of [
      ['after', Buffer.concat([message(FULL[kind]), UNKNOWN_FIELDS])],
      ['before', Buffer.concat([UNKNOWN_FIELDS, message(FULL[kind])])],
    ] as const) {
      const out = agree(field(FIELD[kind], 2, sub));
      expect('frame' in out && out.frame.kind, where).toBe(kind);
    }
  });

  it.each(KINDS)('%s with unknown fields, and known numbers of another wire type, in the envelope', (kind) => {
    const wrongTypes = Buffer.concat(KINDS.map((k) => field(FIELD[k], 0, varint(7))));
    const out = agree(Buffer.concat([UNKNOWN_FIELDS, wrongTypes, body(FULL[kind]), wrongTypes, UNKNOWN_FIELDS]));
    expect('frame' in out && out.frame.kind).toBe(kind);
  });

  it('the same kind twice merges: scalars from the last, repeated fields appended, messages merged', () => {
    const a = body({ request: { id: 1, verb: 'get', args: ['a'], headers: [{ name: 'x', value: '1' }], body: Buffer.from('first') } });
    const b = body({ request: { noun: 'time/utc', args: ['b', 'c'], headers: [{ name: 'y', value: '2' }], deadlineMs: 5 } });
    const out = agree(Buffer.concat([a, b]));
    expect('frame' in out && out.frame.request).toMatchObject({ id: 1, verb: 'get', noun: 'time/utc', args: ['a', 'b', 'c'], deadlineMs: 5 });
    const hello = agree(Buffer.concat([body(FULL.hello), body({ hello: { capabilities: ['more'], version: 9 } })]));
    expect('frame' in hello && hello.frame.hello).toMatchObject({ version: 9, capabilities: ['stream', 'notify', 'more'], agent: 'restpipe-node/0.1.0' });
  });

  it('another kind replaces the earlier one; the first kind again starts afresh', () => {
    const out = agree(Buffer.concat([body(FULL.request), body(FULL.reply)]));
    expect('frame' in out && [out.frame.kind, out.frame.request ?? null]).toEqual(['reply', null]);
    const again = agree(Buffer.concat([body(FULL.request), body(FULL.ping), body({ request: { noun: 'only' } })]));
    expect('frame' in again && again.frame.request).toEqual(wire.Request.decode(message({ request: { noun: 'only' } })));
    for (const first of KINDS) for (const second of KINDS) agree(Buffer.concat([body(FULL[first]), body(FULL[second])]));
  });

  it.each([
    ['an empty body', []],
    ['only unknown fields', [...UNKNOWN_FIELDS]],
    ['field number 0', [0x02, 0x00]],
    ['wire type 6', [0x0e]],
    ['wire type 7', [0x0f, 0x00]],
    ['an end-group with no start', [0x0c]],
    ['a group never ended', [0x7b, 0x08, 0x01]],
    ['an end-group for another field', [0x7b, 0x84, 0x01]],
    ['a message longer than the frame', [0x12, 0x10, 0x08]],
    ['a truncated varint inside the message', [0x3a, 0x02, 0x08, 0xff]],
    ['a truncated tag', [0xff]],
    ['a ten-byte varint tag', [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]],
    ['a length of 2^32 - 1', [0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]],
    ['a length varint over 32 bits', [0x12, 0xff, 0xff, 0xff, 0xff, 0x7f]],
    ['invalid UTF-8 in a string', [0x32, 0x04, 0x12, 0x02, 0xc3, 0x28]],
    ['a request holding a bad header', [0x12, 0x04, 0x32, 0x02, 0x0a, 0x05]],
    ['a fixed64 cut short', [0x3a, 0x03, 0x09, 0x01, 0x02]],
  ])('%s: the same outcome', (_name, bytes) => {
    const out = agree(Buffer.from(bytes));
    expect('error' in out).toBe(true);
  });

  it('groups nested up to the recursion limit and one past it: the same outcome, in the envelope and inside a message', () => {
    const nested = (levels: number): Buffer => (levels === 0 ? Buffer.alloc(0) : Buffer.concat([field(21, 3), nested(levels - 1), field(21, 4)]));
    const outcomes = new Set<string>();
    for (let levels = 95; levels <= 105; levels++) {
      const envelope = agree(Buffer.concat([nested(levels), body(FULL.ping)]));
      const inside = agree(field(FIELD.ping, 2, Buffer.concat([nested(levels), message(FULL.ping)])));
      outcomes.add('frame' in envelope ? 'frame' : envelope.error).add('frame' in inside ? 'frame' : inside.error);
    }
    expect([...outcomes].sort()).toEqual(['MalformedFrameError', 'frame']);
  });

  it('every decoded frame has the same shape: kind, then all nine kinds, the unset ones null', () => {
    for (const kind of KINDS) {
      const out = viaDecoder(body(FULL[kind]));
      if (!('frame' in out)) throw new Error(`${kind} did not decode`);
      expect(Object.keys(out.frame)).toEqual(['kind', ...KINDS]);
      for (const other of KINDS) if (other !== kind) expect(out.frame[other]).toBeNull();
    }
  });

  it(
    'agrees on random bodies, mutated frames and random field sequences',
    withSeed((rng) => {
      const tally = { frames: 0, malformed: 0, unknown: 0 };
      const valid = KINDS.map((k) => body(FULL[k]));
      for (let n = 0; n < 6000; n++) {
        let bytes: Buffer;
        switch (n % 4) {
          case 0:
            bytes = rng.bytes(rng.int(40));
            break;
          case 1: {
            // A valid frame (or two) with a few bytes changed, cut or inserted.
            bytes = Buffer.concat(Array.from({ length: 1 + rng.int(2) }, () => rng.pick(valid)));
            for (let m = 1 + rng.int(3); m > 0; m--) {
              const at = rng.int(bytes.length + 1);
              const op = rng.int(3);
              if (op === 0 && at < bytes.length) bytes[at] = rng.int(256);
              else if (op === 1) bytes = bytes.subarray(0, at);
              else bytes = Buffer.concat([bytes.subarray(0, at), rng.bytes(1 + rng.int(3)), bytes.subarray(at)]);
            }
            break;
          }
          case 2:
            bytes = randomFields(rng, 0);
            break;
          default:
            // A kind whose message is a random field sequence: mostly well formed, often not what the schema says.
            bytes = field(1 + rng.int(10), 2, randomFields(rng, 0));
        }
        const out = agree(bytes);
        if ('frame' in out) tally.frames++;
        else if (out.error === 'UnknownFrameError') tally.unknown++;
        else tally.malformed++;
      }
      // The generator reaches all three outcomes, or the comparison proves little.
      expect(tally.frames).toBeGreaterThan(300);
      expect(tally.malformed).toBeGreaterThan(300);
      expect(tally.unknown).toBeGreaterThan(300);
    }),
  );
});

/** A random sequence of fields of every wire type, groups and nested messages included. */
function randomFields(rng: Rng, depth: number): Buffer {
  const parts: Buffer[] = [];
  for (let n = rng.int(5); n > 0; n--) {
    const number = rng.bool(0.8) ? 1 + rng.int(12) : rng.int(40);
    const wireType = rng.bool(0.9) ? rng.pick([0, 1, 2, 2, 2, 5]) : rng.int(8);
    switch (wireType) {
      case 0:
        parts.push(field(number, 0, varint(rng.bool() ? rng.int(3) : rng.int(2 ** 32))));
        break;
      case 1:
        parts.push(field(number, 1, rng.bytes(8)));
        break;
      case 2:
        parts.push(field(number, 2, depth < 3 && rng.bool() ? randomFields(rng, depth + 1) : randomPayload(rng)));
        break;
      case 3: {
        const inner = depth < 3 ? randomFields(rng, depth + 1) : Buffer.alloc(0);
        // Now and then the end-group names another field.
        parts.push(Buffer.concat([field(number, 3), inner, field(rng.bool(0.9) ? number : number + 1, 4)]));
        break;
      }
      case 5:
        parts.push(field(number, 5, rng.bytes(4)));
        break;
      default:
        parts.push(field(number, wireType));
    }
  }
  return Buffer.concat(parts);
}

/** Text the schema's strings could hold, or random bytes. */
function randomPayload(rng: Rng): Buffer {
  return rng.bool() ? Buffer.from(rng.pick(['get', 'time/utc', 'é', ''])) : rng.bytes(rng.int(6));
}

/** mulberry32: small, fast and reproducible from its seed. */
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
    int,
    bool: (p = 0.5) => next() < p,
    pick: <T>(items: readonly T[]): T => items[int(items.length)] as T,
    bytes: (n: number) => {
      const out = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) out[i] = int(256);
      return out;
    },
  };
}
type Rng = ReturnType<typeof prng>;

/** Runs `body` with a seeded generator; a failure names the seed. */
function withSeed(body: (rng: Rng) => void): () => void {
  return () => {
    try {
      body(prng(SEED));
    } catch (err) {
      const message = `failed with FUZZ_SEED=${SEED}: ${(err as Error).message}`;
      throw Object.assign(new Error(message, { cause: err }), { stack: `${message}\n${(err as Error).stack ?? ''}` });
    }
  };
}
