// Bench bodies: `blobStream(n)` yields n bytes in 256 KiB slices of one shared
// buffer (nothing proportional to n is held); `blob(n)` is one cached buffer,
// for builds without streamed bodies.
import { Readable } from 'node:stream';

const SLICE = 256 * 1024;
const pattern = Buffer.alloc(SLICE);
for (let i = 0; i < SLICE; i += 16) pattern.write('restpipe-bench-\n', i, 'latin1');

export function blobStream(bytes) {
  if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`bad blob size ${bytes}`);
  return Readable.from(
    (function* () {
      for (let left = bytes; left > 0; left -= SLICE) yield left >= SLICE ? pattern : pattern.subarray(0, left);
    })(),
    { objectMode: false },
  );
}

const cache = new Map();
export function blob(bytes) {
  if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`bad blob size ${bytes}`);
  let b = cache.get(bytes);
  if (!b) {
    b = Buffer.allocUnsafe(bytes);
    for (let i = 0; i < bytes; i += SLICE) pattern.copy(b, i, 0, Math.min(SLICE, bytes - i));
    cache.clear();
    cache.set(bytes, b);
  }
  return b;
}

/** Counts a body's bytes: the stream when there is one, else the buffer. */
export async function countBody(post) {
  if (post.stream) {
    let n = 0;
    for await (const c of post.stream) n += c.length;
    return n;
  }
  return post.body?.length ?? 0;
}
