/** Frames as `DEBUG=1` logs them: the kind and small fields, bodies as their length. */
import type { FrameInit } from '@restpipe/proto';

export function describeFrame(frame: FrameInit | Record<string, unknown>): Record<string, unknown> {
  for (const [kind, value] of Object.entries(frame)) {
    if (!value || typeof value !== 'object' || kind === 'kind') continue;
    const out: Record<string, unknown> = { kind };
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (v instanceof Uint8Array) out[k] = `${v.length} bytes`;
      else if (Array.isArray(v) && k === 'parts') out[k] = `${v.length} parts`;
      else if (k !== 'headers') out[k] = v;
    }
    return out;
  }
  return { kind: 'unknown' };
}
