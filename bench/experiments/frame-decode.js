#!/usr/bin/env node
// Experiment behind proposals #2 and #9 in docs/benchmarks.md: the receiving
// side's frame decoding alone, in one process, old and new side by side in the
// same run. Not part of `npm run bench`. Build first (npm run build).
//   node bench/experiments/frame-decode.js [rounds]
//
// Two workloads, each cut into 16 KiB pieces as a TLS socket delivers them:
//   small:  request and reply frames as the gateway and the dispatcher make them
//   stream: 64 KiB chunk frames (encodeChunkHeader + data, as the sender writes
//           them), a credit frame after every 8
// Three decoders:
//   old:          the decoder before the change (Buffer.concat, then the generated Frame.decode)
//   new:          FrameDecoder as it is now (envelope decoded by hand, chunk data in one Buffer)
//   new + parts:  FrameDecoder with { chunkParts: true } (chunk data as slices of the pieces)
import { performance } from 'node:perf_hooks';
import { DEFAULT_MAX_FRAME_BYTES, FrameDecoder, encodeChunkHeader, encodeFrame, wire } from '@restpipe/proto';

const ROUNDS = Number(process.argv[2] ?? 7);
const PIECE = 16 * 1024;
const CHUNK = 64 * 1024;
const MiB = 1024 * 1024;
/** Time spent on each decoder per workload per round. */
const SLICE_MS = 700;

/** The decoder as it was before the change, kept here only to measure against. */
class OldFrameDecoder {
  chunks = [];
  buffered = 0;
  need = -1;
  prefixBytes = 0;

  constructor(maxFrameBytes, onFrame) {
    this.maxFrameBytes = maxFrameBytes;
    this.onFrame = onFrame;
  }

  push(chunk) {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.need < 0 && !this.readPrefix()) return;
      const total = this.prefixBytes + this.need;
      if (this.buffered < total) return;
      let head = this.chunks[0];
      if (head.length < total) {
        head = Buffer.concat(this.chunks, this.buffered);
        this.chunks = [head];
      }
      const body = head.subarray(this.prefixBytes, total);
      if (head.length === total) this.chunks.shift();
      else this.chunks[0] = head.subarray(total);
      this.buffered -= total;
      this.need = -1;
      const frame = wire.Frame.decode(body);
      if (frame.kind === undefined) throw new Error('unknown frame');
      this.onFrame(frame);
    }
  }

  readPrefix() {
    let value = 0;
    let shift = 0;
    let i = 0;
    for (const chunk of this.chunks) {
      for (let j = 0; j < chunk.length; j++) {
        const byte = chunk[j];
        value += (byte & 0x7f) * 2 ** shift;
        i++;
        if ((byte & 0x80) === 0) {
          if (value > this.maxFrameBytes) throw new Error('frame too large');
          this.need = value;
          this.prefixBytes = i;
          return true;
        }
        shift += 7;
        if (i >= 5) throw new Error('bad prefix');
      }
    }
    return false;
  }
}

function pieces(bytes) {
  const out = [];
  for (let at = 0; at < bytes.length; at += PIECE) out.push(Buffer.from(bytes.subarray(at, at + PIECE)));
  return out;
}

function smallWorkload() {
  const frames = [];
  for (let id = 1; id <= 2000; id += 2) {
    frames.push(
      encodeFrame({
        request: {
          id,
          verb: 'get',
          noun: 'time/utc',
          headers: [
            { name: 'host', value: '127.0.0.1:8443' },
            { name: 'user-agent', value: 'autocannon/8.0.0' },
            { name: 'accept', value: '*/*' },
          ],
          deadlineMs: 30_000,
        },
      }),
      encodeFrame({
        reply: { id, code: 0, mimetype: 'application/json', body: Buffer.from(`{"utc":"2025-01-01T00:00:${String(id % 60).padStart(2, '0')}.000Z"}`) },
      }),
    );
  }
  const bytes = Buffer.concat(frames);
  return { name: 'small', frames: frames.length, bytes: bytes.length, pieces: pieces(bytes) };
}

function streamWorkload() {
  const parts = [];
  let frames = 0;
  const data = Buffer.alloc(CHUNK, 0x5a);
  for (let i = 0; i < 256; i++) {
    parts.push(encodeChunkHeader(3, CHUNK, i === 255), data);
    frames++;
    if (i % 8 === 7) {
      parts.push(encodeFrame({ credit: { id: 4, bytes: 8 * CHUNK } }));
      frames++;
    }
  }
  const bytes = Buffer.concat(parts);
  return { name: 'stream', frames, bytes: bytes.length, pieces: pieces(bytes) };
}

const decoders = {
  old: (onFrame) => new OldFrameDecoder(DEFAULT_MAX_FRAME_BYTES, onFrame),
  new: (onFrame) => new FrameDecoder(DEFAULT_MAX_FRAME_BYTES, onFrame),
  'new + parts': (onFrame) => new FrameDecoder(DEFAULT_MAX_FRAME_BYTES, onFrame, { chunkParts: true }),
};

/**
 * Decodes the workload over and over for about SLICE_MS; frames and MiB per
 * second of this process's CPU time (user + system, GC threads included), which
 * other processes on a busy machine disturb less than the wall clock does.
 */
function measure(make, workload) {
  let seen = 0;
  let dataBytes = 0;
  // What a receiver does at least: look at the kind and at the chunk's data.
  const onFrame = (frame) => {
    seen++;
    if (frame.kind === 'chunk') dataBytes += frame.chunk.parts ? frame.chunk.bytes : frame.chunk.data.length;
    else if (frame.kind === 'request') dataBytes += frame.request.noun.length;
  };
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  let passes = 0;
  while (performance.now() - start < SLICE_MS) {
    const decoder = make(onFrame);
    for (const piece of workload.pieces) decoder.push(piece);
    passes++;
  }
  const cpu = process.cpuUsage(cpu0);
  const seconds = (cpu.user + cpu.system) / 1e6;
  if (seen !== passes * workload.frames || dataBytes === 0) throw new Error(`decoded ${seen} frames, expected ${passes * workload.frames}`);
  return { framesPerSec: (passes * workload.frames) / seconds, mibPerSec: (passes * workload.bytes) / MiB / seconds };
}

const workloads = [smallWorkload(), streamWorkload()];
const names = Object.keys(decoders);
const results = new Map(workloads.map((w) => [w.name, new Map(names.map((n) => [n, []]))]));
console.log(`frame decoding, ${ROUNDS} rounds of ${SLICE_MS} ms per decoder and workload, node ${process.version}; rates per CPU second`);
for (const w of workloads) console.log(`  ${w.name}: ${w.frames} frames, ${(w.bytes / MiB).toFixed(2)} MiB, in ${w.pieces.length} pieces of ≤16 KiB`);
// Warm up every path before measuring.
for (const w of workloads) {
  for (const n of names) {
    for (let i = 0; i < 3; i++) {
      const decoder = decoders[n](() => {});
      for (const p of w.pieces) decoder.push(p);
    }
  }
}
for (let round = 1; round <= ROUNDS; round++) {
  // A different order in each round, so no decoder always runs first after the other's garbage.
  const order = names.map((_, i) => names[(i + round) % names.length]);
  for (const w of workloads) {
    for (const n of order) results.get(w.name).get(n).push(measure(decoders[n], w));
  }
  const line = workloads.map((w) => `${w.name}: ${names.map((n) => `${n} ${fmt(results.get(w.name).get(n).at(-1), w.name)}`).join(', ')}`).join(' | ');
  console.log(`round ${round}: ${line}`);
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function fmt(r, workload) {
  return workload === 'small' ? `${Math.round(r.framesPerSec / 1000)}k frames/s` : `${Math.round(r.mibPerSec)} MiB/s`;
}

console.log('\nmedians:');
console.log(`${'workload'.padEnd(8)} ${names.map((n) => n.padStart(28)).join('')}`);
for (const w of workloads) {
  const cells = names.map((n) => {
    const rs = results.get(w.name).get(n);
    const f = median(rs.map((r) => r.framesPerSec));
    const m = median(rs.map((r) => r.mibPerSec));
    return `${Math.round(f).toLocaleString('en')} fr/s ${m.toFixed(0)} MiB/s`.padStart(28);
  });
  console.log(`${w.name.padEnd(8)} ${cells.join('')}`);
}
const base = (w) =>
  median(
    results
      .get(w)
      .get('old')
      .map((r) => r.framesPerSec),
  );
for (const w of workloads) {
  const ratios = names.slice(1).map(
    (n) =>
      `${n} ${(
        median(
          results
            .get(w.name)
            .get(n)
            .map((r) => r.framesPerSec),
        ) / base(w.name)
      ).toFixed(2)}×`,
  );
  console.log(`${w.name}: vs old: ${ratios.join(', ')}`);
}
