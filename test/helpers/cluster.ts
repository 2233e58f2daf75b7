/**
 * Clusters of in-process server instances on a real nats-server (or a NATS
 * cluster), with real TLS clients: instances named `a`, `b`, …, and a wait
 * until every instance sees a client wherever it is connected.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { RestPipeServer } from '@restpipe/server';
import { startServer, waitFor, type ServerSetup } from './pipe.js';

/** Fast presence and link settings are constants of the cluster; the tests only name instances and NATS. */
export async function startInstance(natsUrl: string, name: string, setup: ServerSetup = {}): Promise<RestPipeServer> {
  return startServer({ ...setup, env: { RP_SERVER_NATS_URL: natsUrl, RP_SERVER_INSTANCE_NAME: name, ...setup.env } });
}

/** Waits until every instance lists `name` among the clients it can reach. */
export async function waitVisible(instances: RestPipeServer[], name: string, timeoutMs = 10_000): Promise<void> {
  await waitFor(() => instances.every((i) => i.clientNames().includes(name)), timeoutMs, `client ${name} to be visible on every instance`);
}

/** Waits until every instance's NATS link is up. */
export async function waitNatsUp(instances: RestPipeServer[], timeoutMs = 10_000): Promise<void> {
  await waitFor(() => instances.every((i) => natsState(i) === 'connected'), timeoutMs, 'every instance to be connected to NATS');
}

/** The state of an instance's NATS link, as its status says. */
export function natsState(instance: RestPipeServer): string | undefined {
  const cluster = instance.status().cluster as { nats?: { state?: string } } | undefined;
  return cluster?.nats?.state;
}

/** A deterministic stream of `total` bytes, hashed as it goes. */
export function patternSource(total: number): { stream: Readable; digest: () => string } {
  const hash = createHash('sha256');
  let sent = 0;
  let seed = 7;
  const stream = new Readable({
    read() {
      if (sent >= total) return void this.push(null);
      const n = Math.min(256 * 1024, total - sent);
      const buf = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i += 4) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        buf.writeUInt32LE(seed, i);
      }
      hash.update(buf);
      sent += n;
      this.push(buf);
    },
  });
  return { stream, digest: () => hash.digest('hex') };
}

export async function sha256Of(stream: AsyncIterable<unknown>): Promise<{ hex: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const piece of stream) {
    hash.update(piece as Buffer);
    bytes += (piece as Buffer).length;
  }
  return { hex: hash.digest('hex'), bytes };
}
