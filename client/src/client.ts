/**
 * The RestPipe client agent: dials the server over mutual TLS, keeps the pipe
 * up (reconnecting with backoff, never giving up), and runs the client
 * gateway (`/server/<noun>`) that sends events to the server. Given several
 * servers (the instances of a cluster) it fails over from one to the next
 * (see `TargetRotation`). A reconnect resumes the last TLS session with that
 * server when it still honours its ticket, so a fleet coming back after a
 * server restart costs the server little.
 * The identity reloads without a restart (SIGHUP, `reloadIdentity()`).
 */
import type { X509Certificate } from 'node:crypto';
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
  peerChain,
  type IdentityReload,
  type LoadedIdentity,
  type Logger,
  type MessageExchange,
  type ReloadTrigger,
  type Stats,
  type TlsIdentity,
} from '@restpipe/shared';
import type { FastifyInstance } from 'fastify';
import { Backoff } from './backoff.js';
import { CLIENT_IDENTITY_FILES, type ClientConfig } from './config.js';
import { registerClientDashboard } from './dashboard.js';
import { ClientConnectionStateEvents, ClientExampleHandler, type ClientEventHandler } from './handler.js';
import { type Target, TargetRotation, targetAddress } from './targets.js';

export interface ClientOptions {
  config: ClientConfig;
  /** The handler for the server's events. @default new ClientExampleHandler() */
  handler?: ClientEventHandler;
  /** Key, certificate, CA bundle and (optional) CRL; read from `config.certPath` when omitted. */
  identity?: TlsIdentity;
  hooks?: ClientConnectionStateEvents;
  log?: Logger;
  stats?: Stats;
  /** Start the HTTP gateway too. @default true */
  gateway?: boolean;
  /** Random numbers in [0, 1) for the shuffle of the targets and the backoff's jitter; injectable for tests. @default Math.random */
  random?: () => number;
}

/** The client's connection state; `transition()` allows only the moves listed here. */
export type ClientState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'closed';

const TRANSITIONS: Readonly<Record<ClientState, readonly ClientState[]>> = {
  idle: ['connecting', 'closed'],
  // connecting → connecting: the attempt failed and the next target of the list is dialed at once.
  connecting: ['connected', 'waiting', 'connecting', 'closed'],
  connected: ['waiting', 'connecting', 'closed'],
  waiting: ['connecting', 'closed'],
  closed: [],
};

/**
 * Status events: a union with a `type` field. `target`: the server
 * (`host:port`) dialed. `resumed`: the TLS handshake resumed an earlier
 * session (the client always says on `connected`; on `connect_failed` only
 * when a handshake completed). `disconnected` comes when the pipe broke or
 * the server sent GoAway (requests in flight may still finish then).
 * `identity`: a reload ran.
 */
export type ClientStatusEvent =
  | { type: 'connected'; exchange: MessageExchange; attempts: number; target: string; resumed?: boolean }
  | { type: 'disconnected'; error: Error | undefined; target: string }
  | { type: 'connect_failed'; attempts: number; error: Error; target: string; resumed?: boolean }
  | { type: 'state'; from: ClientState; to: ClientState }
  | ({ type: 'identity'; trigger: ReloadTrigger } & IdentityReload);

/** The server's certificate as a full handshake showed it, with the CA certificates sent along. */
interface ServerCertificate {
  readonly cert: X509Certificate;
  readonly chain: readonly X509Certificate[];
}

/** `TLSSocket.setSession`: undocumented, but what `tls.connect` calls with its `session` option. */
interface SessionSetter {
  setSession(session: Buffer): void;
}
/** Whether this Node lacks `setSession`: then the session goes in as `tls.connect`'s option. */
const offerAtConnect = typeof (tls.TLSSocket.prototype as unknown as Partial<SessionSetter>).setSession !== 'function';

/** A TLS session to offer on the next dial, and the server certificate of the full handshake it goes back to. */
interface SavedSession {
  readonly ticket: Buffer;
  readonly server: ServerCertificate;
}

/** One connection attempt's result. */
interface Connected {
  readonly exchange: MessageExchange;
  readonly resumed: boolean;
  readonly server: ServerCertificate;
  /** Settles when the pipe ends. */
  readonly ended: Promise<PipeEnd>;
}

/** How a pipe that was up ended: the server sent GoAway (it may still be open, finishing requests in flight), or it closed. */
type PipeEnd = { readonly sentAway: true; readonly reason: string } | { readonly sentAway: false; readonly error: Error | undefined };

export class RestPipeClient extends EventEmitter<{ status: [ClientStatusEvent] }> {
  readonly config: ClientConfig;
  readonly log: Logger;
  private readonly kit: NodeKit;
  private readonly stats: CountingStats;
  private readonly hooks: ClientConnectionStateEvents;
  private secureContext: tls.SecureContext;
  /**
   * Per target (`host:port`), the last TLS session it gave (a TLS 1.3
   * ticket), offered on the next dial to it: a ticket is only worth
   * offering to the server that issued it.
   */
  private readonly sessions = new Map<string, SavedSession>();
  /** The server of the pipe that is up, to check it again on reload. */
  private server: ServerCertificate | undefined;
  /** Pipes whose server sent GoAway, finishing their requests in flight while the client is elsewhere; with their server, for reloads. */
  private readonly leaving = new Map<MessageExchange, ServerCertificate>();
  private resumed = false;
  private readonly rotation: TargetRotation;
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
    // One context for every reconnect: the key and certificates are parsed once (again on reload).
    this.secureContext = this.createContext(this.kit.identity);
    // Shuffled once, so that a fleet given the same list spreads over it.
    this.rotation = new TargetRotation(opts.config.targets, opts.random);
    this.backoff = new Backoff({ initialMs: opts.config.reconnectInitialMs, maxMs: opts.config.reconnectMaxMs, random: opts.random });
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

  /** The key, certificate and CA bundle of an identity, with the TLS versions and ciphers of `RP_TLS_MIN_VERSION`. */
  private createContext(id: LoadedIdentity): tls.SecureContext {
    return tls.createSecureContext({ key: id.key, cert: id.cert, ca: id.ca, ...this.kit.tlsOptions() });
  }

  /**
   * Reads the identity again (from `identity` if given, else from
   * `config.certPath`); when it changed, the next dial uses it, and a live
   * pipe to a server whose certificate the new CA bundle or CRL no longer
   * admits is closed with GoAway saying why (then the client reconnects);
   * otherwise the pipe is untouched. A bad new identity keeps the current
   * one (logged); this never throws.
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
    this.emit('status', { type: 'identity', trigger, ...result });
    return result;
  }

  private applyIdentity(next: LoadedIdentity): number {
    this.secureContext = this.createContext(next);
    // A session holds the certificate this client showed when it was made: the next dial shows the new one.
    this.sessions.clear();
    const pipes = [...this.leaving];
    if (this._exchange && this.server) pipes.push([this._exchange, this.server]);
    let closed = 0;
    for (const [exchange, server] of pipes) {
      const problem = next.trust.check(server.cert, { intermediates: server.chain, checkTime: false });
      if (!problem) continue;
      this.stats.increment('connect.revoked');
      this.log.warn(
        { server: exchange.peer.name, code: problem.code, serial: server.cert.serialNumber },
        `closing the pipe: the server's certificate is no longer trusted: ${problem.message}`,
      );
      const reason = `the client no longer trusts the server's certificate: ${problem.message}`;
      exchange.goAway(reason);
      exchange.close(new IdentityError(reason), { flush: true });
      closed++;
    }
    return closed;
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
      // The server connected to, being dialed, or dialed next; then every one in dial order.
      server: targetAddress(this.rotation.current),
      targets: this.rotation.targets.map(targetAddress),
      peer: up
        ? { name: ex.peer.name, address: ex.peer.address ?? null, agent: ex.peerInfo?.agent ?? null, protocolVersion: ex.peerInfo?.version ?? null }
        : null,
      connectedSince: up ? ex.connectedAt.toISOString() : null,
      lastDisconnectedAt: this.lastDisconnectedAt?.toISOString() ?? null,
      rttMs: up && ex.rttMs !== undefined ? Math.round(ex.rttMs * 1000) / 1000 : null,
      inFlight: ex?.inFlight ?? null,
      tls: { minVersion: this.kit.tlsOptions().minVersion, resumed: up ? this.resumed : null },
      uptimeS: this.kit.uptimeS(),
      identity: this.kit.identityStatus(),
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
    this.kit.startIdentityMonitor();
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
        const servers = this.rotation.targets.map(targetAddress).join(' or ');
        reject(new PeerNotConnectedError(`the pipe to the server at ${servers} is down (waited ${timeoutMs} ms)`));
      }, timeoutMs);
      this.on('status', onStatus);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * The connection loop: exactly one runs per client, until `close()`.
   * Each attempt dials the current target; a failed attempt, a broken pipe
   * or a GoAway moves to the next one. The backoff waits once per round
   * through the list, and always after a broken pipe; after a GoAway the
   * next target is dialed at once (see `TargetRotation`).
   */
  private async run(): Promise<void> {
    while (this._state !== 'closed') {
      const target = this.rotation.begin();
      const address = targetAddress(target);
      this.transition('connecting');
      this.attempts++;
      let connected: Connected;
      try {
        connected = await this.connectOnce(target);
      } catch (err) {
        if (this.isClosed()) return;
        const error = err as Error;
        const resumed = (err as { tlsResumed?: boolean }).tlsResumed;
        this.stats.increment('connect.failures');
        this.log.warn({ server: address, attempts: this.attempts, err: error.message, tlsResumed: resumed }, 'could not connect to the server');
        this.emit('status', { type: 'connect_failed', attempts: this.attempts, error, target: address, ...(resumed === undefined ? {} : { resumed }) });
        this.callHook('connect_fail', () => this.hooks.connect_fail(this.attempts, error));
        if (this.rotation.failed()) {
          this.transition('waiting');
          await this.backoff.wait();
        }
        continue;
      }
      const { exchange, resumed } = connected;
      if (this.isClosed()) {
        exchange.close();
        return;
      }
      const attempts = this.attempts;
      const connectedAt = Date.now();
      this._exchange = exchange;
      this.server = connected.server;
      this.resumed = resumed;
      this.attempts = 0;
      this.transition('connected');
      this.stats.increment('connect.successes');
      if (resumed) this.stats.increment('connect.resumed');
      this.log.info({ server: address, tlsResumed: resumed, attempts }, 'connected to the server');
      this.emit('status', { type: 'connected', exchange, attempts, target: address, resumed });
      this.callHook('connect_success', () => this.hooks.connect_success(attempts, this.lastDisconnectedAt));
      const end = await connected.ended;
      this._exchange = undefined;
      this.server = undefined;
      this.lastDisconnectedAt = new Date();
      if (this.isClosed()) return;
      if (end.sentAway && exchange.state !== 'closed') {
        // Its requests in flight finish there (the server closes it) while the client dials the next target.
        this.leaving.set(exchange, connected.server);
        exchange.once('close', () => this.leaving.delete(exchange));
      }
      this.stats.increment('connect.broken');
      const error = end.sentAway ? new ShuttingDownError(end.reason) : end.error;
      if (end.sentAway) this.log.info({ server: address, reason: end.reason }, 'the server sent this client away; reconnecting');
      else this.log.warn({ server: address, err: error?.message }, 'the pipe to the server broke');
      this.emit('status', { type: 'disconnected', error, target: address });
      const stable = Date.now() - connectedAt >= this.config.reconnectStableMs;
      if (stable) this.backoff.reset();
      if (this.rotation.ended({ sentAway: end.sentAway, stable })) {
        this.transition('waiting');
        await this.backoff.wait();
      }
    }
  }

  private isClosed(): boolean {
    return this._state === 'closed';
  }

  /**
   * One attempt: TCP, TLS with both sides verified, then the peer's Hello.
   * The last session of this target is offered. OpenSSL verifies nothing when the server
   * resumes it (and the resumed session holds no server certificate chain),
   * so the server's certificate is checked here against the current CA
   * bundle and CRL on every handshake: the one shown, or on resumption the
   * one of the full handshake the session goes back to. A failed attempt
   * after a handshake forgets the session (the next one is a full
   * handshake), unless it failed by its own timeout: a server too busy to
   * say hello in time is best helped by a resumption.
   */
  private connectOnce(target: Target): Promise<Connected> {
    const { host, port, servername } = target;
    const key = targetAddress(target);
    this.stats.increment('connect.attempts');
    const trust = this.kit.identity.trust;
    const offered = this.sessions.get(key);
    return new Promise<Connected>((resolve, reject) => {
      const socket = tls.connect({
        host,
        port,
        secureContext: this.secureContext,
        ...(offerAtConnect && offered ? { session: offered.ticket } : {}),
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
      // Offered once TCP is connected, just before the ClientHello is made
      // (`tls.connect` starts the handshake from its own 'connect'
      // listener, which this one precedes), rather than as `tls.connect`'s
      // `session` option when the socket can take it (`setSession`, what
      // `tls.connect` itself calls): the option is parsed twice, by the
      // TLSSocket and again by `connect`, 0.13 ms of CPU each for a 2 KB
      // session, and even when the server is down and refuses the
      // connection — costs paid on every attempt of a reconnect storm.
      if (offered && !offerAtConnect) {
        socket.prependOnceListener('connect', () => (socket as unknown as SessionSetter).setSession(offered.ticket));
      }
      this.dialing = socket;
      let settled = false;
      let succeeded = false;
      let resumed: boolean | undefined;
      let server: ServerCertificate | undefined;
      const digest = this.kit.identity.digest;
      // Tickets may come after the Hello; the newest is kept once the attempt
      // succeeds, and never after a reload (it would show the old certificate).
      let ticket: Buffer | undefined;
      const keep = (session: Buffer) => {
        if (server && this.kit.identity.digest === digest) this.sessions.set(key, { ticket: session, server });
      };
      socket.on('session', (session: Buffer) => {
        if (succeeded) keep(session);
        else ticket = session;
      });
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.dialing = undefined;
        // Turned away after a handshake (resumed or not), or TLS failed: the next attempt
        // is a full handshake. A server that is down keeps the session for its restart,
        // and so does one too busy to say hello in time (a storm): resuming is what it needs.
        if (err === timedOut) {
          if (ticket && server) keep(ticket);
        } else if (resumed !== undefined || /^ERR_(SSL|TLS)_/.test((err as NodeJS.ErrnoException).code ?? '')) {
          this.sessions.delete(key);
        }
        socket.destroy();
        if (resumed !== undefined) Object.assign(err, { tlsResumed: resumed });
        reject(err);
      };
      // Two deadlines: the TCP connect (a host that does not answer is soon left for the
      // next target), then the TLS handshake and the server's hello, longer, because a
      // server in a reconnect storm holds connections unread until a handshake slot frees.
      const { connectTimeoutMs, connectHandshakeTimeoutMs } = this.config;
      let timedOut = new Error(`connecting to ${host}:${port} took over ${connectTimeoutMs} ms`);
      let timer = setTimeout(() => fail(timedOut), connectTimeoutMs);
      socket.once('connect', () => {
        if (settled) return;
        clearTimeout(timer);
        timedOut = new Error(`the TLS handshake and hello with ${host}:${port} took over ${connectHandshakeTimeoutMs} ms`);
        timer = setTimeout(() => fail(timedOut), connectHandshakeTimeoutMs);
      });
      socket.once('error', fail);
      socket.once('close', () => fail(new Error('the server closed the connection during the handshake')));
      socket.once('secureConnect', () => {
        resumed = socket.isSessionReused();
        if (resumed && offered) server = offered.server;
        else {
          const shown = socket.getPeerX509Certificate();
          if (shown) server = { cert: shown, chain: peerChain(shown) };
        }
        if (!server) {
          fail(new IdentityError('the server sent no certificate'));
          return;
        }
        const problem = trust.check(server.cert, { intermediates: server.chain });
        if (problem) {
          fail(new IdentityError(`refused the server: ${problem.message}`));
          return;
        }
        const exchange = this.kit.openExchange(socket, {
          name: certificateName(server.cert) ?? servername,
          address: `${socket.remoteAddress}:${socket.remotePort}`,
        });
        socket.off('error', fail);
        const ended = pipeEnd(exchange);
        exchange.once('close', (err) => fail(err ?? new Error('the pipe closed before the server said hello')));
        exchange.once('ready', () => {
          if (settled || !server) return;
          settled = true;
          succeeded = true;
          clearTimeout(timer);
          this.dialing = undefined;
          if (ticket) keep(ticket);
          resolve({ exchange, resumed: resumed === true, server, ended });
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
    this.kit.stopIdentityMonitor();
    this.backoff.close();
    this.dialing?.destroy();
    const pipes = [...this.leaving.keys(), ...(this._exchange ? [this._exchange] : [])];
    await Promise.all([this.app?.close(), ...pipes.map((exchange) => exchange.drain('the client is shutting down', graceMs))]);
    await this.loop;
  }
}

/**
 * Resolves when the server sends GoAway or the pipe closes, whichever is
 * first. Called as soon as the exchange exists, so that nothing read with
 * the Hello (a GoAway right behind it) goes unseen.
 */
function pipeEnd(exchange: MessageExchange): Promise<PipeEnd> {
  return new Promise<PipeEnd>((resolve) => {
    const onGoAway = (reason: string) => {
      exchange.off('close', onClose);
      resolve({ sentAway: true, reason });
    };
    const onClose = (error: Error | undefined) => {
      exchange.off('goaway', onGoAway);
      resolve({ sentAway: false, error });
    };
    exchange.once('goaway', onGoAway);
    exchange.once('close', onClose);
  });
}
