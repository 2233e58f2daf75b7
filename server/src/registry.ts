/**
 * The registry of connected clients, by certificate name. The gateway sends
 * to a client only through this interface, so that sharing clients between
 * several server instances (through a messaging engine) is a new
 * implementation of it, not a change to the gateway.
 */
import type { MessageExchange } from '@restpipe/shared';

export interface ClientRegistry {
  /** The exchange of the client named `name`, or undefined. */
  get(name: string): MessageExchange | undefined;
  /** Adds a connection; returns the one it replaces under the same name, if any. */
  add(name: string, exchange: MessageExchange): MessageExchange | undefined;
  /** Removes the connection if it is still the one registered under `name`. */
  remove(name: string, exchange: MessageExchange): boolean;
  /** Connected clients, by name. */
  entries(): IterableIterator<[string, MessageExchange]>;
  readonly size: number;
}

/** A registry of the clients connected to this process. */
export class LocalClientRegistry implements ClientRegistry {
  private readonly clients = new Map<string, MessageExchange>();

  get(name: string): MessageExchange | undefined {
    return this.clients.get(name);
  }

  add(name: string, exchange: MessageExchange): MessageExchange | undefined {
    const previous = this.clients.get(name);
    this.clients.set(name, exchange);
    return previous === exchange ? undefined : previous;
  }

  remove(name: string, exchange: MessageExchange): boolean {
    if (this.clients.get(name) !== exchange) return false;
    return this.clients.delete(name);
  }

  entries(): IterableIterator<[string, MessageExchange]> {
    return this.clients.entries();
  }

  get size(): number {
    return this.clients.size;
  }
}
