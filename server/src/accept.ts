/**
 * The server's TLS accept checks, run on every socket whose handshake
 * completed, full or resumed. OpenSSL verifies a full handshake (chain to
 * the CA bundle, validity, purpose, and the CRLs when `crl.pem` is
 * installed); the server does not let Node turn the unverified away, so
 * that it can say why, and so that a problem with a CRL itself (stale, or
 * none for one of the CAs) does not turn away every client of that CA:
 * then, and for every resumed session (OpenSSL verifies nothing when a
 * session resumes), the server's own check decides — the certificate must
 * chain to a CA of the bundle, be within its validity and not be on its
 * CA's revocation list. The client's name comes from its certificate's CN;
 * a certificate without one, or without the clientAuth extended key
 * usage, is refused. A refusal is counted in `connections.refused`, logged
 * once at warn naming why, and the socket destroyed.
 */
import type { X509Certificate } from 'node:crypto';
import type tls from 'node:tls';
import {
  CLIENT_AUTH_OID,
  allowsUsage,
  certificateName,
  describeVerifyCode,
  isCrlVerifyCode,
  peerChain,
  type Logger,
  type PeerInfo,
  type Stats,
  type TrustStore,
} from '@restpipe/shared';

/** What the checks report to. */
export interface AcceptReporting {
  readonly log: Logger;
  readonly stats: Stats;
}

/** What the checks decide with: the trust in use now, and CA certificates earlier clients sent. */
export interface AcceptContext extends AcceptReporting {
  readonly trust: TrustStore;
  readonly intermediates: IntermediateCache;
}

/** A client that passed: its name and address, its certificate and the CA certificates it came with. */
export interface AcceptedClient extends PeerInfo {
  readonly name: string;
  readonly cert: X509Certificate;
  /** The CA certificates the client sent with its own (none on a resumed session). */
  readonly chain: readonly X509Certificate[];
  /** The TLS session was resumed (an abbreviated handshake). */
  readonly resumed: boolean;
}

/**
 * Intermediate CA certificates that clients sent with theirs on full
 * handshakes, each verified up to a CA of the bundle when it was added. A
 * resumed session carries the client's certificate alone, so these let
 * the server check a resumed client whose CA is an intermediate. Bounded:
 * the oldest goes first.
 */
export class IntermediateCache {
  private readonly byFingerprint = new Map<string, X509Certificate>();

  constructor(private readonly max = 64) {}

  /** Keeps the chain's CA certificates that are not in the bundle and that the bundle trusts. */
  remember(chain: readonly X509Certificate[], trust: TrustStore): void {
    for (const cert of chain) {
      if (!cert.ca || cert.checkIssued(cert) || trust.isCa(cert)) continue;
      const key = cert.fingerprint256;
      if (this.byFingerprint.has(key)) continue;
      if (trust.check(cert, { intermediates: chain }) !== undefined) continue;
      this.byFingerprint.set(key, cert);
      if (this.byFingerprint.size > this.max) this.byFingerprint.delete(this.byFingerprint.keys().next().value as string);
    }
  }

  values(): IterableIterator<X509Certificate> {
    return this.byFingerprint.values();
  }
}

/**
 * The client of a socket whose handshake completed, or undefined after
 * refusing it. Reads the certificate leanly (`getPeerX509Certificate()`),
 * never the object `getPeerCertificate()` builds with the DER, public key
 * and fingerprints, which costs a connect storm dearly.
 */
export function acceptClient(socket: tls.TLSSocket, ctx: AcceptContext): AcceptedClient | undefined {
  const cert = socket.getPeerX509Certificate();
  const address = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : undefined;
  const resumed = socket.isSessionReused();
  const name = certificateName(cert);
  const refuse = (reason: string, code: string | undefined): undefined => {
    ctx.stats.increment('connections.refused');
    ctx.log.warn({ address, name, code, resumed }, `refused a client: ${reason}`);
    socket.destroy();
    return undefined;
  };
  if (!cert) return refuse('it sent no certificate', 'NO_CERTIFICATE');
  const verifyCode = socket.authorizationError as unknown as string | null | undefined;
  if (!socket.authorized && !isCrlVerifyCode(verifyCode)) {
    // The server's own check words it with the details (serial, CA) when it agrees with OpenSSL.
    const own = ctx.trust.check(cert);
    return refuse(own && own.code === verifyCode ? own.message : describeVerifyCode(verifyCode, 'client'), verifyCode ?? undefined);
  }
  const chain = resumed ? [] : peerChain(cert);
  const problem = ctx.trust.check(cert, { intermediates: resumed ? ctx.intermediates.values() : chain });
  if (problem) return refuse(problem.message, problem.code);
  if (!name) return refuse('its certificate has no common name', 'NO_COMMON_NAME');
  if (!allowsUsage(cert, CLIENT_AUTH_OID)) return refuse('its certificate does not allow client authentication', 'INVALID_PURPOSE');
  if (chain.length > 0) ctx.intermediates.remember(chain, ctx.trust);
  if (resumed) ctx.stats.increment('connections.resumed');
  return { name, address, cert, chain, resumed };
}

/** A handshake that failed or timed out (`tlsClientError`): counted, logged once, closed. */
export function refuseHandshake(err: Error, socket: tls.TLSSocket, report: AcceptReporting): void {
  report.stats.increment('connections.refused');
  report.log.warn({ err: err.message, code: (err as NodeJS.ErrnoException).code, address: socket.remoteAddress }, 'refused a connection: TLS handshake failed');
  // Node reports a handshake timeout here but leaves the socket open.
  socket.destroy();
}
