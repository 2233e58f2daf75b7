/**
 * The Hello each side sends first, and what the peer's Hello tells this
 * side: its protocol version (another one is refused), the largest frame it
 * takes, and whether and with what window it takes streamed bodies.
 */
import { PROTOCOL_VERSION, type FrameInit, type Hello } from '@restpipe/proto';
import { ProtocolError } from '../errors.js';
import type { PipeLimits } from './limits.js';

/** Capability sent in Hello: this side can send and receive streamed bodies. */
export const STREAM_CAPABILITY = 'stream';

/** This side's Hello. */
export function ourHello(limits: PipeLimits, agent = 'restpipe-node'): NonNullable<FrameInit['hello']> {
  return {
    version: PROTOCOL_VERSION,
    capabilities: [STREAM_CAPABILITY],
    agent,
    maxFrameBytes: limits.maxFrameBytes,
    initialWindowBytes: limits.streamWindowBytes,
  };
}

/** What the peer's Hello allows; throws `ProtocolError` for another protocol version. */
export function peerTerms(hello: Hello): { maxFrameBytes: number; streams: boolean; windowBytes: number } {
  if (hello.version !== PROTOCOL_VERSION) {
    throw new ProtocolError(`the peer speaks protocol version ${hello.version}, this node ${PROTOCOL_VERSION}`);
  }
  return {
    maxFrameBytes: hello.maxFrameBytes,
    streams: hello.capabilities.includes(STREAM_CAPABILITY) && hello.initialWindowBytes > 0,
    windowBytes: hello.initialWindowBytes,
  };
}
