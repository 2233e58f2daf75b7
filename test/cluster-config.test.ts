/**
 * The cluster's settings: what goes together, files readable at start, and
 * the real executable refusing a bad one with exit code 2 and one line
 * (for a start and for `--check-config` alike), before it listens.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadServerConfig } from '@restpipe/server';
import { checkClusterSettings } from '../server/src/config.js';
import { afterEach, describe, expect, it } from 'vitest';
import { testPki } from './helpers/identities.js';
import { SERVER_CLI, childEnv, installedIdentity, tempDir } from './helpers/node-process.js';
import { TEST_ENV, closeAll } from './helpers/pipe.js';

afterEach(closeAll);

const URL = { RP_SERVER_NATS_URL: 'nats://127.0.0.1:4222' };

describe('cluster settings', () => {
  it('without RP_SERVER_NATS_URL the server is a single instance, and NATS settings alone are refused', async () => {
    const config = await loadServerConfig({ ...TEST_ENV });
    expect(config.natsUrl).toBeUndefined();
    expect(config.clusterName).toBe('restpipe');
    expect(() => checkClusterSettings(config)).not.toThrow();
    const alone = await loadServerConfig({ ...TEST_ENV, RP_SERVER_NATS_USER: 'rp' });
    expect(() => checkClusterSettings(alone)).toThrow(/RP_SERVER_NATS_USER is set but RP_SERVER_NATS_URL is not/);
  });

  it.each([
    [{ ...URL, RP_SERVER_NATS_CERT: '/etc/hosts' }, /RP_SERVER_NATS_CERT and RP_SERVER_NATS_KEY go together/],
    [{ ...URL, RP_SERVER_NATS_USER: 'rp' }, /RP_SERVER_NATS_USER and RP_SERVER_NATS_PASSWORD go together/],
    [{ ...URL, RP_SERVER_NATS_USER: 'rp', RP_SERVER_NATS_PASSWORD: 'x', RP_SERVER_NATS_CREDS: '/etc/hosts' }, /set one/],
    [{ ...URL, RP_SERVER_NATS_CA: '/nowhere/ca.pem' }, /RP_SERVER_NATS_CA="\/nowhere\/ca.pem" cannot be read: ENOENT/],
    [{ ...URL, RP_SERVER_NATS_CREDS: '/nowhere/rp.creds' }, /RP_SERVER_NATS_CREDS="\/nowhere\/rp.creds" cannot be read/],
    [{ RP_SERVER_NATS_URL: 'http://nats:4222' }, /RP_SERVER_NATS_URL.*is not a NATS server address/],
    [{ ...URL, RP_SERVER_CLUSTER_NAME: 'rest.pipe' }, /RP_SERVER_CLUSTER_NAME.*letters, digits/],
    [{ ...URL, RP_SERVER_INSTANCE_NAME: 'pipe a' }, /RP_SERVER_INSTANCE_NAME.*without blanks/],
  ])('refuses %o', async (env, message) => {
    await expect(loadServerConfig({ ...TEST_ENV, ...env }).then(checkClusterSettings)).rejects.toThrow(message);
  });

  it('takes a whole cluster configuration', async () => {
    const dir = await tempDir('rp-nats-files-');
    const ca = join(dir, 'ca.pem');
    writeFileSync(ca, 'x');
    const config = await loadServerConfig({
      ...TEST_ENV,
      RP_SERVER_NATS_URL: 'tls://nats-1:4222,tls://nats-2:4222',
      RP_SERVER_NATS_CA: ca,
      RP_SERVER_NATS_USER: 'restpipe',
      RP_SERVER_NATS_PASSWORD: 'secret',
      RP_SERVER_CLUSTER_NAME: 'shops-eu',
      RP_SERVER_INSTANCE_NAME: 'pipe-a.example.com:1234',
    });
    expect(() => checkClusterSettings(config)).not.toThrow();
    expect({ url: config.natsUrl, ca: config.natsCa, name: config.clusterName, instance: config.instanceName }).toEqual({
      url: 'tls://nats-1:4222,tls://nats-2:4222',
      ca,
      name: 'shops-eu',
      instance: 'pipe-a.example.com:1234',
    });
  });

  it('the real executable exits 2 with one line naming the variable, for --check-config and for a start', async () => {
    const pki = await testPki();
    const certPath = await installedIdentity('server', pki.server);
    const env = { ...TEST_ENV, RP_SERVER_CERT_PATH: certPath, RP_SERVER_NATS_URL: 'nats://127.0.0.1:4222', RP_SERVER_NATS_CA: '/nowhere/ca.pem' };
    for (const args of [['--check-config'], []]) {
      const r = spawnSync(process.execPath, [SERVER_CLI, ...args], { env: childEnv(env), encoding: 'utf8', timeout: 20_000 });
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/RP_SERVER_NATS_CA="\/nowhere\/ca.pem" cannot be read/);
    }
  });
});
