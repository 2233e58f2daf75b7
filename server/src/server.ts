/**
 * The RestPipe server: a mutual-TLS listener that knows each client by its
 * certificate name, a registry of connected clients, and the server gateway
 * (`/client/<name>/<noun>`) that sends events to them.
 */
import { EventEmitter, once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import {
  CLIENT_AUTH_OID,
  Dispatcher,
  MessageExchange,
  UnknownClientError,
  CountingStats,
  allowsUsage,
  callHook,
  certificateName,
  createGateway,
  listenGateway,
  loadIdentity,
  nullStats,
  ShuttingDownError,
  type Logger,
  type Stats,
  type TlsIdentity,
} from '@restpipe/shared';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { SERVER_IDENTITY_FILES, type ServerConfig } from './config.js';
import { ServerConnectionStateEvents, ServerExampleHandler, type ServerEventHandler } from './handler.js';
import { LocalClientRegistry, type ClientRegistry } from './registry.js';

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

/** A client connected or disconnected, as `/_restpipe/events` sends it. */
export interface ClientConnectionEvent {
  type: 'connected' | 'disconnected';
  name: string;
  address: string | undefined;
  time: string;
  clients: number;
}

/**
 * `connection`: a client connected or disconnected. `closing`: `close()` began.
 * `drained`: every client was drained and its `disconnected` event emitted.
 */
export class RestPipeServer extends EventEmitter<{ connection: [ClientConnectionEvent]; closing: []; drained: [] }> {
  readonly config: ServerConfig;
  readonly registry: ClientRegistry;
  readonly log: Logger;
  private readonly stats: CountingStats;
  private readonly startedAt = Date.now();
  private readonly dispatcher: Dispatcher;
  private readonly hooks: ServerConnectionStateEvents;
  private readonly identity: TlsIdentity;
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
    this.log = opts.log ?? pino({ name: 'restpipe-server', level: opts.config.logLevel });
    this.stats = new CountingStats(opts.stats ?? nullStats);
    this.registry = opts.registry ?? new LocalClientRegistry();
    this.hooks = opts.hooks ?? new ServerConnectionStateEvents();
    this.dispatcher = new Dispatcher(opts.handler ?? new ServerExampleHandler());
    this.identity = opts.identity ?? loadIdentity(opts.config.certPath, SERVER_IDENTITY_FILES, 'RP_SERVER_CERT_PATH');
    this.tlsServer = tls.createServer(
      {
        key: this.identity.key,
        cert: this.identity.cert,
        ca: this.identity.ca,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
        handshakeTimeout: opts.config.handshakeTimeoutMs,
      },
      (socket) => this.onConnection(socket),
    );
    this.tlsServer.on('tlsClientError', (err, socket) => {
      this.stats.increment('connections.refused');
      this.log.warn(
        { err: err.message, code: (err as NodeJS.ErrnoException).code, address: socket.remoteAddress },
        'refused a connection: TLS handshake failed',
      );
      // Node reports a handshake timeout here but leaves the socket open.
      socket.destroy();
    });
    this.app =
      opts.gateway === false
        ? undefined
        : createGateway({
            side: 'server',
            log: this.log,
            stats: this.stats,
            streamChunkBytes: opts.config.streamChunkBytes,
            maxBodyBytes: opts.config.maxBodyBytes,
            defaultDeadlineMs: opts.config.requestTimeoutMs,
            maxDeadlineMs: opts.config.maxRequestTimeoutMs,
            resolvePeer: (name) => this.exchangeFor(name ?? ''),
            peerNames: () => [...this.registry.entries()].filter(([, ex]) => ex.ready).map(([name]) => name),
            routes: (app) => registerServerStatusRoutes(app, this),
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
    if (this.app) {
      this._gatewayAddress = await listenGateway(this.app, this.config.gateway);
      this.log.info({ gateway: this._gatewayAddress }, 'gateway listening');
    }
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
      uptimeS: Math.round((Date.now() - this.startedAt) / 1000),
      counters: this.stats.counters(),
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
    const cert = socket.getPeerCertificate();
    const name = certificateName(cert);
    const address = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : undefined;
    if (!name || !allowsUsage(cert, CLIENT_AUTH_OID)) {
      this.stats.increment('connections.refused');
      this.log.warn(
        { address, name },
        name ? 'refused a client: its certificate does not allow client authentication' : 'refused a client: its certificate has no common name',
      );
      socket.destroy();
      return;
    }
    if (this.closing) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const exchange = new MessageExchange({
      socket,
      role: 'server',
      peer: { name, address },
      dispatcher: this.dispatcher,
      log: this.log,
      stats: this.stats,
      limits: this.config,
    });
    const replaced = this.registry.add(name, exchange);
    if (replaced) {
      // The newest connection wins: a client that reconnects after a
      // half-open link must not wait for the old one to time out.
      this.log.warn({ client: name, address, previous: replaced.peer.address }, 'a client connected again under the same name; closing its older connection');
      replaced.goAway('replaced by a newer connection with the same name');
      replaced.close(new ShuttingDownError('replaced by a newer connection with the same name'));
    }
    this.idleSince = undefined;
    this.stats.increment('connections.added');
    this.stats.gauge('clients.connected', this.registry.size);
    this.log.info({ client: name, address, clients: this.registry.size }, 'client connected');
    this.callHook('connection_added', () => this.hooks.connection_added(name, this.registry.size));
    this.emit('connection', { type: 'connected', name, address, time: new Date().toISOString(), clients: this.registry.size });
    exchange.once('close', (err) => {
      const removed = this.registry.remove(name, exchange);
      this.stats.increment('connections.removed');
      this.stats.gauge('clients.connected', this.registry.size);
      this.log.info({ client: name, address, reason: err?.message, clients: this.registry.size }, 'client disconnected');
      this.emit('connection', { type: 'disconnected', name, address, time: new Date().toISOString(), clients: this.registry.size });
      if (!removed) return; // replaced: the newer connection stays registered
      if (this.registry.size === 0) this.idleSince = new Date();
      this.callHook('connection_removed', () => this.hooks.connection_removed(name, this.registry.size));
    });
  }

  private fireIdle(): void {
    if (this.idleSince === undefined || this.registry.size > 0) return;
    const since = this.idleSince;
    this.callHook('idle', () => this.hooks.idle(since, Math.round((Date.now() - since.getTime()) / 1000)));
  }

  private callHook(name: string, call: () => void | Promise<void>): void {
    callHook(this.log, name, call);
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

/** `/_restpipe/status`, `/_restpipe/clients` and `/_restpipe/events` (Server-Sent Events). */
function registerServerStatusRoutes(app: FastifyInstance, server: RestPipeServer): void {
  app.get('/_restpipe/status', async (_request, reply) => {
    const status = server.status();
    return reply.code(status.pipe === 'listening' ? 200 : 503).send(status);
  });
  app.get('/_restpipe/clients', async () => server.clients());
  app.get('/_restpipe/events', (_request, reply) => {
    reply.hijack();
    const stream = new EventStream(reply.raw, server.log);
    const snapshot = server.clients().map((client) =>
      formatEvent({
        type: 'connected',
        name: String(client.name),
        address: (client.address as string | null) ?? undefined,
        time: String(client.connectedSince),
        clients: server.registry.size,
      }),
    );
    stream.open(`: connected clients follow as "connected" events\n\n${snapshot.join('')}`);
    const send = (event: ClientConnectionEvent) => stream.write(formatEvent(event));
    const end = () => stream.end();
    // A comment line now and then keeps proxies from closing an idle stream.
    const keepAlive = setInterval(() => stream.write(': keep-alive\n\n'), 15_000);
    keepAlive.unref();
    server.on('connection', send);
    server.once('drained', end);
    stream.onStop(() => {
      clearInterval(keepAlive);
      server.off('connection', send);
      server.off('drained', end);
    });
  });
}

function formatEvent(event: ClientConnectionEvent): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/**
 * How far (in bytes not yet taken by the socket) a subscriber may fall
 * behind live events before it is cut off: a subscriber that stops reading
 * must not grow the server's memory without bound.
 */
const EVENT_STREAM_MAX_BEHIND_BYTES = 4 * 1024 * 1024;

/**
 * One `/_restpipe/events` subscriber. Nothing it does can throw into the
 * server: writes after the end or after it went away are dropped, response
 * errors are logged at debug, and one that falls too far behind is cut off.
 */
class EventStream {
  private stopped = false;
  private allowanceBytes = EVENT_STREAM_MAX_BEHIND_BYTES;
  private readonly stopListeners: Array<() => void> = [];

  constructor(
    private readonly res: ServerResponse,
    private readonly log: Logger,
  ) {
    // A write to a socket the subscriber reset reports here; never unhandled.
    res.on('error', (err) => log.debug({ err }, 'an event stream failed'));
    res.once('close', () => this.stop());
  }

  /** Sends the head and the snapshot; the snapshot does not count as falling behind. */
  open(first: string): void {
    this.res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    this.allowanceBytes += Buffer.byteLength(first);
    this.res.write(first);
  }

  onStop(listener: () => void): void {
    if (this.stopped) listener();
    else this.stopListeners.push(listener);
  }

  write(text: string): void {
    if (this.stopped || this.gone) return;
    if (this.res.writableLength > this.allowanceBytes) {
      this.log.warn({ behindBytes: this.res.writableLength }, 'an event stream subscriber fell too far behind; closing its stream');
      this.stop();
      this.res.destroy();
      return;
    }
    this.res.write(text);
  }

  /** Ends the stream and its connection (the server stops: the connection must not linger idle). */
  end(): void {
    if (this.stopped) return;
    this.stop();
    if (this.gone) return;
    const socket = this.res.socket;
    this.res.end(() => socket?.end());
  }

  /** Ended or destroyed: a write now would fail (`writable` stays true on a response). */
  private get gone(): boolean {
    return this.res.writableEnded || this.res.destroyed;
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const listener of this.stopListeners.splice(0)) listener();
  }
}
