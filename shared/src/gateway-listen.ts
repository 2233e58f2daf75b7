/** Where a gateway listens: a TCP port or a unix socket (a stale socket file left by a dead process is removed first). */
import { existsSync, statSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import type { FastifyInstance } from 'fastify';

/** Where a gateway listens: a TCP host and port, or a unix socket path. */
export type GatewayAddress = { host: string; port: number } | { path: string };

/**
 * Listens on a TCP address or a unix socket; a stale socket file left by a
 * process that died is removed first. Resolves with the address listened on.
 */
export async function listenGateway(app: FastifyInstance, address: GatewayAddress): Promise<string> {
  if ('path' in address) {
    await removeStaleSocket(address.path);
    await app.listen({ path: address.path });
    return address.path;
  }
  await app.listen({ host: address.host, port: address.port });
  const addr = app.server.address();
  if (addr && typeof addr === 'object') {
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return `http://${host}:${addr.port}`;
  }
  return String(addr);
}

async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path) || !statSync(path).isSocket()) return;
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (!alive) unlinkSync(path);
}
