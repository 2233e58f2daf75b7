/**
 * The cluster's deploy files for real: deploy/nats/nats-server.conf runs in
 * a real nats-server (TLS, the user limited to the namespace), and two
 * instances configured from deploy/cluster/server-{a,b}.env reach each
 * other's clients through it, inboxes and all.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClientEventHandler } from '@restpipe/client';
import { RestPipeServer, loadServerConfig } from '@restpipe/server';
import { afterEach, describe, expect, it } from 'vitest';
import { testPki } from './helpers/identities.js';
import { startNatsServerFromConfig } from './helpers/nats.js';
import { REPO_ROOT, tempDir } from './helpers/nginx.js';
import { TEST_ENV, closeAll, httpClient, onClose, quietLog, startClient, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

class Branch extends ClientEventHandler {
  get_where() {
    return { here: true };
  }
}

/** `NAME=value` lines of an environment file (comments and blanks skipped). */
function envFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(join(REPO_ROOT, path), 'utf8').split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) out[m[1] as string] = m[2] as string;
  }
  return out;
}

/** deploy/nats/nats-server.conf with its paths and addresses pointed at this test. */
function renderNatsConfig(files: { cert: string; key: string }): string {
  const text = readFileSync(join(REPO_ROOT, 'deploy/nats/nats-server.conf'), 'utf8');
  const replacements: Record<string, string> = {
    'listen: 0.0.0.0:4222': 'listen: "127.0.0.1:-1"',
    '/etc/nats/tls/nats.crt.pem': files.cert,
    '/etc/nats/tls/nats.key.pem': files.key,
    'listen: 0.0.0.0:6222': 'listen: "127.0.0.1:-1"',
    'http: 127.0.0.1:8222': 'http: "127.0.0.1:-1"',
  };
  let out = text;
  for (const [from, to] of Object.entries(replacements)) {
    const count = text.replace(/#.*$/gm, '').split(from).length - 1;
    if (count !== 1) throw new Error(`deploy/nats/nats-server.conf must contain "${from}" exactly once outside comments (found ${count})`);
    out = out.replaceAll(from, to);
  }
  // The other nodes of the example do not exist here: no routes to solicit.
  return out.replace(/routes: \[[^\]]*\]/, 'routes: []');
}

describe('the cluster deploy files', () => {
  it('nats-server runs deploy/nats, and instances configured from deploy/cluster reach each other through it', async () => {
    const pki = await testPki();
    const dir = tempDir('rp-nats-deploy-');
    const files = { cert: join(dir, 'nats.crt.pem'), key: join(dir, 'nats.key.pem'), ca: join(dir, 'ca.crt.pem') };
    writeFileSync(files.cert, String(pki.server.cert));
    writeFileSync(files.key, String(pki.server.key));
    writeFileSync(files.ca, String(pki.server.ca));
    const nats = await startNatsServerFromConfig(renderNatsConfig(files), { tls: true });

    const instances: RestPipeServer[] = [];
    for (const file of ['deploy/cluster/server-a.env', 'deploy/cluster/server-b.env']) {
      const env = envFile(file);
      expect(env.RP_SERVER_NATS_URL).toMatch(/^tls:\/\//);
      const config = await loadServerConfig({
        ...env,
        ...TEST_ENV,
        // Where this test runs instead of the example's hosts and paths.
        RP_SERVER_NATS_URL: nats.url,
        RP_SERVER_NATS_CA: files.ca,
        RP_SERVER_GATEWAY_SOCKET: '',
      });
      expect(config.natsUser).toBe('restpipe');
      const server = new RestPipeServer({ config, identity: pki.server, log: quietLog });
      onClose(() => server.close(0));
      await server.start();
      instances.push(server);
    }
    const [a, b] = instances as [RestPipeServer, RestPipeServer];
    expect([a.instanceName, b.instanceName]).toEqual(['pipe-a', 'pipe-b']);
    await waitFor(() => [a, b].every((i) => (i.status().cluster as { nats: { state: string } }).nats.state === 'connected'), 10_000, 'both on NATS');

    await startClient(a, { name: 'branch-01', handler: new Branch() });
    await waitFor(() => b.clientNames().includes('branch-01'), 10_000, 'b to see branch-01');
    const http = httpClient();
    const got = await http('GET', `${b.gatewayAddress}/client/branch-01/where`);
    expect({ status: got.status, body: got.json() }).toEqual({ status: 200, body: { here: true } });
    // Nothing was refused for permissions: every subject, inboxes too, is under the namespace.
    expect(nats.child.output()).not.toMatch(/Permissions Violation/i);
  });

  it("the example's client settings name every instance", () => {
    const env = envFile('deploy/cluster/client.env');
    expect(env.RP_CLIENT_TARGET_HOSTNAME?.split(',')).toEqual(['pipe-a.example.com', 'pipe-b.example.com', 'pipe-c.example.com']);
  });
});
