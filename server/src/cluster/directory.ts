/**
 * The cluster's view of its instances and of the clients connected to them,
 * kept from presence messages on `<ns>.presence` (the cluster design,
 * "Directory (presence)"):
 *
 * - `{"type":"hello","instance":I}` when I subscribes (at start and after
 *   every reconnect); the others answer with a heartbeat at once and read
 *   I's client list again.
 * - `{"type":"heartbeat","instance":I,"gen":G,"clients":N}` every second.
 * - `{"type":"connected","instance":I,"gen":G,"client":{…}}` and
 *   `{"type":"disconnected","instance":I,"gen":G,"name":X,"connectedAtMs":T}`.
 *
 * `gen` counts I's connects and disconnects, so a receiver knows when it
 * missed one (NATS core drops messages on a reconnect or a slow consumer):
 * a gen it did not expect (a gap, an instance it does not know, an instance
 * that restarted) makes it read I's whole list again from
 * `<ns>.inst.<I>.snapshot`, in pages. An instance silent for 3.5 s is gone,
 * with its clients.
 *
 * Everything received is validated; a malformed message is dropped (one
 * debug log, `cluster.presence.malformed`), never thrown. Nothing here
 * throws into NATS callbacks or timers.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger, Stats } from '@restpipe/shared';
import { Subjects } from './subjects.js';

/** What the directory's NATS connection emits: connected (first time or again), disconnected. */
export type NatsSourceEvents = { up: [NatsConnection]; down: [reason: string] };

/** The directory's view of the NATS connection (`NatsLink` is one). */
export interface NatsSource extends Pick<EventEmitter<NatsSourceEvents>, 'on' | 'off'> {
  /** The connection, only while connected. */
  readonly connection: NatsConnection | undefined;
}

/** One client connection, held by `instance`, as presence messages carry it. */
export interface ClientRecord {
  name: string;
  instance: string;
  address: string | null;
  /** ISO time of the connect, by the holder's clock. */
  connectedSince: string;
  /** The same, in ms since the epoch: with `instance`, orders connections of one name (newest wins). */
  connectedAtMs: number;
  serial: string | null;
  certNotAfter: string | null;
  protocolVersion: number | null;
  agent: string | null;
}

/**
 * A client of another instance connected or disconnected, as far as this
 * instance learned. `time`: the record's `connectedSince` for `connected`
 * (so a client learned from a snapshot keeps its real time), the moment it
 * was learned for `disconnected`.
 */
export interface ClusterConnectionEvent {
  type: 'connected' | 'disconnected';
  name: string;
  address: string | undefined;
  time: string;
  instance: string;
}

/** Another instance as this one sees it. */
export interface InstanceView {
  name: string;
  /** Its clients in this view. */
  clients: number;
  /** Ms since its last message (heartbeat or other). */
  lastSeenMs: number;
  /**
   * False while NATS is down, or while its client list is being read again
   * (or failed to be read): its clients are then the last known ones.
   */
  fresh: boolean;
}

export interface DirectoryOptions {
  nats: NatsSource;
  /** The cluster's namespace, the first token of its subjects. */
  namespace: string;
  /** This instance's name. */
  instance: string;
  log: Logger;
  stats: Stats;
  /**
   * The clients connected to this instance. It must agree with the calls of
   * `localConnected`/`localDisconnected` (make the registry change and the
   * call in the same tick): a snapshot answers it with the current gen.
   */
  localClients(): ClientRecord[];
  /** This instance's record of one client, if quicker than searching `localClients()`. */
  localClient?(name: string): ClientRecord | undefined;
  /** @default 1000 */
  heartbeatMs?: number;
  /** An instance silent this long is gone. @default 3500 */
  expireMs?: number;
  /** How long one snapshot page may take to come. @default 2000 */
  snapshotTimeoutMs?: number;
}

/**
 * `connection`: a remote client connected or disconnected. `replaced`: a
 * client connected to this instance has a newer connection on `byInstance`
 * (close the local one). `instance`: another instance appeared or expired.
 */
export type DirectoryEvents = {
  connection: [ClusterConnectionEvent];
  replaced: [name: string, byInstance: string];
  instance: [{ name: string; state: 'up' | 'down' }];
};

/** Sizes a presence message may have; larger ones are malformed. */
export const PRESENCE_LIMITS = Object.freeze({
  /** Characters of a client or instance name. */
  nameChars: 256,
  /** Characters of any other text field of a record (longer ones are cut before sending). */
  textChars: 1024,
  /** Clients in one snapshot page. */
  pageClients: 500,
  /** Bytes of one message (presence, snapshot request or page). */
  messageBytes: 1024 * 1024,
  /** Clients in one instance's snapshot, all pages. */
  snapshotClients: 1_000_000,
});

/** Messages to an instance kept while its snapshot is read (more: read it again after). */
const MAX_BUFFERED = 10_000;
/** Reads of a snapshot that changed between its pages before giving up until the next heartbeat. */
const SNAPSHOT_ATTEMPTS = 3;
/** A multi-page snapshot is kept this long for the pages after the first. */
const SNAPSHOT_CACHE_MS = 10_000;
const SNAPSHOT_CACHE_ENTRIES = 4;

type ChangeMessage =
  | { type: 'connected'; instance: string; gen: number; client: ClientRecord }
  | { type: 'disconnected'; instance: string; gen: number; name: string; connectedAtMs: number };
type PresenceMessage = { type: 'hello'; instance: string } | { type: 'heartbeat'; instance: string; gen: number; clients: number } | ChangeMessage;

interface SnapshotPage {
  gen: number;
  clients: ClientRecord[];
  next: number | null;
}

/** A snapshot being read: changes that arrive meanwhile wait for it. */
interface Sync {
  buffered: ChangeMessage[];
  overflow: boolean;
  /** Something (a hello, a reconnect) asked for another read while this one ran. */
  again: boolean;
}

interface RemoteInstance {
  readonly name: string;
  /** The gen its clients are at; undefined until a snapshot was read. */
  gen: number | undefined;
  clients: Map<string, ClientRecord>;
  /** performance.now() of its last message. */
  heardAt: number;
  sync: Sync | undefined;
  /** Its list must be read (again): unknown gen, a failed read. */
  needsSync: boolean;
}

/** The cluster's instances and remote clients, from presence messages. */
export class ClusterDirectory extends EventEmitter<DirectoryEvents> {
  private readonly subjects: Subjects;
  private readonly heartbeatMs: number;
  private readonly expireMs: number;
  private readonly snapshotTimeoutMs: number;
  private readonly remotes = new Map<string, RemoteInstance>();
  private readonly snapshotCache = new Map<number, { clients: ClientRecord[]; at: number }>();
  private ownGen = 0;
  private subscribedOn: NatsConnection | undefined;
  private subscriptions: Subscription[] = [];
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private closed = false;
  private up = false;
  /** performance.now() of the last reconnect: no instance expires sooner than expireMs after it. */
  private upAt = 0;

  constructor(private readonly opts: DirectoryOptions) {
    super();
    this.subjects = new Subjects(opts.namespace);
    this.heartbeatMs = opts.heartbeatMs ?? 1000;
    this.expireMs = opts.expireMs ?? 3500;
    this.snapshotTimeoutMs = opts.snapshotTimeoutMs ?? 2000;
  }

  /** This instance's gen: its connects and disconnects so far. */
  get gen(): number {
    return this.ownGen;
  }

  /** NATS is up as far as the directory knows (its view is being kept current). */
  get connected(): boolean {
    return this.up;
  }

  /**
   * Subscribes when NATS is up (now, if it is), and again after each
   * reconnect: then says hello and reads every known instance's list again.
   * Heartbeats every `heartbeatMs` and expires silent instances. While NATS
   * is down the last view stays as it was (instances are not `fresh` and do
   * not expire); after the reconnect an instance that stays silent for
   * `expireMs` expires.
   */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.opts.nats.on('up', this.onUp);
    this.opts.nats.on('down', this.onDown);
    this.timer = setInterval(() => this.tick(), this.heartbeatMs);
    this.timer.unref();
    const nc = this.opts.nats.connection;
    if (nc) this.onUp(nc);
  }

  /** Unsubscribes and stops the timers; the view stays as it was, and no more events come. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.up = false;
    if (this.timer) clearInterval(this.timer);
    this.opts.nats.off('up', this.onUp);
    this.opts.nats.off('down', this.onDown);
    this.unsubscribe();
    this.snapshotCache.clear();
  }

  /** A client connected to this instance: tells the others. */
  localConnected(rec: ClientRecord): void {
    const client = outboundRecord(rec, this.opts.instance);
    if (!client) {
      this.opts.log.warn({ client: rec.name.slice(0, 64) }, 'a client name too long for the cluster: not announced');
      return;
    }
    this.ownGen++;
    this.publish({ type: 'connected', instance: this.opts.instance, gen: this.ownGen, client });
    // Another instance may already hold a newer connection of this name (the
    // clocks decide): then this one loses, as it would there.
    const holder = this.holderOf(client.name);
    if (holder && isNewer(holder, client)) this.emitReplaced(client.name, holder.instance);
  }

  /** A client of this instance disconnected (its connection of `connectedAtMs`): tells the others. */
  localDisconnected(name: string, connectedAtMs: number): void {
    if (!isName(name)) return;
    this.ownGen++;
    this.publish({ type: 'disconnected', instance: this.opts.instance, gen: this.ownGen, name, connectedAtMs });
  }

  /** The newest record of `name` on another instance (never this instance's). */
  holderOf(name: string): ClientRecord | undefined {
    let newest: ClientRecord | undefined;
    for (const remote of this.remotes.values()) {
      const rec = remote.clients.get(name);
      if (rec && (!newest || isNewer(rec, newest))) newest = rec;
    }
    return newest;
  }

  /** The clients of the other instances, one record per name (the newest, as `holderOf`). */
  remoteClients(): ClientRecord[] {
    const byName = new Map<string, ClientRecord>();
    for (const remote of this.remotes.values()) {
      for (const rec of remote.clients.values()) {
        const other = byName.get(rec.name);
        if (!other || isNewer(rec, other)) byName.set(rec.name, rec);
      }
    }
    return [...byName.values()];
  }

  /**
   * How many client connections the other instances hold: a sum of counts,
   * not a list (it runs on every connection event). A name held twice for
   * a moment (a handover before the older holder closes) counts twice.
   */
  remoteCount(): number {
    let n = 0;
    for (const remote of this.remotes.values()) n += remote.clients.size;
    return n;
  }

  /** The other instances seen and not expired. */
  instances(): InstanceView[] {
    const now = performance.now();
    return [...this.remotes.values()].map((r) => ({
      name: r.name,
      clients: r.clients.size,
      lastSeenMs: Math.max(0, Math.round(now - r.heardAt)),
      fresh: this.up && !r.sync && !r.needsSync,
    }));
  }

  // --- the connection --------------------------------------------------------

  private readonly onUp = (nc: NatsConnection): void => {
    if (this.closed) return;
    this.up = true;
    this.upAt = performance.now();
    // nats.js subscribes again by itself after a reconnect; a new connection needs new subscriptions.
    if (this.subscribedOn !== nc) {
      this.unsubscribe();
      this.subscribe(nc);
    }
    this.opts.log.debug({ instance: this.opts.instance, known: this.remotes.size }, 'cluster presence: NATS up, saying hello');
    this.publish({ type: 'hello', instance: this.opts.instance });
    // Messages may have been lost while NATS was away, and an instance may have restarted unseen.
    for (const remote of this.remotes.values()) this.resync(remote);
  };

  private readonly onDown = (reason: string): void => {
    if (this.closed) return;
    this.up = false;
    this.opts.log.debug({ reason }, 'cluster presence: NATS down, keeping the last view');
  };

  private subscribe(nc: NatsConnection): void {
    try {
      this.subscriptions = [
        nc.subscribe(this.subjects.presence, { callback: (err, msg) => this.guard(err, msg, this.onPresence) }),
        nc.subscribe(this.subjects.snapshot(this.opts.instance), { callback: (err, msg) => this.guard(err, msg, this.onSnapshotRequest) }),
      ];
      this.subscribedOn = nc;
    } catch (err) {
      this.opts.log.warn({ err }, 'cluster presence: cannot subscribe');
      this.unsubscribe();
    }
  }

  private unsubscribe(): void {
    for (const sub of this.subscriptions) {
      try {
        if (!sub.isClosed()) sub.unsubscribe();
      } catch {
        // the connection is closed: so is the subscription
      }
    }
    this.subscriptions = [];
    this.subscribedOn = undefined;
  }

  /** Runs a message handler; nothing it throws reaches NATS. */
  private guard(err: Error | null, msg: Msg, handle: (msg: Msg) => void): void {
    if (this.closed) return;
    if (err) {
      this.opts.log.debug({ err }, 'cluster presence: subscription error');
      return;
    }
    try {
      handle.call(this, msg);
    } catch (error) {
      this.opts.log.error({ err: error }, 'cluster presence: a message handler failed');
    }
  }

  private publish(message: PresenceMessage): void {
    const nc = this.opts.nats.connection;
    if (!nc || this.closed) return; // the others read our list again when we are back
    try {
      nc.publish(this.subjects.presence, JSON.stringify(message));
      this.opts.stats.increment('cluster.presence.sent');
    } catch (err) {
      this.opts.stats.increment('cluster.presence.publish_failures');
      this.opts.log.debug({ err, type: message.type }, 'cluster presence: cannot publish');
    }
  }

  private tick(): void {
    if (this.closed || !this.up) return; // while NATS is down nobody is heard: nobody expires
    try {
      this.publish({ type: 'heartbeat', instance: this.opts.instance, gen: this.ownGen, clients: this.localCount() });
      const now = performance.now();
      for (const remote of [...this.remotes.values()]) {
        if (now - Math.max(remote.heardAt, this.upAt) > this.expireMs) this.expire(remote);
      }
      this.opts.stats.gauge('cluster.presence.instances', this.remotes.size);
      let clients = 0;
      for (const remote of this.remotes.values()) clients += remote.clients.size;
      this.opts.stats.gauge('cluster.presence.remote_clients', clients);
    } catch (err) {
      this.opts.log.error({ err }, 'cluster presence: the heartbeat failed');
    }
  }

  private localCount(): number {
    return this.opts.localClients().length;
  }

  // --- receiving -------------------------------------------------------------

  private onPresence(msg: Msg): void {
    let message: PresenceMessage;
    try {
      message = parsePresence(msg.data);
    } catch (err) {
      this.malformed(err, 'presence message');
      return;
    }
    if (message.instance === this.opts.instance) return; // our own, echoed
    this.opts.stats.increment('cluster.presence.received');
    const remote = this.heard(message.instance);
    switch (message.type) {
      case 'hello':
        // It (re)started or reconnected: it learns us from our heartbeat, we read its list again.
        this.publish({ type: 'heartbeat', instance: this.opts.instance, gen: this.ownGen, clients: this.localCount() });
        this.resync(remote);
        return;
      case 'heartbeat':
        if (!remote.sync && (remote.needsSync || remote.gen !== message.gen)) this.resync(remote);
        return;
      default:
        this.onChange(remote, message);
    }
  }

  private onChange(remote: RemoteInstance, message: ChangeMessage): void {
    if (!remote.sync && !remote.needsSync && remote.gen !== undefined && message.gen === remote.gen + 1) {
      this.apply(remote, message);
      return;
    }
    if (!remote.sync) this.resync(remote);
    const sync = remote.sync as Sync | undefined;
    if (!sync) return;
    if (sync.buffered.length < MAX_BUFFERED) sync.buffered.push(message);
    else sync.overflow = true;
  }

  /** The instance a message came from, created (and announced) if new; it was just heard. */
  private heard(name: string): RemoteInstance {
    let remote = this.remotes.get(name);
    if (!remote) {
      remote = { name, gen: undefined, clients: new Map(), heardAt: performance.now(), sync: undefined, needsSync: true };
      this.remotes.set(name, remote);
      this.opts.stats.increment('cluster.presence.instances_up');
      this.opts.log.info({ instance: name }, 'cluster instance up');
      this.safeEmit('instance', { name, state: 'up' });
    }
    remote.heardAt = performance.now();
    return remote;
  }

  private expire(remote: RemoteInstance): void {
    this.remotes.delete(remote.name);
    this.opts.stats.increment('cluster.presence.instances_expired');
    this.opts.log.info(
      { instance: remote.name, clients: remote.clients.size, silentMs: Math.round(performance.now() - remote.heardAt) },
      'cluster instance gone',
    );
    this.safeEmit('instance', { name: remote.name, state: 'down' });
    const time = new Date().toISOString();
    for (const rec of remote.clients.values()) this.emitConnection('disconnected', rec, time);
  }

  private apply(remote: RemoteInstance, message: ChangeMessage): void {
    remote.gen = message.gen;
    if (message.type === 'connected') {
      const rec = message.client;
      const old = remote.clients.get(rec.name);
      remote.clients.set(rec.name, rec);
      if (old && old.connectedAtMs !== rec.connectedAtMs) this.emitConnection('disconnected', old, new Date().toISOString());
      if (!old || old.connectedAtMs !== rec.connectedAtMs) this.emitConnection('connected', rec, rec.connectedSince);
      this.checkReplaced(rec, this.opts.localClient ? this.opts.localClient(rec.name) : this.opts.localClients().find((c) => c.name === rec.name));
      return;
    }
    const old = remote.clients.get(message.name);
    // A disconnect of an older connection (the client came back on this
    // instance since) leaves the newer one alone.
    if (!old || old.connectedAtMs !== message.connectedAtMs) {
      this.opts.stats.increment('cluster.presence.stale_disconnects');
      return;
    }
    remote.clients.delete(message.name);
    this.emitConnection('disconnected', old, new Date().toISOString());
  }

  /** Replaces an instance's clients with a snapshot's, announcing the differences. */
  private replaceClients(remote: RemoteInstance, records: ClientRecord[]): void {
    const next = new Map<string, ClientRecord>();
    for (const rec of records) {
      const other = next.get(rec.name);
      if (!other || isNewer(rec, other)) next.set(rec.name, rec);
    }
    const previous = remote.clients;
    remote.clients = next;
    const time = new Date().toISOString();
    for (const [name, old] of previous) {
      if (next.get(name)?.connectedAtMs !== old.connectedAtMs) this.emitConnection('disconnected', old, time);
    }
    for (const [name, rec] of next) {
      if (previous.get(name)?.connectedAtMs !== rec.connectedAtMs) this.emitConnection('connected', rec, rec.connectedSince);
    }
    if (next.size === 0) return;
    const local = new Map(this.opts.localClients().map((c) => [c.name, c]));
    for (const rec of next.values()) this.checkReplaced(rec, local.get(rec.name));
  }

  /** Newest wins: a remote connection newer than the local one of the same name replaces it. */
  private checkReplaced(remote: ClientRecord, local: ClientRecord | undefined): void {
    if (!local) return;
    if (isNewer(remote, { ...local, instance: this.opts.instance })) this.emitReplaced(remote.name, remote.instance);
  }

  private emitReplaced(name: string, byInstance: string): void {
    this.opts.stats.increment('cluster.presence.replaced');
    this.opts.log.info({ client: name, byInstance }, 'a client has a newer connection on another instance');
    this.safeEmit('replaced', name, byInstance);
  }

  private emitConnection(type: 'connected' | 'disconnected', rec: ClientRecord, time: string): void {
    this.safeEmit('connection', { type, name: rec.name, address: rec.address ?? undefined, time, instance: rec.instance });
  }

  private safeEmit<K extends keyof DirectoryEvents>(event: K, ...args: DirectoryEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: DirectoryEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.opts.log.error({ err, event }, 'cluster presence: a listener failed');
    }
  }

  private malformed(err: unknown, what: string): void {
    this.opts.stats.increment('cluster.presence.malformed');
    this.opts.log.debug({ reason: err instanceof Error ? err.message : String(err) }, `cluster presence: dropped a malformed ${what}`);
  }

  // --- snapshots: reading another instance's list ----------------------------

  /** Reads the instance's list again (once at a time; asked again meanwhile, once more after). */
  private resync(remote: RemoteInstance): void {
    if (this.closed) return;
    if (remote.sync) {
      remote.sync.again = true;
      return;
    }
    const sync: Sync = { buffered: [], overflow: false, again: false };
    remote.sync = sync;
    this.opts.stats.increment('cluster.presence.resyncs');
    this.runSync(remote, sync).catch((err: unknown) => {
      if (remote.sync === sync) remote.sync = undefined;
      remote.needsSync = true;
      this.opts.log.error({ err, instance: remote.name }, 'cluster presence: applying a client list failed');
    });
  }

  private async runSync(remote: RemoteInstance, sync: Sync): Promise<void> {
    let snapshot: { gen: number; clients: ClientRecord[] };
    try {
      snapshot = await this.readSnapshot(remote.name);
    } catch (err) {
      if (this.remotes.get(remote.name) !== remote || remote.sync !== sync) return;
      remote.sync = undefined;
      remote.needsSync = true; // the next message from it tries again
      if (err instanceof Malformed) this.malformed(err, 'snapshot page');
      this.opts.stats.increment('cluster.presence.resync_failures');
      this.opts.log.debug({ instance: remote.name, err }, 'cluster presence: cannot read an instance client list');
      return;
    }
    if (this.closed || this.remotes.get(remote.name) !== remote || remote.sync !== sync) return;
    remote.sync = undefined;
    remote.needsSync = false;
    remote.gen = snapshot.gen;
    this.replaceClients(remote, snapshot.clients);
    this.opts.log.debug({ instance: remote.name, gen: snapshot.gen, clients: snapshot.clients.length }, 'cluster presence: read an instance client list');
    for (const message of sync.buffered) {
      if (message.gen <= (remote.gen as number)) continue; // in the snapshot already
      if (message.gen !== (remote.gen as number) + 1) {
        this.resync(remote);
        return;
      }
      this.apply(remote, message);
    }
    if (sync.overflow || sync.again) this.resync(remote);
  }

  /** All pages of an instance's list, at one gen (pages 2… name the gen of page 1). */
  private async readSnapshot(instance: string): Promise<{ gen: number; clients: ClientRecord[] }> {
    for (let attempt = 0; attempt < SNAPSHOT_ATTEMPTS; attempt++) {
      let gen: number | undefined;
      let offset = 0;
      const clients: ClientRecord[] = [];
      for (;;) {
        const nc = this.opts.nats.connection;
        if (!nc || this.closed) throw new Error('NATS is down');
        const reply = await nc.request(this.subjects.snapshot(instance), JSON.stringify(gen === undefined ? { offset } : { offset, gen }), {
          timeout: this.snapshotTimeoutMs,
        });
        const page = parseSnapshotPage(reply.data, instance, offset, (err) => this.malformed(err, 'client record'));
        if (gen !== undefined && page.gen !== gen) break; // it changed between pages: from the start
        gen = page.gen;
        clients.push(...page.clients);
        if (page.next === null) return { gen, clients };
        offset = page.next;
      }
    }
    throw new Error(`the client list of ${instance} kept changing while it was read`);
  }

  // --- snapshots: answering for this instance --------------------------------

  private onSnapshotRequest(msg: Msg): void {
    let request: { offset: number; gen: number | undefined };
    try {
      request = parseSnapshotRequest(msg.data);
    } catch (err) {
      this.malformed(err, 'snapshot request');
      return;
    }
    if (!msg.reply) return;
    const now = performance.now();
    for (const [gen, entry] of this.snapshotCache) if (now - entry.at > SNAPSHOT_CACHE_MS) this.snapshotCache.delete(gen);
    let gen = this.ownGen;
    let clients: ClientRecord[];
    const cached = request.offset > 0 && request.gen !== undefined ? this.snapshotCache.get(request.gen) : undefined;
    if (cached && request.gen !== undefined) {
      gen = request.gen;
      clients = cached.clients;
    } else {
      clients = this.currentRecords();
      if (clients.length > PRESENCE_LIMITS.pageClients) {
        // Later pages are read from this copy, so all pages are of one gen.
        this.snapshotCache.delete(gen);
        this.snapshotCache.set(gen, { clients, at: now });
        while (this.snapshotCache.size > SNAPSHOT_CACHE_ENTRIES) this.snapshotCache.delete(this.snapshotCache.keys().next().value as number);
      }
    }
    const budget = Math.min(PRESENCE_LIMITS.messageBytes, this.subscribedOn?.info?.max_payload ?? PRESENCE_LIMITS.messageBytes) - 128;
    const parts: string[] = [];
    let bytes = 0;
    let end = Math.min(request.offset, clients.length);
    while (end < clients.length && parts.length < PRESENCE_LIMITS.pageClients) {
      const json = JSON.stringify(clients[end]);
      const size = Buffer.byteLength(json) + 1;
      if (parts.length > 0 && bytes + size > budget) break;
      parts.push(json);
      bytes += size;
      end++;
    }
    const next = end < clients.length ? end : null;
    try {
      msg.respond(`{"gen":${gen},"clients":[${parts.join(',')}],"next":${next}}`);
      this.opts.stats.increment('cluster.presence.snapshot_pages_served');
    } catch (err) {
      this.opts.stats.increment('cluster.presence.publish_failures');
      this.opts.log.debug({ err }, 'cluster presence: cannot answer a snapshot request');
    }
  }

  private currentRecords(): ClientRecord[] {
    const out: ClientRecord[] = [];
    for (const rec of this.opts.localClients()) {
      const client = outboundRecord(rec, this.opts.instance);
      if (client) out.push(client);
    }
    return out;
  }
}

/** `a` is the newer connection: later `connectedAtMs`, then the greater instance name. */
export function isNewer(a: Pick<ClientRecord, 'connectedAtMs' | 'instance'>, b: Pick<ClientRecord, 'connectedAtMs' | 'instance'>): boolean {
  if (a.connectedAtMs !== b.connectedAtMs) return a.connectedAtMs > b.connectedAtMs;
  return a.instance > b.instance;
}

// --- validation ----------------------------------------------------------------

/** Why a message was dropped. */
class Malformed extends Error {}

function isName(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= PRESENCE_LIMITS.nameChars;
}

function parseObject(data: Uint8Array): Record<string, unknown> {
  if (data.length > PRESENCE_LIMITS.messageBytes) throw new Malformed(`${data.length} bytes, more than ${PRESENCE_LIMITS.messageBytes}`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.length).toString('utf8'));
  } catch {
    throw new Malformed('not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Malformed('not a JSON object');
  return value as Record<string, unknown>;
}

function name(value: unknown, field: string): string {
  if (!isName(value)) throw new Malformed(`${field}: not a name of 1 to ${PRESENCE_LIMITS.nameChars} characters`);
  return value;
}

function count(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new Malformed(`${field}: not a count`);
  return value;
}

function text(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length > PRESENCE_LIMITS.textChars)
    throw new Malformed(`${field}: not a text of at most ${PRESENCE_LIMITS.textChars} characters`);
  return value;
}

/** An optional text: absent or null is null. */
function optionalText(value: unknown, field: string): string | null {
  return value === undefined || value === null ? null : text(value, field);
}

function parseRecord(value: unknown, instance: string): ClientRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Malformed('client: not an object');
  const v = value as Record<string, unknown>;
  if (v.instance !== undefined && v.instance !== instance) throw new Malformed('client.instance: not the instance that sent it');
  const connectedAtMs = v.connectedAtMs;
  if (typeof connectedAtMs !== 'number' || !Number.isFinite(connectedAtMs) || connectedAtMs < 0) throw new Malformed('client.connectedAtMs: not a time');
  const protocolVersion = v.protocolVersion ?? null;
  if (protocolVersion !== null && (typeof protocolVersion !== 'number' || !Number.isSafeInteger(protocolVersion))) {
    throw new Malformed('client.protocolVersion: not an integer');
  }
  return {
    name: name(v.name, 'client.name'),
    instance,
    address: optionalText(v.address, 'client.address'),
    connectedSince: text(v.connectedSince, 'client.connectedSince'),
    connectedAtMs,
    serial: optionalText(v.serial, 'client.serial'),
    certNotAfter: optionalText(v.certNotAfter, 'client.certNotAfter'),
    protocolVersion,
    agent: optionalText(v.agent, 'client.agent'),
  };
}

function parsePresence(data: Uint8Array): PresenceMessage {
  const v = parseObject(data);
  const instance = name(v.instance, 'instance');
  switch (v.type) {
    case 'hello':
      return { type: 'hello', instance };
    case 'heartbeat':
      return { type: 'heartbeat', instance, gen: count(v.gen, 'gen'), clients: count(v.clients, 'clients') };
    case 'connected':
      return { type: 'connected', instance, gen: count(v.gen, 'gen'), client: parseRecord(v.client, instance) };
    case 'disconnected': {
      const connectedAtMs = v.connectedAtMs;
      if (typeof connectedAtMs !== 'number' || !Number.isFinite(connectedAtMs)) throw new Malformed('connectedAtMs: not a time');
      return { type: 'disconnected', instance, gen: count(v.gen, 'gen'), name: name(v.name, 'name'), connectedAtMs };
    }
    default:
      throw new Malformed('type: not hello, heartbeat, connected or disconnected');
  }
}

function parseSnapshotRequest(data: Uint8Array): { offset: number; gen: number | undefined } {
  const v = parseObject(data);
  return { offset: count(v.offset, 'offset'), gen: v.gen === undefined ? undefined : count(v.gen, 'gen') };
}

/** A page of `instance`'s list asked from `offset`; a bad record is left out (and reported), a bad page throws. */
function parseSnapshotPage(data: Uint8Array, instance: string, offset: number, badRecord: (err: unknown) => void): SnapshotPage {
  const v = parseObject(data);
  const gen = count(v.gen, 'gen');
  if (!Array.isArray(v.clients)) throw new Malformed('clients: not an array');
  if (v.clients.length > PRESENCE_LIMITS.pageClients) throw new Malformed(`clients: ${v.clients.length}, more than ${PRESENCE_LIMITS.pageClients} in a page`);
  const next = v.next === null ? null : count(v.next, 'next');
  if (next !== null && (v.clients.length === 0 || next !== offset + v.clients.length)) throw new Malformed('next: not the offset after this page');
  if (next !== null && next > PRESENCE_LIMITS.snapshotClients) throw new Malformed(`more than ${PRESENCE_LIMITS.snapshotClients} clients`);
  const clients: ClientRecord[] = [];
  for (const item of v.clients) {
    try {
      clients.push(parseRecord(item, instance));
    } catch (err) {
      badRecord(err);
    }
  }
  return { gen, clients, next };
}

/** A local record as it is sent: this instance's name, texts cut to size; undefined for a name too long. */
function outboundRecord(rec: ClientRecord, instance: string): ClientRecord | undefined {
  if (!isName(rec.name)) return undefined;
  const cut = (value: string | null) => (value === null || value === undefined ? null : String(value).slice(0, PRESENCE_LIMITS.textChars));
  return {
    name: rec.name,
    instance,
    address: cut(rec.address),
    connectedSince: cut(rec.connectedSince) ?? '',
    connectedAtMs: Number.isFinite(rec.connectedAtMs) && rec.connectedAtMs >= 0 ? rec.connectedAtMs : 0,
    serial: cut(rec.serial),
    certNotAfter: cut(rec.certNotAfter),
    protocolVersion: Number.isSafeInteger(rec.protocolVersion) ? rec.protocolVersion : null,
    agent: cut(rec.agent),
  };
}
