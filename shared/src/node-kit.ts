/**
 * What the server node and the client node build the same way: the logger,
 * the counting stats sink, the dispatcher over the handler, the identity,
 * the gateway with the node's limits, and the message exchange opened on a
 * socket whose TLS checks passed. Each node keeps only what differs: the
 * server listens and keeps a registry, the client dials and backs off.
 */
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { callHook } from './call-hook.js';
import type { CommonConfig } from './config.js';
import { CountingStats } from './counting-stats.js';
import { Dispatcher } from './dispatcher.js';
import { createGateway, listenGateway, type GatewayAddress, type GatewayOptions } from './gateway.js';
import type { EventHandler, PeerInfo } from './handler.js';
import { createLogger, type Logger } from './logger.js';
import { MessageExchange, type PipeRole } from './message-exchange.js';
import { PrometheusStats, registerMetricsRoute } from './prometheus.js';
import { nullStats, teeStats, type Stats } from './stats.js';
import { loadIdentity, type IdentityFileNames, type TlsIdentity } from './tls.js';

/** The settings the kit reads: the common ones, the identity folder and the gateway address. */
export interface NodeKitConfig extends CommonConfig {
  readonly certPath: string;
  readonly gateway: GatewayAddress;
}

export interface NodeKitOptions {
  /** Which node: the exchange's role, the gateway's side, the logger's name (`restpipe-<side>`). */
  side: PipeRole;
  config: NodeKitConfig;
  handler: EventHandler;
  /** Key, certificate and CA; read from `config.certPath` (`identityFiles`) when omitted. */
  identity?: TlsIdentity;
  identityFiles: IdentityFileNames;
  /** The variable naming `config.certPath`, for errors. */
  certPathVariable: string;
  log?: Logger;
  stats?: Stats;
}

/** The gateway options that differ between the nodes. */
export type NodeGatewayOptions = Pick<GatewayOptions, 'resolvePeer' | 'peerNames' | 'routes'>;

/** TCP keepalive probes start after this much silence on the pipe (besides the pipe's own heartbeats). */
const KEEPALIVE_DELAY_MS = 30_000;

export class NodeKit {
  readonly side: PipeRole;
  readonly config: NodeKitConfig;
  readonly log: Logger;
  /** Counts for `/_restpipe/status`, forwarding to the sink given (statsd or none) and to `prometheus`. */
  readonly stats: CountingStats;
  /** What `GET /_restpipe/metrics` answers; undefined with `RP_PROMETHEUS=0`. */
  readonly prometheus: PrometheusStats | undefined;
  readonly dispatcher: Dispatcher;
  readonly identity: TlsIdentity;
  readonly startedAt = Date.now();

  constructor(opts: NodeKitOptions) {
    this.side = opts.side;
    this.config = opts.config;
    this.log = opts.log ?? createLogger(`restpipe-${opts.side}`, opts.config.logLevel);
    this.prometheus = opts.config.prometheus === '1' ? new PrometheusStats({ side: opts.side }) : undefined;
    this.stats = new CountingStats(teeStats(opts.stats ?? nullStats, this.prometheus ?? nullStats));
    this.dispatcher = new Dispatcher(opts.handler);
    this.identity = opts.identity ?? loadIdentity(opts.config.certPath, opts.identityFiles, opts.certPathVariable);
  }

  /** The node's gateway: its side, logger, stats and limits, with the node's own routes and peer lookup. */
  createGateway(opts: NodeGatewayOptions): FastifyInstance {
    return createGateway({
      side: this.side,
      log: this.log,
      stats: this.stats,
      streamChunkBytes: this.config.streamChunkBytes,
      maxBodyBytes: this.config.maxBodyBytes,
      defaultDeadlineMs: this.config.requestTimeoutMs,
      maxDeadlineMs: this.config.maxRequestTimeoutMs,
      ...opts,
      routes: (app) => {
        if (this.prometheus) registerMetricsRoute(app, this.prometheus);
        opts.routes?.(app);
      },
    });
  }

  /** Listens on `config.gateway` and logs where; resolves with the address (`http://host:port` or the socket path). */
  async listenGateway(app: FastifyInstance): Promise<string> {
    const address = await listenGateway(app, this.config.gateway);
    this.log.info({ gateway: address }, 'gateway listening');
    return address;
  }

  /**
   * Opens the message exchange on a socket whose TLS checks passed (the
   * peer's certificate verified, its name read): no Nagle delay, TCP
   * keepalive, the node's dispatcher, logger, stats and limits.
   */
  openExchange(socket: TLSSocket, peer: PeerInfo): MessageExchange {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    return new MessageExchange({
      socket,
      role: this.side,
      peer,
      dispatcher: this.dispatcher,
      log: this.log,
      stats: this.stats,
      limits: this.config,
    });
  }

  /** Runs a user hook; whatever it does is logged, never thrown into the pipe. */
  callHook(name: string, call: () => void | Promise<void>): void {
    callHook(this.log, name, call);
  }

  /** Whole seconds since the node was made. */
  uptimeS(): number {
    return Math.round((Date.now() - this.startedAt) / 1000);
  }
}
