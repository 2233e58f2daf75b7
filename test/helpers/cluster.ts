/**
 * Clusters of in-process server instances on a real nats-server (or a NATS
 * cluster), with real TLS clients: instances named `a`, `b`, …, and a wait
 * until every instance sees a client wherever it is connected.
 */
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

export { patternSource, sha256Of } from './bytes.js';
