/**
 * The server's TLS accept checks. The handshake verifies the chain to the
 * CA and refuses a client without a certificate (OpenSSL's purpose check
 * already turns away most certificates whose usages leave out clientAuth);
 * here the client's name comes from its certificate's CN, and a
 * certificate without one, or without the clientAuth extended key usage,
 * is refused. A refusal is counted in `connections.refused`, logged once at
 * warn, and the socket destroyed.
 */
import type tls from 'node:tls';
import { CLIENT_AUTH_OID, allowsUsage, certificateName, type Logger, type PeerInfo, type Stats } from '@restpipe/shared';

/** What the checks report to. */
export interface AcceptReporting {
  readonly log: Logger;
  readonly stats: Stats;
}

/**
 * The peer of a socket whose handshake completed, or undefined after
 * refusing it. Reads the certificate leanly (`getPeerX509Certificate()`:
 * the subject and the extended key usages only), never the object
 * `getPeerCertificate()` builds with the DER, public key and fingerprints,
 * which costs a connect storm dearly.
 */
export function acceptClient(socket: tls.TLSSocket, report: AcceptReporting): PeerInfo | undefined {
  const cert = socket.getPeerX509Certificate();
  const name = certificateName(cert);
  const address = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : undefined;
  if (name && allowsUsage(cert, CLIENT_AUTH_OID)) return { name, address };
  report.stats.increment('connections.refused');
  report.log.warn(
    { address, name },
    name ? 'refused a client: its certificate does not allow client authentication' : 'refused a client: its certificate has no common name',
  );
  socket.destroy();
  return undefined;
}

/** A handshake that failed or timed out (`tlsClientError`): counted, logged once, closed. */
export function refuseHandshake(err: Error, socket: tls.TLSSocket, report: AcceptReporting): void {
  report.stats.increment('connections.refused');
  report.log.warn({ err: err.message, code: (err as NodeJS.ErrnoException).code, address: socket.remoteAddress }, 'refused a connection: TLS handshake failed');
  // Node reports a handshake timeout here but leaves the socket open.
  socket.destroy();
}
