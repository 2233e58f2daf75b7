/** Deterministic byte streams for the streaming tests, and their SHA-256 on the other side. */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

/** `total` deterministic bytes in 256 KiB pieces; `onPush` sees each piece and the bytes produced so far. */
export function pattern(total: number, onPush?: (produced: number, piece: Buffer) => void): Readable {
  let sent = 0;
  let seed = 1;
  return new Readable({
    read() {
      if (sent >= total) return void this.push(null);
      const n = Math.min(256 * 1024, total - sent);
      const buf = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i += 4) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        buf.writeUInt32LE(seed, i);
      }
      sent += n;
      onPush?.(sent, buf);
      this.push(buf);
    },
  });
}

/** `pattern(total)`, hashed as it goes. */
export function patternSource(total: number): { stream: Readable; digest: () => string } {
  const hash = createHash('sha256');
  const stream = pattern(total, (_produced, piece) => hash.update(piece));
  return { stream, digest: () => hash.digest('hex') };
}

/** The SHA-256 (hex) and length of everything a stream yields. */
export async function sha256Of(stream: AsyncIterable<unknown>): Promise<{ hex: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const piece of stream) {
    const buf = Buffer.isBuffer(piece) ? piece : Buffer.from(piece as Uint8Array);
    hash.update(buf);
    bytes += buf.length;
  }
  return { hex: hash.digest('hex'), bytes };
}
