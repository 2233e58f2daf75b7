/**
 * The RestPipe client agent: dials the server over mutual TLS, keeps the pipe
 * up (reconnecting with backoff, never giving up), and runs the client
 * gateway (`/server/<noun>`) that sends events to the server.
 */
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import tls from 'node:tls';
import {
  type CountingStats,
  IdentityError,
  NodeKit,
  PeerNotConnectedError,
  SERVER_AUTH_OID,
  ShuttingDownError,
  allowsUsage,
  certificateName,
  type Logger,
  type MessageExchange,
  type Stats,
  type TlsIdentity,
} from '@restpipe/shared';
import type { FastifyInstance } from 'fastify';
import { Backoff } from './backoff.js';
import { CLIENT_IDENTITY_FILES, type ClientConfig } from './config.js';
import { registerClientDashboard } from './dashboard.js';
import { ClientConnectionStateEvents, ClientExampleHandler, type ClientEventHandler } from './handler.js';

export interface ClientOptions {
  config: ClientConfig;
  /** The handler for the server's events. @default new ClientExampleHandler() */
  handler?: ClientEventHandler;
  /** Key, certificate and CA; read from `config.certPath` when omitted. */
  identity?: TlsIdentity;
  hooks?: ClientConnectionStateEvents;
  log?: Logger;
  stats?: Stats;
  /** Start the HTTP gateway too. @default true */
  gateway?: boolean;
}

/** The client's connection state; `transition()` allows only the moves listed here. */
export type ClientState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'closed';

const TRANSITIONS: Readonly<Record<ClientState, readonly ClientState[]>> = {
  idle: ['connecting', 'closed'],
  connecting: ['connected', 'waiting', 'closed'],
  connected: ['waiting', 'connecting', 'closed'],
  waiting: ['connecting', 'closed'],
  closed: [],
};

/** Status events: a union with a `type` field. */
export type ClientStatusEvent =
  | { type: 'connected'; exchange: MessageExchange; attempts: number }
  | { type: 'disconnected'; error: Error | undefined }
  | { type: 'connect_failed'; attempts: number; error: Error }
  | { type: 'state'; from: ClientState; to: ClientState };

export class RestPipeClient extends EventEmitter<{ status: [ClientStatusEvent] }> {
  readonly config: ClientConfig;
  readonly log: Logger;
  private readonly kit: NodeKit;
  private readonly stats: CountingStats;
  private readonly hooks: ClientConnectionStateEvents;
  private readonly secureContext: tls.SecureContext;
  private readonly backoff: Backoff;
  private readonly app: FastifyInstance | undefined;
  private _state: ClientState = 'idle';
  private _exchange: MessageExchange | undefined;
  private attempts = 0;
  private lastDisconnectedAt: Date | undefined;
  private dialing: tls.TLSSocket | undefined;
  private _gatewayAddress: string | undefined;
  private loop: Promise<void> | undefined;

  constructor(opts: ClientOptions) {
    super();
    this.config = opts.config;
    this.kit = new NodeKit({
      side: 'client',
      config: opts.config,
      handler: opts.handler ?? new ClientExampleHandler(),
      identity: opts.identity,
      identityFiles: CLIENT_IDENTITY_FILES,
      certPathVariable: 'RP_CLIENT_CERT_PATH',
      log: opts.log,
      stats: opts.stats,
    });
    this.log = this.kit.log;
    this.stats = this.kit.stats;
    this.hooks = opts.hooks ?? new ClientConnectionStateEvents();
    const identity = this.kit.identity;
    // One context for every reconnect: the key and certificates are parsed once.
    this.secureContext = tls.createSecureContext({ key: identity.key, cert: identity.cert, ca: identity.ca, minVersion: 'TLSv1.2' });
    this.backoff = new Backoff({ initialMs: opts.config.reconnectInitialMs, maxMs: opts.config.reconnectMaxMs });
    this.app =
      opts.gateway === false
        ? undefined
        : this.kit.createGateway({
            routes: (app) => {
              app.get('/_restpipe/status', async (_request, reply) => {
                const status = this.status();
                return reply.code(status.pipe === 'up' ? 200 : 503).send(status);
              });
              registerClientDashboard(app, this);
            },
            resolvePeer: (_name, deadlineMs, caller) => {
              const exchange = this._exchange;
              return exchange?.ready ? exchange : this.waitForPipe(Math.min(deadlineMs, this.config.connectWaitMs), caller.signal);
            },
          });
  }

  get state(): ClientState {
    return this._state;
  }

  /** The exchange of the pipe while it is up. */
  get exchange(): MessageExchange | undefined {
    return this._exchange;
  }

  /** The pipe's health and counters, as `/_restpipe/status` answers (503 while the pipe is down). */
  status(): { pipe: 'up' | 'down' } & Record<string, unknown> {
    const ex = this._exchange;
    const up = ex?.ready === true;
    return {
      side: 'client',
      pipe: up ? 'up' : 'down',
      state: this._state,
      server: `${this.config.targetHostname}:${this.config.targetPort}`,
      peer: up
        ? { name: ex.peer.name, address: ex.peer.address ?? null, agent: ex.peerInfo?.agent ?? null, protocolVersion: ex.peerInfo?.version ?? null }
        : null,
      connectedSince: up ? ex.connectedAt.toISOString() : null,
      lastDisconnectedAt: this.lastDisconnectedAt?.toISOString() ?? null,
      rttMs: up && ex.rttMs !== undefined ? Math.round(ex.rttMs * 1000) / 1000 : null,
      inFlight: ex?.inFlight ?? null,
      uptimeS: this.kit.uptimeS(),
      counters: this.stats.counters(),
    };
  }

  get gatewayAddress(): string | undefined {
    return this._gatewayAddress;
  }

  get gateway(): FastifyInstance | undefined {
    return this.app;
  }

  private transition(to: ClientState): void {
    const from = this._state;
    if (!TRANSITIONS[from].includes(to)) {
      this.log.error({ from, to }, 'illegal client state transition');
      throw new Error(`illegal client state transition ${from} → ${to}`);
    }
    this._state = to;
    this.log.debug({ from, to }, 'client state');
    this.emit('status', { type: 'state', from, to });
  }

  /** Starts the gateway and the connection loop; does not wait for the pipe. */
  async start(): Promise<void> {
    if (this.app) this._gatewayAddress = await this.kit.listenGateway(this.app);
    this.loop = this.run();
  }

  /** Resolves with the exchange once the pipe is up (at once if it is). */
  waitForPipe(timeoutMs: number, signal?: AbortSignal): Promise<MessageExchange> {
    if (this._state === 'closed') return Promise.reject(new ShuttingDownError());
    const current = this._exchange;
    if (current?.ready) return Promise.resolve(current);
    return new Promise<MessageExchange>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.off('status', onStatus);
        signal?.removeEventListener('abort', onAbort);
      };
      const onStatus = (event: ClientStatusEvent) => {
        if (event.type === 'connected') {
          done();
          resolve(event.exchange);
        } else if (event.type === 'state' && event.to === 'closed') {
          done();
          reject(new ShuttingDownError());
        }
      };
      const onAbort = () => {
        done();
        reject(signal?.reason);
      };
      const timer = setTimeout(() => {
        done();
        reject(new PeerNotConnectedError(`the pipe to the server at ${this.config.targetHostname}:${this.config.targetPort} is down (waited ${timeoutMs} ms)`));
      }, timeoutMs);
      this.on('status', onStatus);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The connection loop: exactly one runs per client, until `close()`. */
  private async run(): Promise<void> {
    while (this._state !== 'closed') {
      this.transition('connecting');
      this.attempts++;
      let exchange: MessageExchange;
      try {
        exchange = await this.connectOnce();
      } catch (err) {
        if (this.isClosed()) return;
        const error = err as Error;
        this.stats.increment('connect.failures');
        this.log.warn({ attempts: this.attempts, err: error.message }, 'could not connect to the server');
        this.emit('status', { type: 'connect_failed', attempts: this.attempts, error });
        this.callHook('connect_fail', () => this.hooks.connect_fail(this.attempts, error));
        this.transition('waiting');
        await this.backoff.wait();
        continue;
      }
      if (this.isClosed()) {
        exchange.close();
        return;
      }
      const attempts = this.attempts;
      const connectedAt = Date.now();
      this._exchange = exchange;
      this.attempts = 0;
      this.transition('connected');
      this.stats.increment('connect.successes');
      this.log.info({ server: `${this.config.targetHostname}:${this.config.targetPort}`, attempts }, 'connected to the server');
      this.emit('status', { type: 'connected', exchange, attempts });
      this.callHook('connect_success', () => this.hooks.connect_success(attempts, this.lastDisconnectedAt));
      const error = await new Promise<Error | undefined>((resolve) => exchange.once('close', resolve));
      this._exchange = undefined;
      this.lastDisconnectedAt = new Date();
      if (this.isClosed()) return;
      this.stats.increment('connect.broken');
      if (exchange.peerGoingAway) this.log.info({ reason: error?.message }, 'the server sent this client away; reconnecting');
      else this.log.warn({ err: error?.message }, 'the pipe to the server broke');
      this.emit('status', { type: 'disconnected', error });
      if (Date.now() - connectedAt >= this.config.reconnectStableMs) this.backoff.reset();
      this.transition('waiting');
      await this.backoff.wait();
    }
  }

  private isClosed(): boolean {
    return this._state === 'closed';
  }

  /** One attempt: TCP, TLS with both sides verified, then the peer's Hello. */
  private connectOnce(): Promise<MessageExchange> {
    const { targetHostname: host, targetPort: port, targetServername: servername } = this.config;
    this.stats.increment('connect.attempts');
    return new Promise<MessageExchange>((resolve, reject) => {
      const socket = tls.connect({
        host,
        port,
        secureContext: this.secureContext,
        // SNI carries names only, never IP addresses (RFC 6066 §3).
        servername: isIP(servername) ? undefined : servername,
        rejectUnauthorized: true,
        checkServerIdentity: (_host, cert) => {
          const err = tls.checkServerIdentity(servername, cert);
          if (err) return err;
          if (!allowsUsage(cert, SERVER_AUTH_OID)) {
            return new IdentityError(`the server's certificate (${certificateName(cert) ?? 'no name'}) does not allow server authentication`);
          }
          return undefined;
        },
      });
      this.dialing = socket;
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.dialing = undefined;
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(
        () => fail(new Error(`connecting to ${host}:${port} took over ${this.config.connectTimeoutMs} ms`)),
        this.config.connectTimeoutMs,
      );
      socket.once('error', fail);
      socket.once('close', () => fail(new Error('the server closed the connection during the handshake')));
      socket.once('secureConnect', () => {
        const exchange = this.kit.openExchange(socket, {
          name: certificateName(socket.getPeerX509Certificate()) ?? servername,
          address: `${socket.remoteAddress}:${socket.remotePort}`,
        });
        socket.off('error', fail);
        exchange.once('close', (err) => fail(err ?? new Error('the pipe closed before the server said hello')));
        exchange.once('ready', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          this.dialing = undefined;
          resolve(exchange);
        });
      });
    });
  }

  private callHook(name: string, call: () => void | Promise<void>): void {
    this.kit.callHook(name, call);
  }

  /**
   * Stops: the gateway takes no new requests, the server gets GoAway,
   * requests in flight may finish for `graceMs`, then the pipe closes.
   */
  async close(graceMs = this.config.drainGraceMs): Promise<void> {
    if (this._state === 'closed') return;
    this.transition('closed');
    this.backoff.close();
    this.dialing?.destroy();
    const exchange = this._exchange;
    await Promise.all([this.app?.close(), exchange?.drain('the client is shutting down', graceMs)]);
    await this.loop;
  }
}
