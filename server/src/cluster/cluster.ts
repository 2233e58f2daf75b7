/**
 * One server instance's part in a cluster (`RP_SERVER_NATS_URL`): the NATS
 * link, the directory of the other instances and their clients, and the
 * instance-to-instance links that carry requests to a client held
 * elsewhere. The server asks it for a client that is not its own
 * (`resolve`), tells it about its own clients, and shows its views in
 * `/_restpipe/status`, `/_restpipe/clients` and `/_restpipe/events`.
 */
import { EventEmitter } from 'node:events';
import { ClusterUnavailableError, UnknownClientError, type Logger, type Pipe, type PipeLimits, type Stats } from '@restpipe/shared';
import type { ServerConfig } from '../config.js';
import type { NatsConnection } from '@nats-io/transport-node';
import { ClusterDirectory, type ClientRecord, type ClusterConnectionEvent, type NatsSource, type NatsSourceEvents } from './directory.js';
import { ForwardingRouter } from './forwarder.js';
import { LinkTable } from './links.js';
import { NatsLink, natsOptionsFrom } from './nats-connection.js';
import { RemotePipe } from './remote-pipe.js';

export type { ClientRecord, ClusterConnectionEvent } from './directory.js';

export interface ClusterOptions {
  config: ServerConfig;
  /** This instance's name (`RP_SERVER_INSTANCE_NAME`, or `<hostname>:<pipe port>`). */
  instance: string;
  log: Logger;
  stats: Stats;
  limits: PipeLimits;
  /** A client connected to this instance that takes requests, or undefined. */
  localPipe(name: string): Pipe | undefined;
  /** This instance's clients, as the other instances should see them. */
  localClients(): ClientRecord[];
  /** One of them by name (faster than searching `localClients()`). */
  localClient(name: string): ClientRecord | undefined;
}

/** `connection`: a client connected to or left another instance. `replaced`: a newer connection of one of ours is on another instance. */
export type ClusterEvents = {
  connection: [ClusterConnectionEvent];
  replaced: [name: string, byInstance: string];
};

export class Cluster extends EventEmitter<ClusterEvents> {
  readonly instance: string;
  readonly name: string;
  private readonly nats: NatsLink;
  private readonly directory: ClusterDirectory;
  private readonly links: LinkTable;
  private readonly log: Logger;

  constructor(opts: ClusterOptions) {
    super();
    this.instance = opts.instance;
    this.name = opts.config.clusterName;
    this.log = opts.log.child({ instance: opts.instance });
    this.nats = new NatsLink(natsOptionsFrom(opts.config, opts.instance), this.log);
    const router = new ForwardingRouter({ localPipe: opts.localPipe, log: this.log, stats: opts.stats });
    this.links = new LinkTable({
      nats: this.nats,
      namespace: this.name,
      instance: opts.instance,
      log: this.log,
      stats: opts.stats,
      limits: opts.limits,
      router,
    });
    this.directory = new ClusterDirectory({
      nats: new ListeningSource(this.nats, this.links),
      namespace: this.name,
      instance: opts.instance,
      log: this.log,
      stats: opts.stats,
      localClients: opts.localClients,
      localClient: opts.localClient,
    });
    this.directory.on('connection', (event) => this.emit('connection', event));
    this.directory.on('replaced', (name, by) => this.emit('replaced', name, by));
    this.directory.on('instance', ({ name, state }) => {
      this.log.info({ peerInstance: name, state }, state === 'up' ? 'a server instance joined the cluster' : 'a server instance left the cluster');
      if (state === 'down') this.links.dropInstance(name, `instance ${name} left the cluster`);
    });
  }

  /** Connects to NATS in the background (and for ever); never throws. */
  start(): void {
    this.links.start();
    this.directory.start();
    this.nats.start();
  }

  /**
   * A client held by another instance, as a pipe: through the link to its
   * instance. Throws `UnknownClientError` when no instance holds it and
   * `ClusterUnavailableError` when NATS is down; rejects with
   * `InstanceGoneError` when its instance does not answer.
   */
  async resolve(name: string): Promise<Pipe> {
    if (!this.nats.isUp) throw new ClusterUnavailableError(name);
    const record = this.directory.holderOf(name);
    if (!record) throw new UnknownClientError(name);
    const link = await this.links.pipeTo(record.instance);
    return new RemotePipe(link, name, record.instance, record.address ?? undefined);
  }

  /** Whether another instance holds a client of this name. */
  holds(name: string): boolean {
    return this.directory.holderOf(name) !== undefined;
  }

  /** The names of the clients on the other instances. */
  remoteNames(): string[] {
    return this.directory.remoteClients().map((c) => c.name);
  }

  /** How many connections the other instances hold (a count, cheap enough for every event). */
  remoteCount(): number {
    return this.directory.remoteCount();
  }

  /** The clients on the other instances. */
  remoteClients(): ClientRecord[] {
    return this.directory.remoteClients();
  }

  /** A client connected here. */
  localConnected(record: ClientRecord): void {
    this.directory.localConnected(record);
  }

  /** A client left this instance (not when a newer connection replaced it here). */
  localDisconnected(name: string, connectedAtMs: number): void {
    this.directory.localDisconnected(name, connectedAtMs);
  }

  /** The cluster part of `/_restpipe/status`. */
  status(): Record<string, unknown> {
    return {
      name: this.name,
      instance: this.instance,
      nats: this.nats.status(),
      instances: this.directory.instances(),
      remoteClients: this.directory.remoteCount(),
      links: this.links.status(),
    };
  }

  /** Finishes forwarded requests for up to `graceMs`, then leaves the cluster. */
  async close(graceMs: number): Promise<void> {
    await this.links.close(graceMs);
    await this.directory.close();
    await this.nats.close();
  }
}

/**
 * NATS as the directory sees it: up only once the links' subscriptions are
 * confirmed by the server, so that no instance hears of our clients before
 * it can open a link to us.
 */
class ListeningSource extends EventEmitter<NatsSourceEvents> implements NatsSource {
  private ready: NatsConnection | undefined;

  constructor(nats: NatsLink, links: LinkTable) {
    super();
    nats.on('up', (nc) => {
      void links.listening().then(() => {
        if (nats.connection !== nc) return;
        this.ready = nc;
        this.emit('up', nc);
      });
    });
    nats.on('down', (reason) => {
      this.ready = undefined;
      this.emit('down', reason);
    });
  }

  get connection(): NatsConnection | undefined {
    return this.ready;
  }
}
