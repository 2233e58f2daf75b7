/**
 * The instance's one connection to NATS, kept up in the background and for
 * ever: a server that starts before NATS, or outlives a NATS outage, keeps
 * trying and says so in `status()`, one warning per outage.
 *
 * nats.js reconnects an established connection by itself (and resubscribes
 * its subscriptions). Two cases it leaves to us, both handled here: the first
 * connection (nats.js gives up once every server refused; we try again after
 * a wait, and keep the last error for `status()`), and a connection that
 * closes on its own (nats.js stops after the same authentication error twice,
 * or someone closed it): we make a new one. Listeners see `up` with the
 * connection each time it is usable and `down` each time it is not; a new
 * connection object comes with an `up`, so subscriptions belong on `up`.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { credsAuthenticator, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import { ConfigError, type Logger } from '@restpipe/shared';
import type { ServerConfig } from '../config.js';
import { connectNats } from './nats-transport.js';
import { Subjects } from './subjects.js';

/** NATS servers and credentials of one instance (from `RP_SERVER_NATS_*`). */
export interface NatsOptions {
  /** `nats://host:port`, `tls://host:port` or `host:port`. */
  servers: string[];
  /** This instance's name (the connection's name and inbox prefix). */
  instance: string;
  /** The cluster's subject namespace. */
  namespace: string;
  /** CA bundle file (PEM) the servers' certificates must chain to; requires TLS. */
  ca?: string;
  /** Client certificate file (PEM), with `key`. */
  cert?: string;
  /** Key file (PEM) of `cert`. */
  key?: string;
  user?: string;
  password?: string;
  /** Credentials file (user JWT and nkey seed). */
  creds?: string;
  /** Wait between connection attempts, ms (plus up to a fifth of it at random). @default 1000 */
  reconnectWaitMs?: number;
}

/** Wait between attempts when `reconnectWaitMs` is not given. */
const RECONNECT_WAIT_MS = 1000;
/** One attempt (TCP, TLS, CONNECT/PONG) gives up after this long. */
const CONNECT_TIMEOUT_MS = 5000;
/** NATS's own keepalive: a silent server is dropped after about three of these. */
const PING_INTERVAL_MS = 5000;
const MAX_PINGS_OUT = 3;
/** What nats-server allows by default, for the time before its INFO arrives. */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/** The NATS options of a server config (`natsUrl` must be set). */
export function natsOptionsFrom(config: ServerConfig, instance: string): NatsOptions {
  const servers = (config.natsUrl ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (servers.length === 0) throw new ConfigError('RP_SERVER_NATS_URL is empty: no NATS server to connect to');
  return {
    servers,
    instance,
    namespace: config.clusterName,
    ca: config.natsCa,
    cert: config.natsCert,
    key: config.natsKey,
    user: config.natsUser,
    password: config.natsPassword,
    creds: config.natsCreds,
  };
}

export type NatsState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface NatsStatus {
  state: NatsState;
  /** The server connected to (or last tried), `host:port`. */
  server: string | null;
  /** Times the connection was lost since start. */
  reconnects: number;
  lastError: string | null;
  /** When the state last changed (ISO). */
  since: string;
}

export interface NatsLinkEvents {
  /** The connection is usable (first connect, reconnect, or a new connection). */
  up: [NatsConnection];
  /** The connection is not usable any more (messages in flight may be lost). */
  down: [reason: string];
}

export class NatsLink extends EventEmitter<NatsLinkEvents> {
  private readonly opts: NatsOptions;
  private readonly log: Logger;
  private readonly connectOptions: NodeConnectionOptions;
  private readonly waitMs: number;
  private nc: NatsConnection | undefined;
  private up = false;
  private state: NatsState = 'connecting';
  private since = new Date();
  private server: string | null = null;
  private lostCount = 0;
  private lastError: string | null = null;
  /** A warning was logged for the outage under way. */
  private warned = false;
  private started = false;
  private closing = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private attempt: Promise<void> | undefined;

  /** Throws `ConfigError` when the credentials file cannot be read. */
  constructor(opts: NatsOptions, log: Logger) {
    super();
    this.opts = opts;
    this.log = log;
    this.waitMs = opts.reconnectWaitMs ?? RECONNECT_WAIT_MS;
    this.connectOptions = connectOptionsOf(opts, this.waitMs);
  }

  /** The connection, only while it is usable. */
  get connection(): NatsConnection | undefined {
    return this.up ? this.nc : undefined;
  }

  get isUp(): boolean {
    return this.up;
  }

  /** Largest message payload the server takes (its INFO `max_payload`). */
  maxPayload(): number {
    return this.nc?.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
  }

  status(): NatsStatus {
    return { state: this.state, server: this.server, reconnects: this.lostCount, lastError: this.lastError, since: this.since.toISOString() };
  }

  /** Connects in the background and keeps connecting for ever; never throws. */
  start(): void {
    if (this.started || this.closing) return;
    this.started = true;
    this.dial();
  }

  /** Drains and closes the connection; stops trying. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    // An attempt under way ends within CONNECT_TIMEOUT_MS; it sees `closing` and closes what it got.
    await this.attempt;
    const nc = this.nc;
    const wasUp = this.up;
    this.setState('closed');
    this.markDown();
    if (nc && !nc.isClosed()) {
      // Drain waits for a PONG, which never comes while disconnected: close then.
      if (wasUp) await nc.drain().catch(() => nc.close());
      else await nc.close();
    }
    if (wasUp) this.emit('down', 'closed');
  }

  private dial(): void {
    if (this.closing) return;
    this.attempt = this.connectOnce();
  }

  private async connectOnce(): Promise<void> {
    let nc: NatsConnection;
    try {
      nc = await connectNats(this.connectOptions);
    } catch (err) {
      this.failed(err);
      return;
    } finally {
      this.attempt = undefined;
    }
    if (this.closing) {
      await nc.close().catch(() => undefined);
      return;
    }
    this.nc = nc;
    void this.watch(nc);
    void nc.closed().then((err) => this.closedByItself(nc, err ?? undefined));
    this.cameUp(nc);
  }

  /** No server took the connection: try again after the wait. */
  private failed(err: unknown): void {
    this.lastError = messageOf(err);
    if (this.closing) return;
    this.outage(`cannot connect to NATS (${this.opts.servers.join(', ')}): ${this.lastError}; retrying`);
    const wait = this.waitMs + Math.random() * (this.waitMs / 5);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.dial();
    }, wait);
    this.retryTimer.unref();
  }

  /** Follows the connection's status: disconnects, reconnects, errors. */
  private async watch(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (nc !== this.nc) return;
      switch (s.type) {
        case 'disconnect':
          this.wentDown(`disconnected from ${s.server}`);
          break;
        case 'reconnect':
          this.cameUp(nc);
          break;
        case 'error':
          this.lastError = messageOf(s.error);
          break;
        case 'staleConnection':
          this.lastError = 'the NATS server stopped answering pings';
          break;
        default:
          break;
      }
    }
  }

  /** The connection closed without `close()`: start over with a new one. */
  private closedByItself(nc: NatsConnection, err: Error | undefined): void {
    if (nc !== this.nc || this.closing) return;
    this.nc = undefined;
    if (err) this.lastError = messageOf(err);
    this.wentDown(`the NATS connection closed${err ? `: ${messageOf(err)}` : ''}`);
    this.dial();
  }

  private cameUp(nc: NatsConnection): void {
    this.server = nc.getServer();
    if (this.warned) this.log.info({ server: this.server }, 'NATS connection is back');
    else this.log.info({ server: this.server }, 'connected to NATS');
    this.warned = false;
    this.up = true;
    this.setState('connected');
    this.emit('up', nc);
  }

  private wentDown(reason: string): void {
    if (!this.up) return;
    this.lostCount++;
    this.markDown();
    this.setState('reconnecting');
    this.outage(`NATS connection lost: ${reason}; reconnecting`);
    this.emit('down', reason);
  }

  private markDown(): void {
    this.up = false;
  }

  /** One warning per outage. */
  private outage(message: string): void {
    if (this.warned) return;
    this.warned = true;
    this.log.warn({ servers: this.opts.servers, lastError: this.lastError }, message);
  }

  private setState(state: NatsState): void {
    if (this.state === state) return;
    this.state = state;
    this.since = new Date();
  }
}

function connectOptionsOf(opts: NatsOptions, waitMs: number): NodeConnectionOptions {
  const options: NodeConnectionOptions = {
    servers: opts.servers,
    name: `restpipe-server ${opts.instance}`,
    inboxPrefix: new Subjects(opts.namespace).inboxPrefix(opts.instance),
    // Once connected, nats.js itself reconnects for ever; the first connection is our loop's.
    maxReconnectAttempts: -1,
    reconnectTimeWait: waitMs,
    reconnectJitter: Math.round(waitMs / 5),
    reconnectJitterTLS: Math.round(waitMs / 5),
    timeout: CONNECT_TIMEOUT_MS,
    pingInterval: PING_INTERVAL_MS,
    maxPingOut: MAX_PINGS_OUT,
  };
  if (opts.user !== undefined) {
    options.user = opts.user;
    options.pass = opts.password ?? '';
  }
  if (opts.creds !== undefined) {
    let creds: Uint8Array;
    try {
      creds = readFileSync(opts.creds);
    } catch (err) {
      throw new ConfigError(`cannot read the NATS credentials file "${opts.creds}" (RP_SERVER_NATS_CREDS): ${messageOf(err)}`, { cause: err });
    }
    options.authenticator = credsAuthenticator(creds);
  }
  const tls = opts.ca !== undefined || opts.cert !== undefined || opts.key !== undefined || opts.servers.some((s) => s.startsWith('tls://'));
  if (tls) {
    // An object (even empty) makes nats.js refuse a server without TLS.
    options.tls = {
      ...(opts.ca !== undefined ? { caFile: opts.ca } : {}),
      ...(opts.cert !== undefined ? { certFile: opts.cert } : {}),
      ...(opts.key !== undefined ? { keyFile: opts.key } : {}),
    };
  }
  return options;
}

function messageOf(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}
