/**
 * Cluster directories on real nats-servers for tests: a NATS connection
 * wrapped as the directory's `NatsSource` (up/down from its status), and a
 * test instance that holds a directory, its local clients, every event it
 * emitted and counting stats that can be waited on. Everything is closed
 * through `onClose` (test/helpers/pipe.ts).
 */
import { EventEmitter } from 'node:events';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../../server/src/cluster/nats-transport.js';
import {
  ClusterDirectory,
  type ClientRecord,
  type ClusterConnectionEvent,
  type DirectoryOptions,
  type NatsSource,
  type NatsSourceEvents,
} from '../../server/src/cluster/directory.js';
import { Subjects } from '../../server/src/cluster/subjects.js';
import { CountingStats } from './counting-stats.js';
import { onClose, quietLog } from './pipe.js';

export const NAMESPACE = 'rp';
export const subjects = new Subjects(NAMESPACE);

/**
 * A NATS connection as a `NatsSource`: `down` on a disconnect or close, `up`
 * on a reconnect. `muted` hides the connection from the directory without a
 * `down` (what it publishes meanwhile is lost, as NATS may lose a message).
 */
export class StatusNatsSource extends EventEmitter<NatsSourceEvents> implements NatsSource {
  muted = false;
  private current: NatsConnection | undefined;

  constructor(readonly nc: NatsConnection) {
    super();
    this.current = nc;
    void this.watch();
    void nc.closed().then(() => {
      if (this.current === undefined) return;
      this.current = undefined;
      this.emit('down', 'closed');
    });
  }

  get connection(): NatsConnection | undefined {
    return this.muted ? undefined : this.current;
  }

  private async watch(): Promise<void> {
    for await (const status of this.nc.status()) {
      if (status.type === 'disconnect' && this.current) {
        this.current = undefined;
        this.emit('down', `disconnected from ${status.server}`);
      } else if (status.type === 'reconnect' && !this.nc.isClosed()) {
        this.current = this.nc;
        this.emit('up', this.nc);
      }
    }
  }
}

/** A connection that reconnects quickly and for ever, closed at teardown. */
export async function natsConnection(servers: string | string[], instance = 'raw'): Promise<NatsConnection> {
  const nc = await connectNats({
    servers,
    name: instance,
    inboxPrefix: subjects.inboxPrefix(instance),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
    reconnectJitter: 0,
  });
  onClose(() => nc.close());
  return nc;
}

/** Counting stats whose counters can be waited on. */
export class WaitableStats extends CountingStats {
  private readonly changed = new EventEmitter();

  override increment(name: string, value = 1): void {
    super.increment(name, value);
    this.changed.emit('change');
  }

  /** Resolves once counter `name` is at least `atLeast`. */
  waitCount(name: string, atLeast: number, timeoutMs = 10_000): Promise<void> {
    if (this.count(name) >= atLeast) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.count(name) < atLeast) return;
        clearTimeout(timer);
        this.changed.off('change', check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.changed.off('change', check);
        reject(new Error(`${name} stayed at ${this.count(name)}, not ${atLeast}, for ${timeoutMs} ms`));
      }, timeoutMs);
      this.changed.on('change', check);
    });
  }
}

export type DirectoryEvent =
  | ({ kind: 'connection' } & ClusterConnectionEvent)
  | { kind: 'replaced'; name: string; byInstance: string }
  | { kind: 'instance'; name: string; state: 'up' | 'down' };

/** A client record as an instance would announce it. */
export function clientRecord(name: string, instance: string, connectedAtMs = Date.now()): ClientRecord {
  return {
    name,
    instance,
    address: '127.0.0.1:40000',
    connectedSince: new Date(connectedAtMs).toISOString(),
    connectedAtMs,
    serial: '0a1b2c',
    certNotAfter: '2030-01-01T00:00:00.000Z',
    protocolVersion: 1,
    agent: 'restpipe-client/test',
  };
}

/** One instance of the cluster as the tests see it: a directory and its local clients. */
export class TestInstance {
  readonly events: DirectoryEvent[] = [];
  private readonly waiters = new Set<(event: DirectoryEvent) => void>();

  constructor(
    readonly name: string,
    readonly source: StatusNatsSource,
    readonly dir: ClusterDirectory,
    readonly stats: WaitableStats,
    /** The clients connected here: what the directory's `localClients()` answers. */
    readonly local: Map<string, ClientRecord>,
  ) {
    dir.on('connection', (e) => this.record({ kind: 'connection', ...e }));
    dir.on('replaced', (name, byInstance) => this.record({ kind: 'replaced', name, byInstance }));
    dir.on('instance', (e) => this.record({ kind: 'instance', ...e }));
  }

  /** A client connects here (at `connectedAtMs`). */
  connect(name: string, connectedAtMs = Date.now()): ClientRecord {
    const rec = clientRecord(name, this.name, connectedAtMs);
    this.local.set(name, rec);
    this.dir.localConnected(rec);
    return rec;
  }

  /** A client disconnects here (its connection of `connectedAtMs`, by default the current one). */
  disconnect(name: string, connectedAtMs = this.local.get(name)?.connectedAtMs): void {
    if (connectedAtMs === undefined) throw new Error(`${name} is not connected to ${this.name}`);
    if (this.local.get(name)?.connectedAtMs === connectedAtMs) this.local.delete(name);
    this.dir.localDisconnected(name, connectedAtMs);
  }

  /** The position after the events so far, to wait for later ones only. */
  mark(): number {
    return this.events.length;
  }

  /** The first event from position `since` that matches (already emitted, or the next to come). */
  waitFor(what: string, match: (event: DirectoryEvent) => boolean, since = 0, timeoutMs = 10_000): Promise<DirectoryEvent> {
    const found = this.events.slice(since).find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = (event: DirectoryEvent) => {
        if (!match(event)) return;
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve(event);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms; last events: ${JSON.stringify(this.events.slice(-10))}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Resolves when `count` events from `since` match. */
  async waitForCount(what: string, match: (event: DirectoryEvent) => boolean, count: number, since = 0, timeoutMs = 10_000): Promise<void> {
    let seen = this.events.slice(since).filter(match).length;
    if (seen >= count) return;
    await this.waitFor(what, (event) => match(event) && ++seen >= count, this.events.length, timeoutMs);
  }

  /** A `connection` event of `type` for client `name` (held by `instance`, if given). */
  waitConnection(type: 'connected' | 'disconnected', name: string, instance?: string, since = 0): Promise<DirectoryEvent> {
    return this.waitFor(
      `${type} ${name}${instance ? ` on ${instance}` : ''}`,
      (e) => e.kind === 'connection' && e.type === type && e.name === name && (instance === undefined || e.instance === instance),
      since,
    );
  }

  waitInstance(name: string, state: 'up' | 'down', since = 0): Promise<DirectoryEvent> {
    return this.waitFor(`instance ${name} ${state}`, (e) => e.kind === 'instance' && e.name === name && e.state === state, since);
  }

  private record(event: DirectoryEvent): void {
    this.events.push(event);
    for (const waiter of [...this.waiters]) waiter(event);
  }
}

export interface InstanceSetup extends Partial<Omit<DirectoryOptions, 'nats' | 'instance' | 'log' | 'stats' | 'localClients'>> {
  /** Clients connected before the directory starts. */
  clients?: ClientRecord[];
  /** Leave the directory unstarted. */
  noStart?: boolean;
}

/** An instance with its own NATS connection and a started directory (heartbeat 100 ms, expiry 350 ms unless set). */
export async function startInstance(servers: string | string[], name: string, setup: InstanceSetup = {}): Promise<TestInstance> {
  const nc = await natsConnection(servers, name);
  const source = new StatusNatsSource(nc);
  const stats = new WaitableStats();
  const local = new Map<string, ClientRecord>();
  const dir = new ClusterDirectory({
    namespace: NAMESPACE,
    heartbeatMs: 100,
    expireMs: 350,
    ...setup,
    nats: source,
    instance: name,
    log: quietLog,
    stats,
    localClients: () => [...local.values()],
    localClient: (client) => local.get(client),
  });
  onClose(() => dir.close());
  const instance = new TestInstance(name, source, dir, stats, local);
  for (const rec of setup.clients ?? []) local.set(rec.name, { ...rec, instance: name });
  if (!setup.noStart) dir.start();
  return instance;
}
