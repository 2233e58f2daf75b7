/**
 * Identity lifecycle of the real executables: SIGHUP makes a running
 * `restpipe-server` re-read its certificate folder (a revoked client's pipe
 * closes at once, the others stay; a replaced server certificate is what
 * the next `openssl s_client` sees while existing pipes keep working), and
 * `restpipe-client` too (the next dial shows the new certificate). A CRL
 * signed by another CA stops the start with exit 2 and one line; a stale
 * CRL warns and the server runs. The folder is a link swapped atomically,
 * so only SIGHUP, never the folder watch, can make these reloads happen.
 */
import { X509Certificate } from 'node:crypto';
import { rename, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCa, createClientIdentity, createServerIdentity, installIdentity } from '@restpipe/certs-tool';
import type { ClientStatusEvent, RestPipeClient } from '@restpipe/client';
import type { MessageExchange, TlsIdentity } from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { makeCrl, openssl, opensslCertInfo } from './helpers/crl.js';
import { testPki } from './helpers/identities.js';
import { CLIENT_CLI, SERVER_CLI, installedIdentity, runToExit, spawnNode, tempDir, type NodeProcess } from './helpers/node-process.js';
import { TEST_ENV, closeAll, freePort, httpClient, startClient, startServer, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

const DAY_MS = 24 * 3600_000;

/** A certificate folder reached through a link, so that swapping the link changes what a reload reads and nothing the watch sees. */
async function linkedFolder(id: TlsIdentity): Promise<{ link: string; swap(next: string): Promise<void> }> {
  const first = await installedIdentity('server', id);
  const link = join(await tempDir('restpipe-link-'), 'current');
  await symlink(first, link);
  return {
    link,
    async swap(next) {
      await symlink(next, `${link}.new`);
      await rename(`${link}.new`, link);
    },
  };
}

async function serverProcess(certPath: string, env: Record<string, string> = {}): Promise<{ proc: NodeProcess; port: number }> {
  const port = await freePort();
  const proc = spawnNode(SERVER_CLI, { ...TEST_ENV, RP_LOG_LEVEL: 'info', RP_SERVER_BIND_PORT: String(port), RP_SERVER_CERT_PATH: certPath, ...env });
  await proc.waitForLog('pipe listening for clients');
  return { proc, port };
}

function nextStatus<T extends ClientStatusEvent['type']>(client: RestPipeClient, type: T): Promise<Extract<ClientStatusEvent, { type: T }>> {
  return new Promise((resolve) => {
    const on = (e: ClientStatusEvent) => {
      if (e.type !== type) return;
      client.off('status', on);
      resolve(e as Extract<ClientStatusEvent, { type: T }>);
    };
    client.on('status', on);
  });
}

async function answers(client: RestPipeClient): Promise<number> {
  return (await httpClient()('GET', `${client.gatewayAddress}/server/time`)).status;
}

/** The certificate the server at `port` shows a new connection, as `openssl s_client -showcerts` prints it. */
async function shownCertificate(port: number): Promise<string> {
  const pki = await testPki();
  const id = await pki.client('s-client');
  const dir = await tempDir('restpipe-sclient-');
  await writeFile(join(dir, 'ca.crt'), pki.ca.certPem);
  await writeFile(join(dir, 'c.crt'), id.cert);
  await writeFile(join(dir, 'c.key'), id.key);
  const out = await openssl(
    [
      's_client',
      '-connect',
      `127.0.0.1:${port}`,
      '-servername',
      'localhost',
      '-cert',
      join(dir, 'c.crt'),
      '-key',
      join(dir, 'c.key'),
      '-CAfile',
      join(dir, 'ca.crt'),
      '-verify_return_error',
      '-showcerts',
    ],
    '',
  );
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/.exec(out)?.[0];
  if (!pem) throw new Error(`s_client showed no certificate: ${out}`);
  return `${pem}\n`;
}

describe('SIGHUP to restpipe-server', () => {
  it('revokes: the listed client is sent away within 1 s, another keeps answering', async () => {
    const pki = await testPki();
    const folder = await linkedFolder(pki.server);
    const { proc, port } = await serverProcess(folder.link);
    const victim = await startClient({ port }, { name: 'hup-victim', env: { RP_CLIENT_RECONNECT_INITIAL_S: '0.05', RP_CLIENT_RECONNECT_MAX_S: '0.2' } });
    const bystander = await startClient({ port }, { name: 'hup-bystander' });
    const bystanderExchange = bystander.exchange;
    const goaway = new Promise<string>((resolve) => (victim.exchange as MessageExchange).once('goaway', resolve));
    const gone = nextStatus(victim, 'disconnected');
    const revoked = await installedIdentity('server', pki.server);
    await writeFile(join(revoked, 'crl.pem'), await makeCrl(pki.ca, { revoke: [(await pki.client('hup-victim')).cert] }));
    await folder.swap(revoked);
    const sent = Date.now();
    proc.child.kill('SIGHUP');
    await gone;
    expect(Date.now() - sent).toBeLessThan(1000);
    expect(await goaway).toMatch(/^the server no longer accepts this client: its certificate is revoked/);
    expect(await proc.waitForLog('reloaded the identity')).toMatchObject({ trigger: 'SIGHUP', revoked: 1, closed: 1 });
    expect(bystander.exchange).toBe(bystanderExchange);
    expect(await answers(bystander)).toBe(200);
    await waitFor(
      () => proc.logs().some((l) => String(l['msg']).startsWith('refused a client: its certificate is revoked (serial')),
      5000,
      'the refused reconnect',
    );
    expect(proc.child.exitCode).toBeNull();
    expect(proc.stderr()).toBe('');
  });

  it('a replaced server certificate is what a new connection sees; existing pipes keep working', async () => {
    const pki = await testPki();
    const folder = await linkedFolder(pki.server);
    const { proc, port } = await serverProcess(folder.link);
    const client = await startClient({ port }, { name: 'hup-steady' });
    const exchange = client.exchange;
    const before = await opensslCertInfo(await shownCertificate(port));
    expect(before.fingerprint).toBe((await opensslCertInfo(String(pki.server.cert))).fingerprint);
    const renewed = await createServerIdentity(pki.ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyBits: 2048 });
    await folder.swap(await installedIdentity('server', { key: renewed.keyPem, cert: renewed.certPem, ca: pki.ca.certPem }));
    proc.child.kill('SIGHUP');
    expect(await proc.waitForLog('reloaded the identity')).toMatchObject({
      trigger: 'SIGHUP',
      serial: new X509Certificate(renewed.certPem).serialNumber,
      closed: 0,
    });
    const after = await opensslCertInfo(await shownCertificate(port));
    expect(after.fingerprint).toBe((await opensslCertInfo(renewed.certPem)).fingerprint);
    expect(after.fingerprint).not.toBe(before.fingerprint);
    expect(client.exchange).toBe(exchange);
    expect(await answers(client)).toBe(200);
    expect(proc.logs().filter((l) => l['msg'] === 'client disconnected' && l['client'] === 'hup-steady')).toEqual([]);
  });
});

describe('restpipe-server at start', () => {
  it('a CRL signed by another CA stops the start: exit 2, one line', async () => {
    const pki = await testPki();
    const dir = await installedIdentity('server', pki.server);
    await writeFile(join(dir, 'crl.pem'), await makeCrl(await createCa({ commonName: 'Some Other CA', keyBits: 2048 })));
    const run = await runToExit(SERVER_CLI, { ...TEST_ENV, RP_SERVER_CERT_PATH: dir });
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(
      `restpipe-server: RP_IDENTITY_FILES: RP_SERVER_CERT_PATH="${dir}": the CRL of CN=Some Other CA in crl.pem is from no CA in ca.crt.pem\n`,
    );
    expect(run.stdout).toBe('');
  });

  it('a stale CRL warns at start; the server runs and admits a client the CRL does not list', async () => {
    const pki = await testPki();
    const dir = await installedIdentity('server', pki.server);
    const nextUpdate = new Date(Date.now() - 2 * DAY_MS);
    await writeFile(join(dir, 'crl.pem'), await makeCrl(pki.ca, { lastUpdate: new Date(Date.now() - 9 * DAY_MS), nextUpdate }));
    const { proc, port } = await serverProcess(dir);
    const warning = proc.logs().find((l) => String(l['msg']).startsWith('the CRL is past its next update'));
    expect(warning).toMatchObject({ level: 40, ca: 'CN=RestPipe Test CA', nextUpdate: new Date(Math.floor(nextUpdate.getTime() / 1000) * 1000).toISOString() });
    const client = await startClient({ port }, { name: 'stale-ok' });
    expect(await answers(client)).toBe(200);
  });
});

describe('SIGHUP to restpipe-client', () => {
  it('the next dial shows the new certificate; the live pipe is untouched until then', async () => {
    const pki = await testPki();
    const server = await startServer();
    const http = httpClient();
    const clientsList = async () => (await http('GET', `${server.gatewayAddress}/_restpipe/clients`)).json<Array<Record<string, unknown>>>();
    const first = await pki.client('hup-agent');
    const dir = await installedIdentity('client', first);
    const proc = spawnNode(CLIENT_CLI, {
      ...TEST_ENV,
      RP_LOG_LEVEL: 'info',
      RP_CLIENT_CERT_PATH: dir,
      RP_CLIENT_TARGET_PORT: String(server.pipeAddress.port),
      RP_CLIENT_RECONNECT_INITIAL_S: '0.05',
    });
    await proc.waitForLog('connected to the server');
    await waitFor(() => server.registry.get('hup-agent')?.ready === true);
    expect((await clientsList()).map((c) => c['serial'])).toEqual([new X509Certificate(first.cert).serialNumber]);
    const exchange = server.registry.get('hup-agent');
    // A new certificate for the same name, installed in place.
    const second = await createClientIdentity(pki.ca, { commonName: 'hup-agent', keyBits: 2048 });
    await installIdentity('client', { keyPem: second.keyPem, certPem: second.certPem, caPem: pki.ca.certPem }, dir, { force: true });
    proc.child.kill('SIGHUP');
    expect(await proc.waitForLog('reloaded the identity')).toMatchObject({
      trigger: 'SIGHUP',
      serial: new X509Certificate(second.certPem).serialNumber,
      closed: 0,
    });
    expect(server.registry.get('hup-agent')).toBe(exchange);
    // The next dial (after the server drops this pipe) shows the new certificate, not a session of the old one.
    exchange?.close();
    await waitFor(() => server.registry.get('hup-agent')?.ready === true && server.registry.get('hup-agent') !== exchange, 5000, 'the reconnect');
    expect((await clientsList()).map((c) => [c['serial'], c['tlsResumed']])).toEqual([[new X509Certificate(second.certPem).serialNumber, false]]);
    expect(proc.child.exitCode).toBeNull();
  });
});
