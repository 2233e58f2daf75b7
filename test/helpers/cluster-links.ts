/**
 * Server instances of a cluster reduced to their transport, for the link
 * tests: each has its own NATS connection, link table and forwarding router,
 * and holds clients as in-process pipes (the same exchange as a TLS pipe).
 * Everything is closed at teardown through `onClose`.
 */
import { once } from 'node:events';
import type { ClientEventHandler } from '@restpipe/client';
import { Env, createInProcessPair, readCommonConfig, type Pipe, type PipeLimits } from '@restpipe/shared';
import { ForwardingRouter } from '../../server/src/cluster/forwarder.js';
import { LinkTable } from '../../server/src/cluster/links.js';
import { NatsLink, type NatsOptions } from '../../server/src/cluster/nats-connection.js';
import { CountingStats } from './counting-stats.js';
import type { NatsServer } from './nats.js';
import { onClose, quietLog } from './pipe.js';

export const NAMESPACE = 'rptest';

export interface TestInstance {
  readonly name: string;
  readonly nats: NatsLink;
  readonly links: LinkTable;
  readonly stats: CountingStats;
  /** The clients held here, by name. */
  readonly pipes: Map<string, Pipe>;
}

export interface InstanceSetup {
  /** `RP_` settings of the pipe limits (window, chunk, buffer, frame size). */
  env?: Record<string, string>;
  heartbeatIntervalMs?: number;
  heartbeatTimeoutMs?: number;
  nats?: Partial<NatsOptions>;
}

/** Limits as a node reads them from its settings. */
export function limitsOf(env: Record<string, string> = {}): PipeLimits {
  return readCommonConfig(new Env({ RP_STATSD_HOST: '', ...env }));
}

/** Starts a NatsLink (not waiting for it); closed at teardown. */
export function startNatsLink(opts: NatsOptions): NatsLink {
  const link = new NatsLink(opts, quietLog);
  onClose(() => link.close());
  link.start();
  return link;
}

/** Resolves at the link's next `up` (at once when it is up). */
export async function whenUp(link: NatsLink): Promise<void> {
  if (!link.isUp) await once(link, 'up');
}

/** An instance on `server`, connected to NATS and taking links. */
export async function startInstance(server: NatsServer, name: string, setup: InstanceSetup = {}): Promise<TestInstance> {
  const stats = new CountingStats();
  const pipes = new Map<string, Pipe>();
  const nats = startNatsLink({ servers: [server.url], instance: name, namespace: NAMESPACE, reconnectWaitMs: 100, ...setup.nats });
  const router = new ForwardingRouter({ localPipe: (client) => pipes.get(client), log: quietLog, stats });
  const links = new LinkTable({
    nats,
    namespace: NAMESPACE,
    instance: name,
    log: quietLog,
    stats,
    limits: limitsOf(setup.env),
    router,
    heartbeatIntervalMs: setup.heartbeatIntervalMs,
    heartbeatTimeoutMs: setup.heartbeatTimeoutMs,
  });
  // Registered after the NatsLink's, so it runs first: links close before NATS does.
  onClose(() => links.close(0));
  links.start();
  await whenUp(nats);
  await links.listening();
  return { name, nats, links, stats, pipes };
}

/**
 * A client named `name` held by `instance`, running `handler`: an in-process
 * pipe whose server end the instance's router forwards to. Returns that end.
 */
export async function holdClient(instance: TestInstance, name: string, handler: ClientEventHandler, env: Record<string, string> = {}) {
  const pair = createInProcessPair({ clientHandler: handler, clientName: name, env, log: quietLog });
  onClose(() => pair.close());
  const pipe = pair.exchanges.server;
  if (!pipe.ready) await once(pipe, 'ready');
  instance.pipes.set(name, pipe);
  return pair;
}
