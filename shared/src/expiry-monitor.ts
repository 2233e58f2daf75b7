/**
 * Warns before an identity runs out: at start and then once a day, a
 * warning for the node's own certificate and for each CA it trusts that
 * expires within `RP_CERT_EXPIRY_WARN_DAYS` (or has expired), and for each
 * CRL past its next update. Every hour it sends the seconds left as
 * gauges (`identity.expires_in_s`, `identity.ca_expires_in_s`), so a
 * dashboard can alert on them. Timers are unref'd; `close()` stops them.
 */
import { type LoadedIdentity, secondsUntil } from './identity.js';
import type { Logger } from './logger.js';
import type { Stats } from './stats.js';

const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;

export interface ExpiryMonitorOptions {
  /** The identity in use now (it changes on reload). */
  identity: () => LoadedIdentity;
  warnDays: number;
  log: Logger;
  stats: Stats;
  /** @default Date.now */
  now?: () => number;
}

export class ExpiryMonitor {
  private timer: NodeJS.Timeout | undefined;
  private lastWarnAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly opts: ExpiryMonitorOptions) {}

  /** Checks now (warnings and gauges), then every hour: gauges each time, warnings once a day. */
  start(): void {
    this.tick(true);
    this.timer = setInterval(() => this.tick(false), HOUR_MS);
    this.timer.unref();
  }

  /** Checks again at once (a reload): gauges, and the warnings when something is due. */
  recheck(): void {
    this.tick(true);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(warnNow: boolean): void {
    const now = (this.opts.now ?? Date.now)();
    const id = this.opts.identity();
    this.opts.stats.gauge('identity.expires_in_s', secondsUntil(id.notAfter, now));
    this.opts.stats.gauge('identity.ca_expires_in_s', secondsUntil(id.trust.earliestCaNotAfter, now));
    if (!warnNow && now - this.lastWarnAt < DAY_MS) return;
    this.lastWarnAt = now;
    this.warn(id, now);
  }

  /** Logs one warning per certificate or CRL that needs attention; returns how many. */
  warn(id: LoadedIdentity, now: number): number {
    const { log, warnDays } = this.opts;
    const horizon = now + warnDays * DAY_MS;
    let warnings = 0;
    const expiring = (what: string, subject: string, notAfter: Date) => {
      if (notAfter.getTime() > horizon) return;
      warnings++;
      const expiresInS = secondsUntil(notAfter, now);
      const fields = { subject, notAfter: notAfter.toISOString(), expiresInS, expiresInDays: Math.floor(expiresInS / 86400), warnDays };
      if (expiresInS <= 0) log.error(fields, `${what} has expired`);
      else log.warn(fields, `${what} expires within RP_CERT_EXPIRY_WARN_DAYS`);
    };
    expiring("this node's certificate", id.certificate.subject.replace(/\n/g, ', '), id.notAfter);
    for (const ca of id.trust.cas) expiring('a trusted CA certificate', ca.cert.subject.replace(/\n/g, ', '), ca.notAfter);
    for (const ca of id.trust.staleCrls(now)) {
      warnings++;
      log.warn(
        { ca: ca.cert.subject.replace(/\n/g, ', '), nextUpdate: ca.crl?.nextUpdate?.toISOString() },
        'the CRL is past its next update: install a fresh one (restpipe-certs crl); its revocations still apply',
      );
    }
    return warnings;
  }
}
