/**
 * The RestPipe server: a mutual-TLS listener that knows each client by its
 * certificate name, a registry of connected clients, and the server gateway
 * (`/client/<name>/<noun>`) that sends events to them.
 */
import { EventEmitter, once } from 'node:events';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { NodeKit, ShuttingDownError, UnknownClientError, type Logger, type MessageExchange, type Stats, type TlsIdentity } from '@restpipe/shared';
import type { FastifyInstance } from 'fastify';
import { acceptClient, refuseHandshake } from './accept.js';
import { SERVER_IDENTITY_FILES, type ServerConfig } from './config.js';
import { registerDashboardRoutes } from './dashboard/routes.js';
import { ServerConnectionStateEvents, ServerExampleHandler, type ServerEventHandler } from './handler.js';
import { LocalClientRegistry, type ClientRegistry } from './registry.js';
import { registerServerStatusRoutes, type ServerEvents } from './status-routes.js';

export type { ClientConnectionEvent, ServerEvents } from './status-routes.js';

export interface ServerOptions {
  config: ServerConfig;
  /** The handler for the clients' events. @default new ServerExampleHandler() */
  handler?: ServerEventHandler;
  /** Key, certificate and CA; read from `config.certPath` when omitted. */
  identity?: TlsIdentity;
  hooks?: ServerConnectionStateEvents;
  log?: Logger;
  stats?: Stats;
  registry?: ClientRegistry;
  /** Start the HTTP gateway too. @default true */
  gateway?: boolean;
}

/** The server node; its events are `ServerEvents` (`connection`, `closing`, `drained`). */
export class RestPipeServer extends EventEmitter<ServerEvents> {
  readonly config: ServerConfig;
  readonly registry: ClientRegistry;
  readonly log: Logger;
  private readonly kit: NodeKit;
  private readonly hooks: ServerConnectionStateEvents;
  private readonly tlsServer: tls.Server;
  private readonly app: FastifyInstance | undefined;
  private readonly sockets = new Set<tls.TLSSocket>();
  private idleSince: Date | undefined = new Date();
  private idleTimer: NodeJS.Timeout | undefined;
  private _gatewayAddress: string | undefined;
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
    const identity = this.kit.identity;
    this.tlsServer = tls.createServer(
      {
        key: identity.key,
        cert: identity.cert,
        ca: identity.ca,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
        handshakeTimeout: opts.config.handshakeTimeoutMs,
      },
      (socket) => this.onConnection(socket),
    );
    this.tlsServer.on('tlsClientError', (err, socket) => refuseHandshake(err, socket, this.kit));
    this.app =
      opts.gateway === false
        ? undefined
        : this.kit.createGateway({
            resolvePeer: (name) => this.exchangeFor(name ?? ''),
            peerNames: () => [...this.registry.entries()].filter(([, ex]) => ex.ready).map(([name]) => name),
            routes: (app) => {
              registerServerStatusRoutes(app, this);
              registerDashboardRoutes(app, this);
            },
          });
  }

  /** The exchange of a connected client; throws `UnknownClientError`. */
  exchangeFor(name: string): MessageExchange {
    if (this.closing) throw new ShuttingDownError();
    const exchange = this.registry.get(name);
    if (!exchange || exchange.state === 'closed') throw new UnknownClientError(name);
    return exchange;
  }

  /** Listens for clients, then starts the gateway. */
  async start(): Promise<void> {
    this.tlsServer.listen(this.config.bindPort, this.config.bindInterface);
    await once(this.tlsServer, 'listening');
    const pipe = this.pipeAddress;
    this.log.info({ address: pipe.address, port: pipe.port }, 'pipe listening for clients');
    if (this.app) this._gatewayAddress = await this.kit.listenGateway(this.app);
    this.idleTimer = setInterval(() => this.fireIdle(), this.config.idleHookIntervalMs);
    this.idleTimer.unref();
  }

  /** Where the TLS listener is bound. */
  get pipeAddress(): AddressInfo {
    return this.tlsServer.address() as AddressInfo;
  }

  /** `http://host:port` or the unix socket path of the gateway. */
  get gatewayAddress(): string | undefined {
    return this._gatewayAddress;
  }

  /** The server's health and counters, as `/_restpipe/status` answers. */
  status(): Record<string, unknown> {
    const pipe = this.tlsServer.listening ? this.pipeAddress : undefined;
    return {
      side: 'server',
      pipe: this.closing ? 'draining' : pipe ? 'listening' : 'down',
      listening: pipe ? { address: pipe.address, port: pipe.port } : null,
      clients: this.registry.size,
      uptimeS: this.kit.uptimeS(),
      counters: this.kit.stats.counters(),
    };
  }

  /** The connected clients, as `/_restpipe/clients` answers. */
  clients(): Array<Record<string, unknown>> {
    return [...this.registry.entries()].map(([name, ex]) => ({
      name,
      address: ex.peer.address ?? null,
      connectedSince: ex.connectedAt.toISOString(),
      rttMs: ex.rttMs === undefined ? null : Math.round(ex.rttMs * 1000) / 1000,
      protocolVersion: ex.peerInfo?.version ?? null,
      agent: ex.peerInfo?.agent ?? null,
      inFlight: ex.inFlight,
    }));
  }

  /** The Fastify gateway, e.g. for `inject()`. */
  get gateway(): FastifyInstance | undefined {
    return this.app;
  }

  private onConnection(socket: tls.TLSSocket): void {
    const peer = acceptClient(socket, this.kit);
    if (!peer) return;
    if (this.closing) {
      socket.destroy();
      return;
    }
    const { name, address } = peer;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const exchange = this.kit.openExchange(socket, peer);
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
    this.log.info({ client: name, address, clients: this.registry.size }, 'client connected');
    this.kit.callHook('connection_added', () => this.hooks.connection_added(name, this.registry.size));
    this.emit('connection', { type: 'connected', name, address, time: new Date().toISOString(), clients: this.registry.size });
    exchange.once('close', (err) => {
      const removed = this.registry.remove(name, exchange);
      this.kit.stats.increment('connections.removed');
      this.kit.stats.gauge('clients.connected', this.registry.size);
      this.log.info({ client: name, address, reason: err?.message, clients: this.registry.size }, 'client disconnected');
      this.emit('connection', { type: 'disconnected', name, address, time: new Date().toISOString(), clients: this.registry.size });
      if (!removed) return; // replaced: the newer connection stays registered
      if (this.registry.size === 0) this.idleSince = new Date();
      this.kit.callHook('connection_removed', () => this.hooks.connection_removed(name, this.registry.size));
    });
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
    this.emit('closing');
    this.tlsServer.close();
    const gatewayClosed = this.app?.close();
    await Promise.all([...this.registry.entries()].map(([, exchange]) => drainAndClose(exchange, 'the server is shutting down', graceMs)));
    // Every client's `disconnected` event is out: event streams end here,
    // which would otherwise hold the gateway open.
    this.emit('drained');
    await gatewayClosed;
    for (const socket of this.sockets) socket.destroy();
  }
}

/** Drains `exchange` and resolves once it has closed (its `close` listeners have run). */
function drainAndClose(exchange: MessageExchange, reason: string, graceMs: number): Promise<unknown> {
  if (exchange.state === 'closed') return exchange.drain(reason, graceMs);
  const closed = new Promise((resolve) => exchange.once('close', resolve));
  return Promise.all([exchange.drain(reason, graceMs), closed]);
}
