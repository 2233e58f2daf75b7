/**
 * The narrow face of a pipe to one peer, as the gateway sees it: whether it
 * takes requests, who is at the other end, and sending requests and
 * notifications. `MessageExchange` (one TLS socket or in-memory duplex)
 * implements it; a peer reached another way (a client held by another
 * server instance) is just another implementation.
 */
import type { PeerInfo } from '../handler.js';
import type { OutgoingNotification, OutgoingRequest, ReplyResult } from './outgoing-calls.js';

/** Requests in flight on a pipe: sent and awaiting a reply, received and being handled, bodies streaming either way. */
export interface InFlight {
  outgoing: number;
  incoming: number;
  streams: number;
}

export interface Pipe {
  /** True while the pipe takes new requests. */
  readonly ready: boolean;
  /** Who is at the other end. */
  readonly peer: PeerInfo;
  readonly inFlight: InFlight;
  /** Sends an event to the peer's handler; resolves with its reply. */
  request(req: OutgoingRequest): Promise<ReplyResult>;
  /** Sends a fire-and-forget event; resolves once it is on its way. */
  notify(event: OutgoingNotification): Promise<void>;
}
