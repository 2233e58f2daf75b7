/**
 * What the server node and the client node build the same way: the logger,
 * the counting stats sink, the dispatcher over the handler, the identity
 * (checked, reloadable, watched for expiry), the gateway with the node's
 * limits, and the message exchange opened on a socket whose TLS checks
 * passed. Each node keeps only what differs: the server listens and keeps
 * a registry, the client dials and backs off.
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
import { ExpiryMonitor } from './expiry-monitor.js';
import { GIVEN_IDENTITY_LABELS, type IdentityStatus, type LoadedIdentity, fileLabels, identityStatus, prepareIdentity } from './identity.js';
import { PrometheusStats, registerMetricsRoute } from './prometheus.js';
import { nullStats, teeStats, type Stats } from './stats.js';
import { type IdentityFileNames, type TlsIdentity, loadIdentity, tlsVersionOptions } from './tls.js';

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
  /** Key, certificate, CA bundle and CRL; read from `config.certPath` (`identityFiles`) when omitted. */
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

/** What asked for a reload: the `SIGHUP` signal, the folder watch, or code (`reloadIdentity()`). */
export type ReloadTrigger = 'SIGHUP' | 'watch' | 'call';

/** The outcome of a reload: the new identity is in use (`changed`), or the old one is kept and why. */
export type IdentityReload = { ok: true; changed: boolean; closed: number } | { ok: false; error: Error };

export class NodeKit {
  readonly side: PipeRole;
  readonly config: NodeKitConfig;
  readonly log: Logger;
  /** Counts for `/_restpipe/status`, forwarding to the sink given (statsd or none) and to `prometheus`. */
  readonly stats: CountingStats;
  /** What `GET /_restpipe/metrics` answers; undefined with `RP_PROMETHEUS=0`. */
  readonly prometheus: PrometheusStats | undefined;
  readonly dispatcher: Dispatcher;
  readonly startedAt = Date.now();
  /** True when the identity came from `config.certPath` (so the folder is worth watching). */
  readonly identityFromFiles: boolean;
  private current: LoadedIdentity;
  private readonly identityFiles: IdentityFileNames;
  private readonly certPathVariable: string;
  private readonly expiry: ExpiryMonitor;

  constructor(opts: NodeKitOptions) {
    this.side = opts.side;
    this.config = opts.config;
    this.log = opts.log ?? createLogger(`restpipe-${opts.side}`, opts.config.logLevel);
    this.prometheus = opts.config.prometheus === '1' ? new PrometheusStats({ side: opts.side }) : undefined;
    this.stats = new CountingStats(teeStats(opts.stats ?? nullStats, this.prometheus ?? nullStats));
    this.dispatcher = new Dispatcher(opts.handler);
    this.identityFiles = opts.identityFiles;
    this.certPathVariable = opts.certPathVariable;
    this.identityFromFiles = opts.identity === undefined;
    this.current = opts.identity ? prepareIdentity(opts.identity) : this.readIdentityFiles();
    this.expiry = new ExpiryMonitor({ identity: () => this.current, warnDays: opts.config.certExpiryWarnDays, log: this.log, stats: this.stats });
  }

  /** The identity in use: key, certificate, CA bundle and CRL, checked and parsed. */
  get identity(): LoadedIdentity {
    return this.current;
  }

  /** The `minVersion` and `ciphers` of the node's secure contexts (`RP_TLS_MIN_VERSION`). */
  tlsOptions(): { minVersion: 'TLSv1.3' | 'TLSv1.2'; ciphers: string } {
    return tlsVersionOptions(this.config.tlsMinVersion);
  }

  private readIdentityFiles(): LoadedIdentity {
    const dir = this.config.certPath;
    const raw = loadIdentity(dir, this.identityFiles, this.certPathVariable);
    return prepareIdentity(raw, fileLabels(this.identityFiles), `${this.certPathVariable}="${dir}": `);
  }

  /**
   * Loads the identity again (from `identity`, else from `config.certPath`)
   * and, when it differs from the one in use, hands it to `apply`, which
   * builds the node's new TLS state and closes the connections the new
   * trust no longer admits (returning how many); then it is the identity
   * in use. Anything that throws, in loading or in `apply`, keeps the old
   * identity: logged once at error, counted in `identity.reload_failed`,
   * never thrown.
   */
  reloadIdentity(apply: (next: LoadedIdentity) => number, opts: { identity?: TlsIdentity; trigger: ReloadTrigger }): IdentityReload {
    const { trigger } = opts;
    try {
      const next = opts.identity ? prepareIdentity(opts.identity, GIVEN_IDENTITY_LABELS) : this.readIdentityFiles();
      if (next.digest === this.current.digest) {
        // The folder watch also fires for files that are not the identity's.
        if (trigger === 'watch') this.log.debug({ trigger }, 'the identity is unchanged');
        else this.log.info({ trigger }, 'the identity is unchanged');
        return { ok: true, changed: false, closed: 0 };
      }
      const closed = apply(next);
      this.current = next;
      this.stats.increment('identity.reloads');
      this.log.info(
        {
          trigger,
          subject: next.certificate.subject.replace(/\n/g, ', '),
          serial: next.certificate.serialNumber,
          notAfter: next.notAfter.toISOString(),
          cas: next.trust.cas.length,
          revoked: next.trust.revokedCount,
          closed,
        },
        'reloaded the identity',
      );
      this.expiry.recheck();
      return { ok: true, changed: true, closed };
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.stats.increment('identity.reload_failed');
      this.log.error({ trigger, err: error.message }, 'could not reload the identity; keeping the current one');
      return { ok: false, error };
    }
  }

  /** The identity's part of `/_restpipe/status`: names, expiry in seconds, the CRL. */
  identityStatus(): IdentityStatus {
    return identityStatus(this.current);
  }

  /** Starts the expiry warnings and gauges (at once, then hourly; warnings daily). */
  startIdentityMonitor(): void {
    this.expiry.start();
  }

  stopIdentityMonitor(): void {
    this.expiry.close();
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
