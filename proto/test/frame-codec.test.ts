/**
 * The frame codec: length-delimited `Frame`s survive any split of the byte
 * stream, and the size limit is enforced on the length prefix, before a byte
 * of the body is buffered.
 */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_FRAME_BYTES,
  FrameDecoder,
  FrameError,
  FrameTooLargeError,
  MalformedFrameError,
  PROTOCOL_VERSION,
  UnknownFrameError,
  encodeFrame,
  encodeChunkHeader,
  type Frame,
  type FrameInit,
} from '@restpipe/proto';

/** One frame of every kind, every field set. */
const SAMPLES: Record<NonNullable<Frame['kind']>, FrameInit> = {
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

const KINDS = Object.keys(SAMPLES) as Array<keyof typeof SAMPLES>;
/** Plain data for comparison: bytes as arrays of numbers, 64-bit Longs as numbers, messages as their own fields. */
function norm(value: unknown): unknown {
  if (value instanceof Uint8Array) return [...value];
  if (value !== null && typeof value === 'object' && typeof (value as { toNumber?: unknown }).toNumber === 'function') return Number(value);
  if (Array.isArray(value)) return value.map(norm);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.keys(value).map((k) => [k, norm((value as Record<string, unknown>)[k])]));
  return value;
}

/** The fields of `frame` that its kind's sample sets, as plain data. */
function fieldsLike(frame: Frame, kind: keyof typeof SAMPLES): unknown {
  const inner = frame[kind] as unknown as Record<string, unknown>;
  const sample = SAMPLES[kind][kind] as Record<string, unknown>;
  return Object.fromEntries(Object.keys(sample).map((k) => [k, norm(inner[k])]));
}

function collect(max = DEFAULT_MAX_FRAME_BYTES): { decoder: FrameDecoder; frames: Frame[] } {
  const frames: Frame[] = [];
  return { decoder: new FrameDecoder(max, (f) => frames.push(f)), frames };
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

function thrown(fn: () => void): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('round trip', () => {
  it.each(KINDS)('%s: every field survives encode and decode', (kind) => {
    const { decoder, frames } = collect();
    decoder.push(Buffer.from(encodeFrame(SAMPLES[kind])));
    expect(frames).toHaveLength(1);
    const [frame] = frames as [Frame];
    expect(frame.kind).toBe(kind);
    expect(fieldsLike(frame, kind)).toEqual(norm(SAMPLES[kind][kind]));
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('keeps the values that matter exactly: 32-bit ids, negative and 64-bit lengths, raw bytes, unicode', () => {
    const { decoder, frames } = collect();
    decoder.push(Buffer.concat([encodeFrame(SAMPLES.request), encodeFrame(SAMPLES.reply), encodeFrame(SAMPLES.chunk)]));
    const [req, rep, chunk] = frames as [Frame, Frame, Frame];
    expect(req.request?.id).toBe(4_294_967_295);
    expect(Number(req.request?.contentLength)).toBe(-1);
    expect(req.request?.args).toEqual(['hello ', 'wörld', '']);
    expect(Buffer.from(req.request!.body!).toString()).toBe('{"a":1}');
    expect(Number(rep.reply?.contentLength)).toBe(123_456_789_012);
    expect([...rep.reply!.body!]).toEqual([0, 1, 2, 255]);
    expect(Buffer.from(chunk.chunk!.data!).equals(Buffer.alloc(1000, 0xab))).toBe(true);
    expect(chunk.chunk?.end).toBe(true);
  });

  it('decodes a frame split byte by byte', () => {
    const all = Buffer.concat(KINDS.map((k) => encodeFrame(SAMPLES[k])));
    const { decoder, frames } = collect();
    for (let i = 0; i < all.length; i++) {
      decoder.push(all.subarray(i, i + 1));
      expect(decoder.bufferedBytes).toBeLessThanOrEqual(all.length);
    }
    expect(frames.map((f) => f.kind)).toEqual(KINDS);
    expect(frames.map((f, i) => fieldsLike(f, KINDS[i]!))).toEqual(KINDS.map((k) => norm(SAMPLES[k][k])));
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('decodes many frames in one push, in order', () => {
    const many = Array.from({ length: 2000 }, (_, i) => encodeFrame({ ping: { seq: i } }));
    const { decoder, frames } = collect();
    decoder.push(Buffer.concat(many));
    expect(frames).toHaveLength(2000);
    expect(frames.map((f) => f.ping?.seq)).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('decodes whatever the split points: frames, then a partial one held until its rest arrives', () => {
    const a = Buffer.from(encodeFrame(SAMPLES.hello));
    const b = Buffer.from(encodeFrame(SAMPLES.chunk));
    const { decoder, frames } = collect();
    // All of a and the first 10 bytes of b.
    decoder.push(Buffer.concat([a, b.subarray(0, 10)]));
    expect(frames.map((f) => f.kind)).toEqual(['hello']);
    expect(decoder.bufferedBytes).toBe(10);
    decoder.push(b.subarray(10, 500));
    expect(frames).toHaveLength(1);
    decoder.push(b.subarray(500));
    expect(frames.map((f) => f.kind)).toEqual(['hello', 'chunk']);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('ignores an empty push', () => {
    const { decoder, frames } = collect();
    decoder.push(Buffer.alloc(0));
    expect(frames).toHaveLength(0);
    expect(decoder.bufferedBytes).toBe(0);
  });
});

describe('size limit', () => {
  it('refuses a 1 GiB frame on its 5 prefix bytes alone, before any body arrives', () => {
    const prefix = varint(2 ** 30);
    expect(prefix).toHaveLength(5);
    const { decoder, frames } = collect(64 * 1024);
    const err = thrown(() => decoder.push(prefix));
    expect(err).toBeInstanceOf(FrameTooLargeError);
    expect(err).toMatchObject({ code: 'RP_FRAME_TOO_LARGE', frameBytes: 2 ** 30, maxFrameBytes: 64 * 1024 });
    expect(decoder.bufferedBytes).toBe(0);
    expect(frames).toHaveLength(0);
  });

  it('refuses the prefix when its last byte arrives, pushed byte by byte', () => {
    const prefix = varint(2 ** 30);
    const { decoder } = collect(64 * 1024);
    for (let i = 0; i < prefix.length - 1; i++) decoder.push(prefix.subarray(i, i + 1));
    expect(decoder.bufferedBytes).toBe(prefix.length - 1);
    expect(thrown(() => decoder.push(prefix.subarray(prefix.length - 1)))).toBeInstanceOf(FrameTooLargeError);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('refuses a declared length of maximum + 1 and accepts exactly the maximum', () => {
    const max = 4096;
    const exact = encodeFrame({ chunk: { id: 1, data: Buffer.alloc(4000) } }, max);
    const bodyLength = exact.length - varint(exact.length).length;
    // Build a frame whose body is exactly `max` bytes: pad the chunk data.
    const atMax = Buffer.from(encodeFrame({ chunk: { id: 1, data: Buffer.alloc(4000 + (max - bodyLength)) } }, max));
    const { decoder, frames } = collect(max);
    decoder.push(atMax);
    expect(frames).toHaveLength(1);
    const over = collect(max);
    expect(thrown(() => over.decoder.push(Buffer.concat([varint(max + 1), Buffer.alloc(10)])))).toBeInstanceOf(FrameTooLargeError);
  });

  it('encodeFrame refuses a frame over the limit and accepts one at it', () => {
    const err = thrown(() => encodeFrame({ chunk: { id: 1, data: Buffer.alloc(2000) } }, 1024));
    expect(err).toBeInstanceOf(FrameTooLargeError);
    expect(err).toMatchObject({ code: 'RP_FRAME_TOO_LARGE', maxFrameBytes: 1024 });
    expect((err as FrameTooLargeError).frameBytes).toBeGreaterThan(2000);
    const small = encodeFrame({ chunk: { id: 1, data: Buffer.alloc(100) } }, 1024);
    const { decoder, frames } = collect(1024);
    decoder.push(Buffer.from(small));
    expect(frames).toHaveLength(1);
  });

  it('encodeFrame uses the 16 MiB default limit', () => {
    expect(DEFAULT_MAX_FRAME_BYTES).toBe(16 * 1024 * 1024);
    expect(thrown(() => encodeFrame({ chunk: { id: 1, data: Buffer.alloc(DEFAULT_MAX_FRAME_BYTES) } }))).toBeInstanceOf(FrameTooLargeError);
  });
});

describe('bad input', () => {
  it('a zero-length frame is an UnknownFrameError', () => {
    const { decoder, frames } = collect();
    const err = thrown(() => decoder.push(Buffer.from([0x00])));
    expect(err).toBeInstanceOf(UnknownFrameError);
    expect(err).toMatchObject({ code: 'RP_FRAME_UNKNOWN' });
    expect(frames).toHaveLength(0);
  });

  it('a frame holding only an unknown field (15) is an UnknownFrameError', () => {
    const { decoder } = collect();
    expect(thrown(() => decoder.push(Buffer.from([0x02, 0x78, 0x01])))).toBeInstanceOf(UnknownFrameError);
  });

  it('an unknown field next to a known kind is ignored (fields are only ever added)', () => {
    const { decoder, frames } = collect();
    const ping = Buffer.from(encodeFrame({ ping: { seq: 5 } })).subarray(1);
    const body = Buffer.concat([Buffer.from([0x78, 0x01]), ping]);
    decoder.push(Buffer.concat([varint(body.length), body]));
    expect(frames.map((f) => [f.kind, f.ping?.seq])).toEqual([['ping', 5]]);
  });

  it.each([
    ['a length-delimited field longer than the frame', [0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01]],
    ['wire type 7', [0x0f, 0x00]],
    ['a truncated varint field', [0x3a, 0x02, 0x08, 0xff]],
    ['an end-group with no start', [0x0c]],
  ])('%s is a MalformedFrameError', (_name, body) => {
    const { decoder } = collect();
    const err = thrown(() => decoder.push(Buffer.concat([varint(body.length), Buffer.from(body)])));
    expect(err).toBeInstanceOf(MalformedFrameError);
    expect(err).toMatchObject({ code: 'RP_FRAME_MALFORMED' });
  });

  it('a length prefix of more than 5 varint bytes is a MalformedFrameError', () => {
    const { decoder } = collect();
    const err = thrown(() => decoder.push(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x00])));
    expect(err).toBeInstanceOf(MalformedFrameError);
  });

  it('every codec error is a FrameError with a stable code and a name', () => {
    for (const err of [new FrameTooLargeError(2, 1), new MalformedFrameError('x'), new UnknownFrameError()]) {
      expect(err).toBeInstanceOf(FrameError);
      expect(err).toBeInstanceOf(Error);
      expect(err.code).toMatch(/^RP_FRAME_/);
      expect(err.name).toBe(err.constructor.name);
    }
  });

  it('after an error the decoder drops everything and ignores later input', () => {
    const { decoder, frames } = collect(1024);
    expect(thrown(() => decoder.push(Buffer.concat([varint(1 << 20), Buffer.alloc(100)])))).toBeInstanceOf(FrameTooLargeError);
    expect(decoder.bufferedBytes).toBe(0);
    expect(() => decoder.push(Buffer.from(encodeFrame({ ping: { seq: 1 } })))).not.toThrow();
    expect(frames).toHaveLength(0);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('frames before the bad one in the same push are delivered; nothing after it', () => {
    const { decoder, frames } = collect();
    const push = Buffer.concat([encodeFrame({ ping: { seq: 1 } }), encodeFrame({ ping: { seq: 2 } }), Buffer.from([0x00]), encodeFrame({ ping: { seq: 3 } })]);
    expect(thrown(() => decoder.push(push))).toBeInstanceOf(UnknownFrameError);
    expect(frames.map((f) => f.ping?.seq)).toEqual([1, 2]);
  });

  it('an error thrown by the frame callback stops the decoder and reaches the caller', () => {
    let calls = 0;
    const boom = new Error('protocol violation');
    const decoder = new FrameDecoder(1024, () => {
      calls++;
      throw boom;
    });
    const two = Buffer.concat([encodeFrame({ ping: { seq: 1 } }), encodeFrame({ ping: { seq: 2 } })]);
    expect(thrown(() => decoder.push(two))).toBe(boom);
    expect(calls).toBe(1);
    expect(decoder.bufferedBytes).toBe(0);
    decoder.push(two);
    expect(calls).toBe(1);
  });
});

describe('strings the encoder cannot carry as they are', () => {
  it.each(['text/\ud800plain', 'x\udc00', '\ud83d', 'ok 🙂 \udfff'])('encodeFrame never produces a frame its own decoder refuses (%j)', (text) => {
    const { decoder, frames } = collect();
    decoder.push(Buffer.from(encodeFrame({ reply: { id: 1, code: 0, mimetype: text, headers: [{ name: text, value: text }] } })));
    decoder.push(Buffer.from(encodeFrame({ cancel: { id: 1, reason: text } })));
    expect(frames.map((f) => f.kind)).toEqual(['reply', 'cancel']);
    expect(frames[0]?.reply?.mimetype).toBe(text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd'));
  });
});

describe('encodeChunkHeader', () => {
  it.each([
    [1, 0, true],
    [1, 5, false],
    [127, 300, true],
    [128, 65536, false],
    [0xfffffffe, 70000, true],
  ])('header + data decodes as the Chunk frame encodeFrame makes (id %i, %i bytes, end %s)', (id, size, end) => {
    const data = Buffer.alloc(size, 0xab);
    const fast = Buffer.concat([encodeChunkHeader(id, size, end), data]);
    const frames: Frame[] = [];
    const decoder = new FrameDecoder(1024 * 1024, (f) => frames.push(f));
    decoder.push(fast);
    decoder.push(Buffer.from(encodeFrame({ chunk: { id, data, end } })));
    expect(frames).toHaveLength(2);
    for (const f of frames) {
      expect(f.kind).toBe('chunk');
      expect(f.chunk?.id).toBe(id);
      expect(f.chunk?.end ?? false).toBe(end);
      expect(Buffer.from(f.chunk?.data ?? []).equals(data)).toBe(true);
    }
    if (!end) expect(fast.equals(Buffer.from(encodeFrame({ chunk: { id, data, end } })))).toBe(true);
  });

  it('refuses a chunk over the frame limit', () => {
    expect(() => encodeChunkHeader(1, 2000, false, 1024)).toThrow(FrameTooLargeError);
  });
});
