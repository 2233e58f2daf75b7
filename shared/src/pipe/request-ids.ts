/**
 * Request ids of one exchange. Each side numbers its own requests, so ids
 * never collide: the client's are odd, the server's even. Ids wrap before
 * 2^32 (the wire's uint32) and skip any still in flight.
 */

/** Which end of the pipe this exchange is: clients number requests odd, the server even. */
export type PipeRole = 'client' | 'server';

/** Ids stay below this (they travel as uint32). */
export const ID_LIMIT = 0x1_0000_0000;

/**
 * Ids tried before giving up. The in-flight cap keeps far fewer than this
 * in use, so a free one is always found long before; the bound only turns
 * a bug into an error instead of a spin over two billion ids.
 */
const MAX_PROBES = 1 << 21;

export class RequestIds {
  private readonly first: number;
  private readonly peerParity: number;
  private next: number;

  constructor(
    role: PipeRole,
    /** Where numbering restarts when it wraps (a test sets it near the limit). */
    start?: number,
  ) {
    this.first = role === 'client' ? 1 : 2;
    this.peerParity = role === 'client' ? 0 : 1;
    this.next = start ?? this.first;
  }

  /** A fresh id of this side's parity that `inUse` does not claim; throws `RangeError` when none is found. */
  allocate(inUse: (id: number) => boolean): number {
    for (let tries = 0; tries < MAX_PROBES; tries++) {
      const id = this.next;
      this.next += 2;
      if (this.next >= ID_LIMIT) this.next = this.first;
      if (!inUse(id)) return id;
    }
    throw new RangeError('no free request id');
  }

  /** True for ids the peer originates. */
  isPeerId(id: number): boolean {
    return id % 2 === this.peerParity;
  }
}
