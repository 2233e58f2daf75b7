/**
 * The RestPipe server: a mutual-TLS listener that knows each client by its
 * certificate name, a registry of connected clients, and the server gateway
 * (`/client/<name>/<noun>`) that sends events to them. Its identity (key,
 * certificate, CA bundle, CRL) reloads without a restart: on SIGHUP, when
 * the certificate folder changes, or on `reloadIdentity()`.
 */
import type { X509Certificate } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import tls from 'node:tls';
import {
  IdentityWatch,
  NodeKit,
  SESSION_TIMEOUT_S,
  ShuttingDownError,
  UnknownClientError,
  deriveTicketKeys,
  sessionIdContext,
  type IdentityReload,
  type LoadedIdentity,
  type Logger,
  type MessageExchange,
  type Pipe,
  type ReloadTrigger,
  type Stats,
  type TlsIdentity,
} from '@restpipe/shared';
import type { FastifyInstance } from 'fastify';
import { IntermediateCache, acceptClient, refuseHandshake } from './accept.js';
import type { ClientRecord, Cluster } from './cluster/cluster.js';
import { SERVER_IDENTITY_FILES, checkClusterSettings, type ServerConfig } from './config.js';
import { registerDashboardRoutes } from './dashboard/routes.js';
import { ServerConnectionStateEvents, ServerExampleHandler, type ServerEventHandler } from './handler.js';
import { extraAcceptHandles } from './accept-handles.js';
import { HandshakeQueue } from './handshake-queue.js';
import { LocalClientRegistry, type ClientRegistry } from './registry.js';
import { registerServerStatusRoutes, type ServerEvents } from './status-routes.js';

export type { ClientConnectionEvent, ServerEvents } from './status-routes.js';

/**
 * Connections the kernel may hold completed for the pipe port before the
 * server accepts them (capped by net.core.somaxconn). Node's default is
 * 511; a reconnect storm brings thousands within a second, and a SYN
 * dropped on a full queue costs its client a 1 s retransmission.
 */
const LISTEN_BACKLOG = 4096;
/**
 * Longest hold on handshakes at start while the extra accept handles come
 * (they come one event-loop turn each; handshakes started meanwhile would
 * make those turns long in a restart storm), ms. Connections are accepted
 * and wait meanwhile.
 */
const ACCEPT_HANDLES_HOLD_MS = 1000;

export interface ServerOptions {
  config: ServerConfig;
  /** The handler for the clients' events. @default new ServerExampleHandler() */
  handler?: ServerEventHandler;
  /**
   * Key, certificate, CA bundle and CRL; read from `config.certPath` when
   * omitted (and then that folder is watched: a change reloads it).
   */
  identity?: TlsIdentity;
  hooks?: ServerConnectionStateEvents;
  log?: Logger;
  stats?: Stats;
  registry?: ClientRegistry;
  /** Start the HTTP gateway too. @default true */
  gateway?: boolean;
  /** How long one handshake counts against `RP_SERVER_HANDSHAKES_MAX` at most, ms (see `HandshakeQueue`). @default 1000 */
  handshakeLeaseMs?: number;
}

/** What the server keeps of a connected client's certificate. */
interface ClientCertificate {
  readonly cert: X509Certificate;
  readonly chain: readonly X509Certificate[];
  readonly resumed: boolean;
}

/** The server node; its events are `ServerEvents` (`connection`, `closing`, `drained`, `identity`). */
export class RestPipeServer extends EventEmitter<ServerEvents> {
  readonly config: ServerConfig;
  readonly registry: ClientRegistry;
  readonly log: Logger;
  private readonly kit: NodeKit;
  private readonly hooks: ServerConnectionStateEvents;
  /** Does the handshakes; it never listens: `listener` accepts and `handshakes` hands it the sockets. */
  private readonly tlsServer: tls.Server;
  /** Accepts pipe connections, unread, for `handshakes` to pace. */
  private readonly listener: net.Server;
  /** More handles on the listener's socket, so that a busy event loop accepts several connections a turn. */
  private acceptHandles: net.Server[] = [];
  /** Settles once the helper that makes `acceptHandles` is gone. */
  private acceptHelperGone: Promise<unknown> = Promise.resolve();
  /** Aborted by `close()`. */
  private readonly stopping = new AbortController();
  private readonly handshakes: HandshakeQueue;
  /** Made by `start()` once the pipe listens (unless `gateway: false`). */
  private app: FastifyInstance | undefined;
  private readonly withGateway: boolean;
  private readonly sockets = new Set<tls.TLSSocket>();
  /** The certificate of each live exchange, for `/_restpipe/clients` and for the check on reload. */
  private readonly certificates = new Map<MessageExchange, ClientCertificate>();
  private readonly intermediates = new IntermediateCache();
  private watch: IdentityWatch | undefined;
  private idleSince: Date | undefined = new Date();
  private idleTimer: NodeJS.Timeout | undefined;
  private _gatewayAddress: string | undefined;
  private _cluster: Cluster | undefined;
  private _instanceName: string | undefined;
  private closing = false;

  constructor(opts: ServerOptions) {
    super();
    this.config = opts.config;
    this.kit = new NodeKit({
      side: 'server',
      config: opts.config,
      handler: opts.handler ?? new ServerExampleHandler(),
      identity: opts.identity,
      identityFiles: SERVER_IDENTITY_FILES,
      certPathVariable: 'RP_SERVER_CERT_PATH',
      log: opts.log,
      stats: opts.stats,
    });
    this.log = this.kit.log;
    this.registry = opts.registry ?? new LocalClientRegistry();
    this.hooks = opts.hooks ?? new ServerConnectionStateEvents();
    this.tlsServer = tls.createServer(
      {
        ...this.contextOptions(this.kit.identity),
        requestCert: true,
        // The accept checks decide (accept.ts): they say why, and a stale CRL does not turn everyone away.
        rejectUnauthorized: false,
        handshakeTimeout: opts.config.handshakeTimeoutMs,
      },
      (socket) => {
        this.handshakes.done(rawSocketOf(socket));
        this.onConnection(socket);
      },
    );
    this.tlsServer.on('tlsClientError', (err, socket) => {
      this.handshakes.done(rawSocketOf(socket));
      refuseHandshake(err, socket, this.kit);
    });
    this.handshakes = new HandshakeQueue({
      max: opts.config.handshakesMax,
      maxWaitMs: opts.config.handshakeQueueMs,
      leaseMs: opts.handshakeLeaseMs,
      stats: this.kit.stats,
      log: this.log,
      start: (socket) => this.tlsServer.emit('connection', socket),
    });
    this.listener = net.createServer({ pauseOnConnect: true }, (socket) => this.handshakes.admit(socket));
    this.withGateway = opts.gateway !== false;
  }

  /**
   * The pipe to a client: its exchange when it is connected here, else (in
   * a cluster) the way to the instance that holds it. Throws or rejects
   * with `UnknownClientError` when no one holds it, `ClusterUnavailableError`
   * when NATS is down, `InstanceGoneError` when its instance does not answer.
   */
  pipeFor(name: string): Pipe | Promise<Pipe> {
    if (this.closing) throw new ShuttingDownError();
    const exchange = this.registry.get(name);
    if (exchange && exchange.state !== 'closed') return exchange;
    if (this._cluster) return this._cluster.resolve(name);
    throw new UnknownClientError(name);
  }

  /** The names of the clients that take requests: this instance's, and in a cluster the other instances' too. */
  clientNames(): string[] {
    const names = [...this.registry.entries()].filter(([, ex]) => ex.ready).map(([name]) => name);
    if (!this._cluster) return names;
    const local = new Set(names);
    for (const name of this._cluster.remoteNames()) if (!local.has(name)) names.push(name);
    return names;
  }

  /** Whether a client of this name is connected: here, or in a cluster to another instance. */
  hasClient(name: string): boolean {
    const exchange = this.registry.get(name);
    if (exchange && exchange.state !== 'closed') return true;
    return this._cluster?.holds(name) ?? false;
  }

  /** This instance's part in a cluster, when `RP_SERVER_NATS_URL` is set and the server started. */
  get cluster(): Cluster | undefined {
    return this._cluster;
  }

  /** This instance's name in a cluster (`RP_SERVER_INSTANCE_NAME`, else `<hostname>:<pipe port>`); set by `start()`. */
  get instanceName(): string | undefined {
    return this._instanceName;
  }

  /** The exchange of a client connected to this instance; throws `UnknownClientError`. */
  exchangeFor(name: string): MessageExchange {
    if (this.closing) throw new ShuttingDownError();
    const exchange = this.registry.get(name);
    if (!exchange || exchange.state === 'closed') throw new UnknownClientError(name);
    return exchange;
  }

  /**
   * The secure context of an identity: key, certificate, the CA bundle and
   * its CRLs (OpenSSL then checks each client against its CA's CRL), the
   * TLS versions and ciphers of `RP_TLS_MIN_VERSION`, and session
   * resumption with ticket keys derived from the key and the bundle.
   */
  private contextOptions(id: LoadedIdentity): tls.SecureContextOptions & { ticketKeys: Buffer; sessionTimeout: number } {
    const cas = id.trust.cas.map((c) => c.cert);
    const crls = id.trust.crlPems();
    return {
      key: id.key,
      cert: id.cert,
      ca: id.ca,
      ...(crls.length > 0 ? { crl: crls } : {}),
      ...this.kit.tlsOptions(),
      sessionIdContext: sessionIdContext(cas),
      ticketKeys: deriveTicketKeys(id.key, cas),
      sessionTimeout: SESSION_TIMEOUT_S,
    };
  }

  /**
   * Reads the identity again (from `identity` if given, else from
   * `config.certPath`) and, when it changed, uses it for every new
   * handshake at once; live connections whose client certificate the new
   * CA bundle or CRL no longer admits get GoAway saying why and are closed
   * (counted in `connections.revoked`); every other connection is
   * untouched. A bad new identity keeps the current one (logged); this
   * never throws.
   */
  reloadIdentity(identity?: TlsIdentity): IdentityReload {
    return this.reloadFrom('call', identity);
  }

  /** SIGHUP (the executable's hook): `reloadIdentity()` from the folder. */
  reload(): void {
    this.reloadFrom('SIGHUP');
  }

  private reloadFrom(trigger: ReloadTrigger, identity?: TlsIdentity): IdentityReload {
    const result = this.kit.reloadIdentity((next) => this.applyIdentity(next), { identity, trigger });
    if (result.ok && result.changed) this.watch?.refresh();
    this.emit('identity', { ...result, trigger });
    return result;
  }

  /** Puts `next` in use for new handshakes, then closes the connections it does not admit; returns how many. */
  private applyIdentity(next: LoadedIdentity): number {
    const options = this.contextOptions(next);
    // Built once first so that a bad identity throws here, before the server changes anything.
    tls.createSecureContext(options);
    this.tlsServer.setSecureContext(options);
    let closed = 0;
    for (const [exchange, client] of this.certificates) {
      const problem = next.trust.check(client.cert, { intermediates: [...client.chain, ...this.intermediates.values()], checkTime: false });
      if (!problem) continue;
      closed++;
      this.kit.stats.increment('connections.revoked');
      this.log.warn(
        { client: exchange.peer.name, address: exchange.peer.address, code: problem.code, serial: client.cert.serialNumber },
        `closing a client's connection: ${problem.message}`,
      );
      const reason = `the server no longer accepts this client: ${problem.message}`;
      exchange.goAway(reason);
      exchange.close(new ShuttingDownError(reason), { flush: true });
    }
    return closed;
  }

  /** Listens for clients, then starts the gateway (and joins the cluster); throws `ConfigError` for cluster settings that do not fit. */
  async start(): Promise<void> {
    checkClusterSettings(this.config);
    // Only a cluster loads its modules: nats.js is a fifth of the server's start-up CPU.
    const clusterModule = this.config.natsUrl ? await import('./cluster/cluster.js') : undefined;
    // Not awaited: the pipe accepts on its own handle meanwhile, and these join it within moments.
    const added = extraAcceptHandles(this.listener, {
      count: this.config.acceptHandles - 1,
      onConnection: (socket) => this.handshakes.admit(socket),
      backlog: LISTEN_BACKLOG,
      log: this.log,
      signal: this.stopping.signal,
    });
    this.acceptHelperGone = added.gone;
    if (this.config.acceptHandles > 1) this.handshakes.holdUntil(added.ready, ACCEPT_HANDLES_HOLD_MS);
    void added.ready.then((handles) => {
      // Closing already: `close()` aborted the helper, so these came just before; they go too.
      if (this.closing) void closeServers(handles);
      else this.acceptHandles = handles;
    });
    this.listener.listen({ port: this.config.bindPort, host: this.config.bindInterface, backlog: LISTEN_BACKLOG });
    await once(this.listener, 'listening');
    const pipe = this.pipeAddress;
    this.log.info({ address: pipe.address, port: pipe.port }, 'pipe listening for clients');
    this._instanceName = this.config.instanceName ?? `${hostname()}:${pipe.port}`;
    if (clusterModule) this.joinCluster(clusterModule.Cluster, this._instanceName);
    this.kit.startIdentityMonitor();
    if (this.kit.identityFromFiles) this.watch = new IdentityWatch(this.config.certPath, () => this.reloadFrom('watch'), this.log);
    if (this.withGateway && !this.closing) {
      this.app = this.kit.createGateway({
        resolvePeer: (name) => this.pipeFor(name ?? ''),
        peerNames: () => this.clientNames(),
        routes: (app) => {
          registerServerStatusRoutes(app, this);
          registerDashboardRoutes(app, this);
        },
      });
      this._gatewayAddress = await this.kit.listenGateway(this.app);
    }
    this.idleTimer = setInterval(() => this.fireIdle(), this.config.idleHookIntervalMs);
    this.idleTimer.unref();
  }

  private joinCluster(ClusterClass: typeof Cluster, instance: string): void {
    const cluster = new ClusterClass({
      config: this.config,
      instance,
      log: this.log,
      stats: this.kit.stats,
      limits: this.config,
      localPipe: (name) => {
        const exchange = this.registry.get(name);
        return exchange && exchange.state !== 'closed' && !this.closing ? exchange : undefined;
      },
      localClients: () => [...this.registry.entries()].map(([name, ex]) => this.clientRecord(name, ex)),
      localClient: (name) => {
        const exchange = this.registry.get(name);
        return exchange ? this.clientRecord(name, exchange) : undefined;
      },
    });
    cluster.on('connection', (event) => this.emit('connection', { ...event, clients: this.registry.size + cluster.remoteCount() }));
    cluster.on('replaced', (name, byInstance) => {
      const exchange = this.registry.get(name);
      if (!exchange) return;
      const reason = `replaced by a newer connection with the same name on instance ${byInstance}`;
      this.log.warn(
        { client: name, address: exchange.peer.address, byInstance },
        'a client connected to another instance under the same name; closing its older connection here',
      );
      exchange.goAway(reason);
      exchange.close(new ShuttingDownError(reason));
    });
    this._cluster = cluster;
    cluster.start();
  }

  /** A client of this instance as the cluster's other instances see it. */
  private clientRecord(name: string, ex: MessageExchange): ClientRecord {
    const cert = this.certificates.get(ex)?.cert;
    return {
      name,
      instance: this._instanceName ?? '',
      address: ex.peer.address ?? null,
      connectedSince: ex.connectedAt.toISOString(),
      connectedAtMs: ex.connectedAt.getTime(),
      serial: cert?.serialNumber ?? null,
      certNotAfter: certNotAfter(cert),
      protocolVersion: ex.peerInfo?.version ?? null,
      agent: ex.peerInfo?.agent ?? null,
    };
  }

  /** Where the TLS listener is bound. */
  get pipeAddress(): AddressInfo {
    return this.listener.address() as AddressInfo;
  }

  /** `http://host:port` or the unix socket path of the gateway. */
  get gatewayAddress(): string | undefined {
    return this._gatewayAddress;
  }

  /** The server's health and counters, as `/_restpipe/status` answers. */
  status(): Record<string, unknown> {
    const pipe = this.listener.listening ? this.pipeAddress : undefined;
    return {
      side: 'server',
      pipe: this.closing ? 'draining' : pipe ? 'listening' : 'down',
      listening: pipe ? { address: pipe.address, port: pipe.port } : null,
      clients: this.registry.size,
      handshakes: { ...this.handshakes.status, acceptHandles: 1 + this.acceptHandles.length },
      ...(this._cluster
        ? { instance: this._instanceName, clusterClients: this.registry.size + this._cluster.remoteCount(), cluster: this._cluster.status() }
        : {}),
      uptimeS: this.kit.uptimeS(),
      identity: this.kit.identityStatus(),
      tls: { minVersion: this.kit.tlsOptions().minVersion },
      counters: this.kit.stats.counters(),
    };
  }

  /** The connected clients (in a cluster, every instance's, each with its `instance`), as `/_restpipe/clients` answers. */
  clients(): Array<Record<string, unknown>> {
    const local = this.localClients();
    if (!this._cluster) return local;
    const here = new Set(local.map((c) => c.name));
    const remote = this._cluster
      .remoteClients()
      .filter((c) => !here.has(c.name))
      .map((c) => ({
        name: c.name,
        address: c.address,
        connectedSince: c.connectedSince,
        rttMs: null,
        protocolVersion: c.protocolVersion,
        agent: c.agent,
        inFlight: null,
        serial: c.serial,
        certNotAfter: c.certNotAfter,
        tlsResumed: null,
        instance: c.instance,
      }));
    return [...local.map((c) => ({ ...c, instance: this._instanceName })), ...remote];
  }

  private localClients(): Array<Record<string, unknown>> {
    return [...this.registry.entries()].map(([name, ex]) => ({
      name,
      address: ex.peer.address ?? null,
      connectedSince: ex.connectedAt.toISOString(),
      rttMs: ex.rttMs === undefined ? null : Math.round(ex.rttMs * 1000) / 1000,
      protocolVersion: ex.peerInfo?.version ?? null,
      agent: ex.peerInfo?.agent ?? null,
      inFlight: ex.inFlight,
      serial: this.certificates.get(ex)?.cert.serialNumber ?? null,
      certNotAfter: certNotAfter(this.certificates.get(ex)?.cert),
      tlsResumed: this.certificates.get(ex)?.resumed ?? null,
    }));
  }

  /** The Fastify gateway, e.g. for `inject()`: made by `start()` once the pipe listens. */
  get gateway(): FastifyInstance | undefined {
    return this.app;
  }

  private onConnection(socket: tls.TLSSocket): void {
    const peer = acceptClient(socket, { log: this.log, stats: this.kit.stats, trust: this.kit.identity.trust, intermediates: this.intermediates });
    if (!peer) return;
    if (this.closing) {
      socket.destroy();
      return;
    }
    const { name, address } = peer;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const exchange = this.kit.openExchange(socket, { name, address });
    this.certificates.set(exchange, { cert: peer.cert, chain: peer.chain, resumed: peer.resumed });
    const replaced = this.registry.add(name, exchange);
    if (replaced) {
      // The newest connection wins: a client that reconnects after a
      // half-open link must not wait for the old one to time out.
      this.log.warn({ client: name, address, previous: replaced.peer.address }, 'a client connected again under the same name; closing its older connection');
      replaced.goAway('replaced by a newer connection with the same name');
      replaced.close(new ShuttingDownError('replaced by a newer connection with the same name'));
    }
    this.idleSince = undefined;
    this.kit.stats.increment('connections.added');
    this.kit.stats.gauge('clients.connected', this.registry.size);
    this.log.info({ client: name, address, clients: this.registry.size, tlsResumed: peer.resumed }, 'client connected');
    this.kit.callHook('connection_added', () => this.hooks.connection_added(name, this.registry.size));
    this._cluster?.localConnected(this.clientRecord(name, exchange));
    this.emit('connection', { type: 'connected', name, address, time: new Date().toISOString(), clients: this.registry.size, ...this.instanceField() });
    exchange.once('close', (err) => {
      this.certificates.delete(exchange);
      const removed = this.registry.remove(name, exchange);
      this.kit.stats.increment('connections.removed');
      this.kit.stats.gauge('clients.connected', this.registry.size);
      this.log.info({ client: name, address, reason: err?.message, clients: this.registry.size }, 'client disconnected');
      this.emit('connection', { type: 'disconnected', name, address, time: new Date().toISOString(), clients: this.registry.size, ...this.instanceField() });
      if (!removed) return; // replaced: the newer connection stays registered
      this._cluster?.localDisconnected(name, exchange.connectedAt.getTime());
      if (this.registry.size === 0) this.idleSince = new Date();
      this.kit.callHook('connection_removed', () => this.hooks.connection_removed(name, this.registry.size));
    });
  }

  /** `{ instance }` for events in a cluster, else nothing. */
  private instanceField(): { instance?: string } {
    return this._cluster ? { instance: this._instanceName } : {};
  }

  private fireIdle(): void {
    if (this.idleSince === undefined || this.registry.size > 0) return;
    const since = this.idleSince;
    this.kit.callHook('idle', () => this.hooks.idle(since, Math.round((Date.now() - since.getTime()) / 1000)));
  }

  /**
   * Stops: the gateway takes no new requests, every client gets GoAway,
   * requests in flight may finish for `graceMs`, then everything closes.
   */
  async close(graceMs = this.config.drainGraceMs): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.watch?.close();
    this.kit.stopIdentityMonitor();
    this.emit('closing');
    this.listener.close();
    // Every handle stops accepting now: those in place, and (aborted) those still on their way.
    const handlesClosed = closeServers(this.acceptHandles);
    this.stopping.abort();
    this.handshakes.close();
    const gatewayClosed = this.app?.close();
    await Promise.all([...this.registry.entries()].map(([, exchange]) => drainAndClose(exchange, 'the server is shutting down', graceMs)));
    // Its clients' disconnects went out to the cluster; requests forwarded here are done.
    await this._cluster?.close(Math.min(graceMs, 1000));
    // Every client's `disconnected` event is out: event streams end here,
    // which would otherwise hold the gateway open.
    this.emit('drained');
    await gatewayClosed;
    await Promise.all([handlesClosed, this.acceptHelperGone]);
    for (const socket of this.sockets) socket.destroy();
  }
}

/** Closes listening servers; resolves when all are closed. */
function closeServers(servers: readonly net.Server[]): Promise<unknown> {
  return Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
}

/**
 * The accepted socket a TLS socket was made from (`HandshakeQueue` counts
 * those). Node's `TLSSocket` keeps it as `_parent`; were that ever gone,
 * the slot would still free when the socket closes or its lease ends.
 */
function rawSocketOf(socket: tls.TLSSocket): net.Socket | undefined {
  return (socket as unknown as { _parent?: net.Socket })._parent;
}

/** A certificate's notAfter as ISO text, or null. */
function certNotAfter(cert: X509Certificate | undefined): string | null {
  if (!cert) return null;
  const time = Date.parse(cert.validTo);
  return Number.isNaN(time) ? null : new Date(time).toISOString();
}

/** Drains `exchange` and resolves once it has closed (its `close` listeners have run). */
function drainAndClose(exchange: MessageExchange, reason: string, graceMs: number): Promise<unknown> {
  if (exchange.state === 'closed') return exchange.drain(reason, graceMs);
  const closed = new Promise((resolve) => exchange.once('close', resolve));
  return Promise.all([exchange.drain(reason, graceMs), closed]);
}
