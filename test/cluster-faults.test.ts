/**
 * Faults of a cluster, for real: an instance process killed with SIGKILL
 * under load, NATS going down and coming back, and one node of a three-node
 * NATS cluster killed. Every request is answered; service comes back by
 * itself.
 */
import { ClientEventHandler } from '@restpipe/client';
import type { EventContext } from '@restpipe/shared';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { natsState, startInstance, waitNatsUp, waitVisible } from './helpers/cluster.js';
import { testPki } from './helpers/identities.js';
import { restartNatsServer, startNatsCluster, startNatsServer } from './helpers/nats.js';
import { SERVER_CLI, installedIdentity, spawnNode, type NodeProcess } from './helpers/node-process.js';
import { TEST_ENV, closeAll, freePort, httpClient, onClose, startClient, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

class Branch extends ClientEventHandler {
  constructor(readonly label: string) {
    super();
  }
  get_where(_ctx: EventContext) {
    return { label: this.label };
  }
}

/** What a caller may get while an instance or NATS fails: an answer, never a hang or a reset. */
const FAULT_STATUSES = [200, 404, 502, 503, 504];

interface InstanceProcess {
  readonly name: string;
  readonly port: number;
  readonly gateway: string;
  readonly proc: NodeProcess;
}

async function instanceProcess(natsUrl: string, name: string, certPath: string): Promise<InstanceProcess> {
  const port = await freePort();
  const proc = spawnNode(SERVER_CLI, {
    ...TEST_ENV,
    RP_LOG_LEVEL: 'info',
    RP_SERVER_BIND_PORT: String(port),
    RP_SERVER_CERT_PATH: certPath,
    RP_SERVER_NATS_URL: natsUrl,
    RP_SERVER_INSTANCE_NAME: name,
  });
  const listening = await proc.waitForLog('gateway listening', 20_000);
  return { name, port, gateway: String(listening.gateway), proc };
}

/** Callers hammering `urls` until stopped; every answer's status is kept, and any request that got no answer. */
function load(urls: string[], workers: number) {
  const agent = new Agent({ connections: workers, headersTimeout: 10_000, bodyTimeout: 10_000 });
  onClose(() => agent.close());
  const statuses = new Map<number, number>();
  const failures: string[] = [];
  let running = true;
  const loops = Array.from({ length: workers }, async (_, w) => {
    for (let i = w; running; i++) {
      const url = urls[i % urls.length] as string;
      try {
        const res = await request(url, { dispatcher: agent, headers: { 'x-restpipe-timeout-ms': '3000' } });
        await res.body.text();
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      } catch (err) {
        failures.push(`${url}: ${(err as Error).message}`);
      }
    }
  });
  return {
    statuses,
    failures,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Every one of `urls` answers 200 right now. */
async function allAnswer(urls: string[]): Promise<boolean> {
  const answers = await Promise.all(
    urls.map((u) =>
      request(u)
        .then(async (r) => {
          await r.body.text();
          return r.statusCode;
        })
        .catch(() => 0),
    ),
  );
  return answers.every((s) => s === 200);
}

async function waitAllAnswer(urls: string[], timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await allAnswer(urls))) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('cluster faults', () => {
  it('an instance killed under load: every request is answered and its clients are reachable through the others within 10 s', async () => {
    const nats = await startNatsServer();
    const pki = await testPki();
    const certPath = await installedIdentity('server', pki.server);
    const instances = await Promise.all(['a', 'b', 'c'].map((n) => instanceProcess(nats.url, n, certPath)));
    const [a, b, c] = instances as [InstanceProcess, InstanceProcess, InstanceProcess];
    const targets = instances.map((i) => `127.0.0.1:${i.port}`).join(',');
    const names = Array.from({ length: 6 }, (_, i) => `shop-${i + 1}`);
    for (const name of names) {
      await startClient(
        { port: a.port },
        {
          name,
          handler: new Branch(name),
          env: {
            RP_CLIENT_TARGET_HOSTNAME: targets,
            RP_CLIENT_TARGET_SERVERNAME: 'localhost',
            RP_CLIENT_RECONNECT_INITIAL_S: '0.2',
            RP_CLIENT_HEARTBEAT_INTERVAL_S: '0.5',
            RP_CLIENT_HEARTBEAT_TIMEOUT_S: '2',
          },
        },
      );
    }
    const urlsAt = (gateway: string) => names.map((n) => `${gateway}/client/${n}/where`);
    await waitAllAnswer([...urlsAt(b.gateway), ...urlsAt(c.gateway)], 20_000, 'every client to answer through b and c');
    const http = httpClient();
    const listed = (await http('GET', `${b.gateway}/_restpipe/clients`)).json<Array<{ name: string; instance: string }>>();
    expect(listed.map((x) => x.name).sort()).toEqual(names);

    const traffic = load([...urlsAt(b.gateway), ...urlsAt(c.gateway)], 8);
    // Traffic runs before the kill: wait until some of it was answered.
    await waitFor(() => (traffic.statuses.get(200) ?? 0) > 20, 20_000, 'traffic before the kill');
    const killedAt = Date.now();
    a.proc.child.kill('SIGKILL');
    await a.proc.exited;
    await waitAllAnswer([...urlsAt(b.gateway), ...urlsAt(c.gateway)], 20_000, 'every client to answer again through b and c');
    const back = Date.now() - killedAt;
    await traffic.stop();

    expect(traffic.failures).toEqual([]);
    for (const status of traffic.statuses.keys()) expect(FAULT_STATUSES).toContain(status);
    // The bound for failover; the clients reconnect at once on the reset, so this holds with room.
    expect(back).toBeLessThan(10_000);
    const after = (await http('GET', `${c.gateway}/_restpipe/clients`)).json<Array<{ name: string; instance: string }>>();
    expect(after.map((x) => x.name).sort()).toEqual(names);
    expect(after.every((x) => x.instance === 'b' || x.instance === 'c')).toBe(true);
  }, 90_000);

  it('an instance draining (SIGTERM) sends its clients to the others, where the whole cluster reaches them', async () => {
    const nats = await startNatsServer();
    const a = await startInstance(nats.url, 'a');
    const b = await startInstance(nats.url, 'b');
    const c = await startInstance(nats.url, 'c');
    await waitNatsUp([a, b, c]);
    const targets = [a, b].map((i) => `127.0.0.1:${i.pipeAddress.port}`).join(',');
    await startClient(a, {
      name: 'kiosk',
      handler: new Branch('kiosk'),
      env: { RP_CLIENT_TARGET_HOSTNAME: targets, RP_CLIENT_TARGET_SERVERNAME: 'localhost' },
    });
    await waitVisible([a, b, c], 'kiosk');
    const holder = a.registry.get('kiosk') ? a : b;
    const other = holder === a ? b : a;
    await holder.close();
    await waitFor(() => other.registry.get('kiosk')?.ready === true, 10_000, 'the client to move to the other instance');
    await waitAllAnswer([`${c.gatewayAddress}/client/kiosk/where`], 10_000, 'the client to answer through c');
  });

  it('NATS down: each instance serves its own clients and answers 503 for the others; back: the cluster works again', async () => {
    const nats = await startNatsServer();
    const a = await startInstance(nats.url, 'a');
    const b = await startInstance(nats.url, 'b');
    await waitNatsUp([a, b]);
    await startClient(a, { name: 'on-a', handler: new Branch('on-a') });
    await startClient(b, { name: 'on-b', handler: new Branch('on-b') });
    await waitVisible([a, b], 'on-a');
    await waitVisible([a, b], 'on-b');
    const http = httpClient();

    await nats.stop();
    await waitFor(() => natsState(b) !== 'connected' && natsState(a) !== 'connected', 10_000, 'both instances to see NATS down');
    const own = await http('GET', `${b.gatewayAddress}/client/on-b/where`);
    expect(own.status).toBe(200);
    const remote = await http('GET', `${b.gatewayAddress}/client/on-a/where`);
    expect({ status: remote.status, code: remote.code }).toEqual({ status: 503, code: 243 });
    expect(remote.json<{ error: { code: string } }>().error.code).toBe('RP_CLUSTER_UNAVAILABLE');
    const status = (await http('GET', `${b.gatewayAddress}/_restpipe/status`)).json<{ cluster: { nats: { state: string; lastError: string | null } } }>();
    expect(['reconnecting', 'connecting']).toContain(status.cluster.nats.state);

    await restartNatsServer(nats);
    await waitNatsUp([a, b], 20_000);
    await waitAllAnswer([`${b.gatewayAddress}/client/on-a/where`, `${a.gatewayAddress}/client/on-b/where`], 20_000, 'the cluster to route again');
  }, 60_000);

  it('one node of a three-node NATS cluster killed: traffic goes on', async () => {
    const nodes = await startNatsCluster(3);
    const urls = nodes.map((n) => n.url).join(',');
    const a = await startInstance(urls, 'a');
    const b = await startInstance(urls, 'b');
    await waitNatsUp([a, b]);
    await startClient(a, { name: 'till', handler: new Branch('till') });
    await waitVisible([a, b], 'till');
    const url = `${b.gatewayAddress}/client/till/where`;
    await waitAllAnswer([url], 10_000, 'the client to answer through b');

    const traffic = load([url], 4);
    await waitFor(() => (traffic.statuses.get(200) ?? 0) > 20, 20_000, 'traffic before the kill');
    // Kill the node instance a is connected to: the one its requests come in through.
    const server = (a.status().cluster as { nats: { server: string } }).nats.server;
    const victim = nodes.find((n) => server.endsWith(`:${n.port}`)) ?? nodes[0]!;
    await victim.kill();
    await waitFor(() => natsState(a) === 'connected' && natsState(b) === 'connected', 20_000, 'both instances on a surviving node');
    const before = traffic.statuses.get(200) ?? 0;
    await waitFor(() => (traffic.statuses.get(200) ?? 0) > before + 20, 20_000, 'traffic after the kill');
    await traffic.stop();
    expect(traffic.failures).toEqual([]);
    for (const status of traffic.statuses.keys()) expect(FAULT_STATUSES).toContain(status);
    expect(nodes.filter((n) => n !== victim).some((n) => String((a.status().cluster as { nats: { server: string } }).nats.server).endsWith(`:${n.port}`))).toBe(
      true,
    );
  }, 60_000);
});
