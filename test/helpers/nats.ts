/**
 * Real nats-server processes for the cluster tests (Debian's `nats-server`,
 * which .ci/run installs): one server, or a cluster of several joined by
 * routes, on ports the kernel picks (read back from the ports file), stopped
 * at teardown through `onClose` (test/helpers/pipe.ts).
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnChild, tempDir, type Child } from './nginx.js';
import { onClose } from './pipe.js';

export const NATS_SERVER_BIN = '/usr/sbin/nats-server';

export interface NatsServerOptions {
  /** Requires this user and password of every client. */
  user?: string;
  password?: string;
  /** TLS: the server's certificate and key (PEM files); with `verifyCa`, clients need a certificate from that CA. */
  tls?: { cert: string; key: string; verifyCa?: string };
  /** Joins a NATS cluster: this server's route port (0: any) and the routes to solicit. */
  cluster?: { name: string; port?: number; routes?: string[] };
  /** The client port to listen on; 0 (any) unless restarting on a known port. */
  port?: number;
  /** Largest message payload, in bytes (nats-server's `max_payload`). */
  maxPayload?: number;
  name?: string;
}

/** A running nats-server. */
export interface NatsServer {
  /** `nats://127.0.0.1:<port>` (or `tls://…`). */
  readonly url: string;
  readonly port: number;
  /** `nats://127.0.0.1:<route port>` when clustered. */
  readonly routeUrl: string | undefined;
  readonly routePort: number | undefined;
  readonly child: Child;
  readonly options: NatsServerOptions;
  /** SIGTERM (graceful), then SIGKILL after a second. */
  stop(): Promise<void>;
  /** SIGKILL at once. */
  kill(): Promise<void>;
}

/** Starts a nats-server and waits until it listens; stopped at teardown. */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServer> {
  const dir = tempDir('rp-nats-');
  const conf: string[] = [`listen: "127.0.0.1:${opts.port ?? -1}"`, `ports_file_dir: "${dir}"`];
  if (opts.name) conf.push(`server_name: "${opts.name}"`);
  if (opts.maxPayload !== undefined) conf.push(`max_payload: ${opts.maxPayload}`);
  if (opts.user !== undefined) {
    conf.push(`authorization { user: "${opts.user}", password: "${opts.password ?? ''}" }`);
  }
  if (opts.tls) {
    const verify = opts.tls.verifyCa ? `, ca_file: "${opts.tls.verifyCa}", verify: true` : '';
    conf.push(`tls { cert_file: "${opts.tls.cert}", key_file: "${opts.tls.key}"${verify} }`);
  }
  if (opts.cluster) {
    const routes = (opts.cluster.routes ?? []).map((r) => `"${r}"`).join(', ');
    conf.push(`cluster { name: "${opts.cluster.name}", listen: "127.0.0.1:${opts.cluster.port || -1}", routes: [${routes}] }`);
  }
  return runNatsServer(dir, conf.join('\n'), opts);
}

/**
 * Starts nats-server with a config file's text as given (`ports_file_dir` is
 * added, so that its ports can be read back); stopped at teardown.
 */
export async function startNatsServerFromConfig(text: string, opts: { tls?: boolean } = {}): Promise<NatsServer> {
  const dir = tempDir('rp-nats-');
  return runNatsServer(dir, `${text}\nports_file_dir: "${dir}"`, opts.tls ? { tls: { cert: '', key: '' } } : {});
}

async function runNatsServer(dir: string, text: string, opts: NatsServerOptions): Promise<NatsServer> {
  const file = join(dir, 'nats.conf');
  writeFileSync(file, `${text}\n`);
  const child = spawnChild('nats-server', NATS_SERVER_BIN, ['-c', file], { env: { PATH: process.env.PATH } });
  onClose(() => child.stop('SIGTERM', 2000).then(() => undefined));
  const ports = await readPortsFile(dir, child);
  const port = portOf(ports.nats?.[0]);
  const routePort = ports.cluster?.[0] ? portOf(ports.cluster[0]) : undefined;
  const scheme = opts.tls ? 'tls' : 'nats';
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    routeUrl: routePort === undefined ? undefined : `nats://127.0.0.1:${routePort}`,
    routePort,
    child,
    options: opts,
    stop: async () => {
      await child.stop('SIGTERM', 1000);
    },
    kill: async () => {
      await child.stop('SIGKILL', 0);
    },
  };
}

/**
 * Starts `size` nats-servers joined into one NATS cluster (each routes to the
 * first) and waits until every one sees all the others.
 */
export async function startNatsCluster(size: number, opts: Omit<NatsServerOptions, 'cluster' | 'port' | 'name'> = {}): Promise<NatsServer[]> {
  const name = `rp-${Math.random().toString(36).slice(2, 8)}`;
  const first = await startNatsServer({ ...opts, name: `${name}-1`, cluster: { name } });
  const rest = await Promise.all(
    Array.from({ length: size - 1 }, (_, i) => startNatsServer({ ...opts, name: `${name}-${i + 2}`, cluster: { name, routes: [first.routeUrl as string] } })),
  );
  const all = [first, ...rest];
  await waitForRoutes(all, size - 1);
  return all;
}

/** Restarts a stopped server on the same client port (and route port), with the same options. */
export function restartNatsServer(server: NatsServer): Promise<NatsServer> {
  const cluster = server.options.cluster ? { ...server.options.cluster, port: server.routePort } : undefined;
  return startNatsServer({ ...server.options, port: server.port, cluster });
}

/** Waits until the log of every server shows `routes` route connections (nats-server logs each). */
async function waitForRoutes(servers: NatsServer[], routes: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const counts = servers.map((s) => (s.child.output().match(/Route connection created/g) ?? []).length);
    if (counts.every((n) => n >= routes)) return;
    await sleep(25);
  }
  throw new Error(`the NATS cluster did not form:\n${servers.map((s) => s.child.output()).join('\n---\n')}`);
}

function portOf(url: string | undefined): number {
  const port = Number(/:(\d+)$/.exec(url ?? '')?.[1]);
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no port in "${url}"`);
  return port;
}

/** nats-server writes `<name>_<pid>.ports` once it listens. */
async function readPortsFile(dir: string, child: Child): Promise<{ nats?: string[]; cluster?: string[] }> {
  const pid = child.proc.pid;
  const file = join(dir, `nats-server_${pid}.ports`);
  for (let i = 0; i < 400; i++) {
    if (existsSync(file)) {
      try {
        return JSON.parse(readFileSync(file, 'utf8'));
      } catch {
        // written but not yet whole: read again
      }
    }
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) break;
    await sleep(10);
  }
  throw new Error(`nats-server did not start (${readdirSync(dir).join(', ')}):\n${child.output()}`);
}
