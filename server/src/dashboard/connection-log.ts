/**
 * The dashboard's memory of connections: the last connection events, and the
 * clients that disconnected recently and have not come back. Both bounded.
 */
import type { ClientConnectionEvent } from '../status-routes.js';

export interface DisconnectedClient {
  name: string;
  address: string | null;
  /** When it disconnected (ISO 8601). */
  time: string;
}

export class ConnectionLog {
  private readonly events: ClientConnectionEvent[] = [];
  /** Insertion order is disconnection order, oldest first. */
  private readonly gone = new Map<string, DisconnectedClient>();

  constructor(
    private readonly maxEvents = 50,
    private readonly maxDisconnected = 100,
  ) {}

  /**
   * Records an event. `stillConnected` says whether a client of that name is
   * registered after a disconnect (its connection was replaced by a newer one).
   */
  add(event: ClientConnectionEvent, stillConnected: boolean): void {
    this.events.unshift({ ...event });
    if (this.events.length > this.maxEvents) this.events.length = this.maxEvents;
    if (event.type === 'connected' || stillConnected) {
      this.gone.delete(event.name);
      return;
    }
    this.gone.delete(event.name);
    this.gone.set(event.name, { name: event.name, address: event.address ?? null, time: event.time });
    if (this.gone.size > this.maxDisconnected) {
      const oldest = this.gone.keys().next().value;
      if (oldest !== undefined) this.gone.delete(oldest);
    }
  }

  /** Newest first. */
  recentEvents(): ClientConnectionEvent[] {
    return this.events.map((e) => ({ ...e }));
  }

  /** Clients gone and not back, newest first; `connected` filters out any that are back. */
  disconnected(connected: (name: string) => boolean): DisconnectedClient[] {
    return [...this.gone.values()].filter((c) => !connected(c.name)).reverse();
  }
}
