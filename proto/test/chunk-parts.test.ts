/**
 * FrameDecoder's `chunkParts` option: a chunk frame spread over several
 * pushed buffers is delivered as slices of those buffers, not copied into one.
 * Whatever the layout of the frame and the split of the bytes, the decoded
 * chunk is the one `Frame.decode` makes of the same bytes, and bad bytes raise
 * the same errors as without the option.
 *
 * The fuzz case uses a new seed on each run; a failure names it. Reproduce
 * with `FUZZ_SEED=<seed> npx vitest run proto/test/chunk-parts.test.ts`.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  FrameDecoder,
  FrameError,
  FrameTooLargeError,
  encodeChunkHeader,
  encodeFrame,
  wire,
  type Chunk,
  type Frame,
  type FrameInit,
  type PartedChunk,
} from '@restpipe/proto';

const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const MAX_FRAME = 1024 * 1024;
/** TLS hands over at most one 16 KiB record per read. */
const TLS_RECORD = 16 * 1024;

/** Fresh buffers (none from the shared pool) holding `bytes` cut every `size` bytes, or at the given sizes in turn. */
function split(bytes: Buffer, sizes: number | number[]): Buffer[] {
  const cuts = typeof sizes === 'number' ? [sizes] : sizes;
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.min(cuts[i % cuts.length] as number, bytes.length - at);
    const piece = Buffer.alloc(n);
    bytes.copy(piece, 0, at, at + n);
    out.push(piece);
    at += n;
  }
  return out;
}

function decode(pieces: Buffer[], chunkParts: boolean): { frames: Frame[]; error?: FrameError; decoder: FrameDecoder } {
  const frames: Frame[] = [];
  const decoder = new FrameDecoder(MAX_FRAME, (f) => frames.push(f), { chunkParts });
  try {
    for (const piece of pieces) decoder.push(piece);
  } catch (err) {
    if (!(err instanceof FrameError)) throw err;
    return { frames, error: err, decoder };
  }
  return { frames, decoder };
}

function parted(frame: Frame | undefined): PartedChunk {
  expect(frame?.kind).toBe('chunk');
  return frame?.chunk as unknown as PartedChunk;
}

/** True when `part` is a view into one of `pieces`: the data was not copied. */
function inPlace(part: Buffer, pieces: Buffer[]): boolean {
  return pieces.some((p) => p.buffer === part.buffer && part.byteOffset >= p.byteOffset && part.byteOffset + part.length <= p.byteOffset + p.length);
}

function varint(value: number, minBytes = 1): Buffer {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80 || out.length < minBytes - 1) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}

function withPrefix(body: Buffer): Buffer {
  return Buffer.concat([varint(body.length), body]);
}

function pattern(n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

/** What the generated `Frame.decode` makes of a body, in the terms the tests compare. */
function reference(body: Buffer): { error: string } | { kind: string; id?: number; end?: boolean; data?: string } {
  let frame: Frame;
  try {
    frame = wire.Frame.decode(body);
  } catch {
    return { error: 'MalformedFrameError' };
  }
  if (frame.kind === undefined) return { error: 'UnknownFrameError' };
  if (frame.kind !== 'chunk') return { kind: frame.kind };
  const chunk = frame.chunk as Chunk;
  return { kind: 'chunk', id: chunk.id, end: chunk.end, data: digest(chunk.data) };
}

/** The length and a hash of some bytes, quick to compare. */
function digest(...parts: Uint8Array[]): string {
  const hash = createHash('sha256');
  let bytes = 0;
  for (const part of parts) {
    hash.update(part);
    bytes += part.length;
  }
  return `${bytes} bytes, sha256 ${hash.digest('hex')}`;
}

/** The same terms for what a decoder delivered from one frame. */
function outcome(result: ReturnType<typeof decode>, chunkParts: boolean): ReturnType<typeof reference> {
  if (result.error) return { error: result.error.name };
  expect(result.frames).toHaveLength(1);
  const frame = result.frames[0] as Frame;
  if (frame.kind !== 'chunk') return { kind: frame.kind as string };
  if (!chunkParts) {
    const chunk = frame.chunk as Chunk;
    return { kind: 'chunk', id: chunk.id, end: chunk.end, data: digest(chunk.data) };
  }
  const chunk = parted(frame);
  expect(chunk.data).toBeNull();
  expect(chunk.bytes).toBe(chunk.parts.reduce((n, p) => n + p.length, 0));
  for (const part of chunk.parts) expect(part.length).toBeGreaterThan(0);
  return { kind: 'chunk', id: chunk.id, end: chunk.end, data: digest(...chunk.parts) };
}

describe('chunk frames in parts', () => {
  it.each([
    [1, 64 * 1024, false],
    [7, 64 * 1024, true],
    [0xfffffffe, 200_000, true],
    [128, 40_000, false],
    [3, 0, true],
  ])('encodeChunkHeader + data in 16 KiB pieces: id %i, %i bytes, end %s, delivered as slices of the pushed buffers', (id, size, end) => {
    const data = pattern(size);
    // A small frame first, so the chunk frame starts in the middle of a piece.
    const before = Buffer.concat([encodeFrame({ ping: { seq: 1 } }), encodeChunkHeader(id, size, end)]);
    const bytes = Buffer.concat([before, data, encodeFrame({ ping: { seq: 2 } })]);
    const pieces = split(bytes, TLS_RECORD);
    const { frames, error, decoder } = decode(pieces, true);
    expect(error).toBeUndefined();
    expect(frames.map((f) => f.kind)).toEqual(['ping', 'chunk', 'ping']);
    const chunk = parted(frames[1]);
    expect([chunk.id, chunk.end, chunk.bytes]).toEqual([id, end, size]);
    expect(Buffer.concat(chunk.parts).equals(data)).toBe(true);
    for (const part of chunk.parts) expect(inPlace(part, pieces)).toBe(true);
    // One part for each piece the data overlaps.
    const overlapped = pieces.filter((_, i) => i * TLS_RECORD < before.length + size && (i + 1) * TLS_RECORD > before.length).length;
    expect(chunk.parts).toHaveLength(size === 0 ? 0 : overlapped);
    expect(frames[2]?.ping?.seq).toBe(2);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('a chunk frame inside one pushed buffer: its data is the one part, a view into that buffer', () => {
    const data = pattern(1000);
    const pieces = split(Buffer.concat([encodeChunkHeader(9, data.length, false), data, encodeChunkHeader(9, 0, true)]), 1 << 20);
    const { frames } = decode(pieces, true);
    const [first, last] = [parted(frames[0]), parted(frames[1])];
    expect(first.parts).toHaveLength(1);
    expect(first.parts[0]?.equals(data)).toBe(true);
    expect(inPlace(first.parts[0] as Buffer, pieces)).toBe(true);
    expect([last.id, last.end, last.bytes, last.parts, last.data]).toEqual([9, true, 0, [], null]);
  });

  it('without the option a chunk frame over several buffers still arrives with its data in one Buffer', () => {
    const data = pattern(64 * 1024);
    const { frames } = decode(split(Buffer.concat([encodeChunkHeader(5, data.length, true), data]), TLS_RECORD), false);
    const chunk = frames[0]?.chunk as Chunk;
    expect(Buffer.isBuffer(chunk.data) && chunk.data.equals(data)).toBe(true);
    expect([chunk.id, chunk.end, 'parts' in chunk]).toEqual([5, true, false]);
  });

  it('a chunk encoded by protobufjs: without end it is split in place; with end (after the data) it is decoded whole, right all the same', () => {
    const data = pattern(50_000);
    const open = split(Buffer.from(encodeFrame({ chunk: { id: 11, data } })), TLS_RECORD);
    const openChunk = parted(decode(open, true).frames[0]);
    expect(openChunk.parts.length).toBeGreaterThan(1);
    for (const part of openChunk.parts) expect(inPlace(part, open)).toBe(true);
    const ending = split(Buffer.from(encodeFrame({ chunk: { id: 11, data, end: true } })), TLS_RECORD);
    const endChunk = parted(decode(ending, true).frames[0]);
    expect(endChunk.parts).toHaveLength(1);
    expect(inPlace(endChunk.parts[0] as Buffer, ending)).toBe(false);
    for (const [chunk, end] of [
      [openChunk, false],
      [endChunk, true],
    ] as const) {
      expect([chunk.id, chunk.end, chunk.bytes]).toEqual([11, end, data.length]);
      expect(Buffer.concat(chunk.parts).equals(data)).toBe(true);
    }
  });

  it('a chunk frame arriving in tiny pieces is copied into one part, not kept as thousands of slices', () => {
    const data = pattern(20_000);
    const pieces = split(Buffer.concat([encodeChunkHeader(1, data.length, false), data]), 100);
    const chunk = parted(decode(pieces, true).frames[0]);
    expect(chunk.parts).toHaveLength(1);
    expect(chunk.parts[0]?.equals(data)).toBe(true);
  });

  const data = pattern(30_000, 7);
  const chunkField = (fields: Buffer[]): Buffer => Buffer.concat([Buffer.from([0x22]), varint(Buffer.concat(fields).length), ...fields]);
  const id = (n: number, bytes = 1) => Buffer.concat([Buffer.from([0x08]), varint(n, bytes)]);
  const endFlag = (raw: number[]) => Buffer.from([0x18, ...raw]);
  const dataField = (d: Buffer) => Buffer.concat([Buffer.from([0x12]), varint(d.length), d]);
  it.each([
    ['end before id', 'parts', chunkField([endFlag([1]), id(42), dataField(data)])],
    ['id and end repeated (the last counts)', 'parts', chunkField([id(1), endFlag([1]), id(42), endFlag([0]), dataField(data)])],
    ['an id of 5 varint bytes', 'parts', chunkField([id(42, 5), dataField(data)])],
    ['an id of 6 varint bytes', 'whole', chunkField([id(42, 6), dataField(data)])],
    ['an id whose fifth byte has bits over 32', 'whole', chunkField([Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0x7f]), dataField(data)])],
    ['an end flag of 2', 'parts', chunkField([id(42), endFlag([2]), dataField(data)])],
    ['an end flag in 2 varint bytes', 'whole', chunkField([id(42), endFlag([0x81, 0x00]), dataField(data)])],
    ['an end flag whose varint runs on into the data tag', 'whole', chunkField([id(42), endFlag([0x80]), dataField(data)])],
    ['an unknown field in the chunk', 'whole', chunkField([id(42), Buffer.from([0x20, 0x05]), dataField(data)])],
    ['a data length of 5 varint bytes', 'parts', chunkField([id(42), Buffer.concat([Buffer.from([0x12]), varint(data.length, 5), data])])],
    ['data twice (the last counts)', 'whole', chunkField([id(42), dataField(pattern(20)), dataField(data)])],
    ['data, then end', 'whole', chunkField([id(42), dataField(data), endFlag([1])])],
    ['no id', 'parts', chunkField([endFlag([1]), dataField(data)])],
    ['an unknown field before the chunk', 'whole', Buffer.concat([Buffer.from([0x78, 0x01]), chunkField([id(42), dataField(data)])])],
    [
      'a ping after the chunk (the ping wins)',
      'whole',
      Buffer.concat([chunkField([id(42), dataField(data)]), Buffer.from(encodeFrame({ ping: { seq: 3 } })).subarray(1)]),
    ],
    ['the chunk twice (merged)', 'whole', Buffer.concat([chunkField([endFlag([1])]), chunkField([id(42), dataField(data)])])],
    ['a chunk length one short of the frame', 'whole', Buffer.concat([chunkField([id(42), dataField(data)]), Buffer.from([0x00])])],
    ['a chunk length over the frame', 'whole', Buffer.concat([Buffer.from([0x22]), varint(data.length + 4), id(42), dataField(data)])],
    [
      'a data length over the chunk',
      'whole',
      Buffer.concat([Buffer.from([0x22]), varint(data.length + 4), id(42), Buffer.from([0x12]), varint(data.length + 1), data]),
    ],
    ['a length of more than 32 bits', 'whole', Buffer.concat([Buffer.from([0x22, 0xff, 0xff, 0xff, 0xff, 0x7f]), id(42), dataField(data)])],
  ] as const)('%s: decoded %s, the chunk Frame.decode makes of the same bytes, or the same error', (_name, path, body) => {
    const want = reference(body);
    for (const pieceBytes of [TLS_RECORD, 8000, 1 << 20]) {
      const pieces = split(withPrefix(body), pieceBytes);
      const withParts = decode(pieces, true);
      expect(outcome(withParts, true)).toEqual(want);
      expect(outcome(decode(pieces, false), false)).toEqual(want);
      const frame = withParts.frames[0];
      if (pieceBytes === TLS_RECORD && frame?.kind === 'chunk') {
        const { parts } = parted(frame);
        expect(parts.length > 1 && parts.every((p) => inPlace(p, pieces)) ? 'parts' : 'whole').toBe(path);
      }
    }
  });

  it('refuses an oversized chunk frame on its length prefix, before buffering any of it', () => {
    const header = encodeChunkHeader(1, 2 * MAX_FRAME, false, 4 * MAX_FRAME);
    const { error, frames, decoder } = decode([header.subarray(0, 4), header.subarray(4), pattern(TLS_RECORD)], true);
    expect(error).toBeInstanceOf(FrameTooLargeError);
    expect(frames).toHaveLength(0);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('an error thrown by the frame callback for a chunk in parts stops the decoder', () => {
    const bytes = Buffer.concat([encodeChunkHeader(1, 40_000, false), pattern(40_000), encodeFrame({ ping: { seq: 1 } })]);
    let calls = 0;
    const decoder = new FrameDecoder(
      MAX_FRAME,
      () => {
        calls++;
        throw new Error('no stream 1');
      },
      { chunkParts: true },
    );
    const pieces = split(bytes, TLS_RECORD);
    expect(() => {
      for (const piece of pieces) decoder.push(piece);
    }).toThrow('no stream 1');
    expect([calls, decoder.bufferedBytes]).toEqual([1, 0]);
    decoder.push(Buffer.from(encodeFrame({ ping: { seq: 2 } })));
    expect(calls).toBe(1);
  });

  it('a stream of frames: small ones, streamed chunks, a final chunk, all in order, whatever the split', () => {
    const frames: FrameInit[] = [];
    const wireBytes: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      frames.push({ request: { id: i, verb: 'post', noun: 'sink', streaming: true } });
      wireBytes.push(Buffer.from(encodeFrame(frames.at(-1) as FrameInit)));
      const d = pattern(i % 3 === 0 ? 64 * 1024 : 1 + i * 997, i);
      frames.push({ chunk: { id: i, data: d, end: i % 2 === 0 } });
      wireBytes.push(encodeChunkHeader(i, d.length, i % 2 === 0), d);
      frames.push({ credit: { id: i, bytes: 4096 } });
      wireBytes.push(Buffer.from(encodeFrame(frames.at(-1) as FrameInit)));
    }
    const all = Buffer.concat(wireBytes);
    for (const cuts of [TLS_RECORD, [TLS_RECORD, 5, 3000, 1], 1 << 20, [7000, 13, 16000]]) {
      const { frames: got, error, decoder } = decode(split(all, cuts), true);
      expect(error).toBeUndefined();
      expect(got.map((f) => f.kind)).toEqual(frames.map((f) => Object.keys(f)[0]));
      for (const [i, f] of got.entries()) {
        const init = frames[i] as FrameInit;
        if (f.kind !== 'chunk') {
          expect(f[f.kind as 'request']?.id).toBe(init.request?.id ?? init.credit?.id);
          continue;
        }
        const chunk = parted(f);
        expect([chunk.id, chunk.end]).toEqual([init.chunk?.id, init.chunk?.end]);
        expect(Buffer.concat(chunk.parts).equals(init.chunk?.data as Buffer)).toBe(true);
      }
      expect(decoder.bufferedBytes).toBe(0);
    }
  });

  it(
    'random chunk layouts, corruptions and splits: the same outcome as Frame.decode, with and without the option',
    withSeed((rng) => {
      const tally = { parted: 0, whole: 0, errors: 0 };
      for (let n = 0; n < 500; n++) {
        const body = randomChunkBody(rng);
        const want = reference(body);
        const cut = rng.pick([TLS_RECORD, TLS_RECORD, 1 + rng.int(20_000), 1 + rng.int(64)]);
        const pieces = split(
          withPrefix(body),
          Array.from({ length: 8 }, () => (rng.bool(0.7) ? cut : 1 + rng.int(cut))),
        );
        const withParts = decode(pieces, true);
        expect(outcome(withParts, true)).toEqual(want);
        expect(outcome(decode(pieces, false), false)).toEqual(want);
        if ('error' in want) tally.errors++;
        else if (
          withParts.frames[0]?.kind === 'chunk' &&
          parted(withParts.frames[0]).parts.every((p) => inPlace(p, pieces)) &&
          parted(withParts.frames[0]).parts.length > 1
        )
          tally.parted++;
        else tally.whole++;
      }
      // Each path is taken often enough to mean something.
      expect(tally.parted).toBeGreaterThan(50);
      expect(tally.whole).toBeGreaterThan(50);
      expect(tally.errors).toBeGreaterThan(50);
    }),
  );
});

/** A chunk frame body: usually the simple layout, often another order or encoding, sometimes corrupted. */
function randomChunkBody(rng: Rng): Buffer {
  const data = pattern(rng.bool(0.3) ? rng.int(100) : rng.int(100_000), rng.int(256));
  const fields: Buffer[] = [];
  // Mostly id and end, sometimes padded; now and then an unknown field or an earlier data field.
  const extra = (): Buffer => {
    const pick = rng.int(10);
    if (pick < 4) return Buffer.concat([Buffer.from([0x08]), varint(rng.int(2 ** 32), rng.bool(0.2) ? 1 + rng.int(7) : 1)]);
    if (pick < 8) return Buffer.from(rng.bool(0.8) ? [0x18, rng.int(3)] : [0x18, 0x81, 0x00]);
    if (pick < 9) return Buffer.from([0x20, rng.int(128)]);
    return Buffer.concat([Buffer.from([0x12]), varint(3), pattern(3)]);
  };
  for (let k = rng.int(4); k > 0; k--) fields.push(extra());
  fields.push(Buffer.concat([Buffer.from([0x12]), varint(data.length, rng.bool(0.1) ? 5 : 1), data]));
  if (rng.bool(0.15)) fields.push(extra());
  const chunk = Buffer.concat(fields);
  let body = Buffer.concat([Buffer.from([0x22]), varint(chunk.length, rng.bool(0.1) ? 4 : 1), chunk]);
  if (rng.bool(0.1)) body = Buffer.concat([Buffer.from([0x78, rng.int(128)]), body]);
  if (rng.bool(0.2)) {
    // Corrupt a byte of the header, or cut the body short, or add a byte.
    const op = rng.int(3);
    body = Buffer.from(body);
    if (op === 0) body[rng.int(Math.min(body.length, 16))] = rng.int(256);
    else if (op === 1) body = body.subarray(0, rng.int(body.length));
    else body = Buffer.concat([body, Buffer.from([rng.int(256)])]);
  }
  return body;
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
  return { int, bool: (p = 0.5) => next() < p, pick: <T>(items: readonly T[]): T => items[int(items.length)] as T };
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
