/**
 * Identity lifecycle in process, over real TLS on loopback: a revoked
 * client is refused at the handshake; revoking and reloading closes that
 * client's live pipe with GoAway at once while the others keep answering;
 * a revoked client cannot come back through a resumed TLS session; a
 * reconnect after a server restart resumes; the CA bundle rotates with no
 * downtime for the new CA's clients; a bad file on reload keeps the old
 * identity; a change in the folder reloads by itself; a stale CRL warns
 * and still revokes; expiry shows in the status and warns. CRLs are made
 * by real openssl.
 */
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCa, createClientIdentity, createServerIdentity } from '@restpipe/certs-tool';
import type { ClientStatusEvent, RestPipeClient } from '@restpipe/client';
import { RestPipeServer, loadServerConfig } from '@restpipe/server';
import { ExpiryMonitor, type MessageExchange, type TlsIdentity, prepareIdentity } from '@restpipe/shared';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { makeCrl, opensslCertInfo } from './helpers/crl.js';
import { foreignPki, testPki } from './helpers/identities.js';
import { installedIdentity } from './helpers/node-process.js';
import { TEST_ENV, closeAll, freePort, httpClient, onClose, startClient, waitFor } from './helpers/pipe.js';
import { CountingStats, LogCapture, rawTlsPeer } from './helpers/raw-peer.js';

afterEach(async () => {
  vi.useRealTimers();
  await closeAll();
});

const DAY_MS = 24 * 3600_000;
/** Quick reconnects, so a test waits on the reconnect itself rather than the backoff. */
const FAST_RECONNECT = { RP_CLIENT_RECONNECT_INITIAL_S: '0.05', RP_CLIENT_RECONNECT_MAX_S: '0.2' };

interface Server {
  server: RestPipeServer;
  log: LogCapture;
  stats: CountingStats;
}

/** A real server logging at info into memory; its identity given, or read from `certPath` (then watched). */
async function startServer(setup: { identity?: TlsIdentity; certPath?: string; env?: Record<string, string> } = {}): Promise<Server> {
  const pki = await testPki();
  const log = new LogCapture();
  const stats = new CountingStats();
  const env = { ...TEST_ENV, ...(setup.certPath ? { RP_SERVER_CERT_PATH: setup.certPath } : {}), ...setup.env };
  const server = new RestPipeServer({
    config: await loadServerConfig(env),
    identity: setup.certPath ? undefined : (setup.identity ?? pki.server),
    log: pino({ level: 'info' }, log),
    stats,
  });
  onClose(() => server.close(0));
  await server.start();
  return { server, log, stats };
}

/** Resolves with `promise`, or fails the test when it takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The next status event of `client` of that type. */
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

/** GET /server/time through the client's gateway: the pipe answers. */
async function answers(client: RestPipeClient): Promise<number> {
  const res = await httpClient()('GET', `${client.gatewayAddress}/server/time`);
  return res.status;
}

function serialOf(id: TlsIdentity): string {
  return new X509Certificate(id.cert).serialNumber;
}

describe('revocation', () => {
  it('refuses a revoked client at the handshake with one log line naming why; other clients connect', async () => {
    const pki = await testPki();
    const lost = await pki.client('lost-box');
    const crl = await makeCrl(pki.ca, { revoke: [lost.cert] });
    const { server, log, stats } = await startServer({ identity: { ...pki.server, crl } });
    const peer = await rawTlsPeer(server.pipeAddress.port, lost, { expectFailure: true });
    await peer.waitClosed();
    await waitFor(() => log.warnings().length > 0, 2000, 'the refusal');
    expect(log.warnings().map((l) => [l['code'], l['name'], l['resumed']])).toEqual([['CERT_REVOKED', 'lost-box', false]]);
    expect(log.warnings()[0]?.msg).toBe(`refused a client: its certificate is revoked (serial ${serialOf(lost)}, CRL of CN=RestPipe Test CA)`);
    expect(stats.count('connections.refused')).toBe(1);
    expect(peer.frames).toHaveLength(0);
    const other = await startClient(server, { name: 'branch-ok' });
    expect(await answers(other)).toBe(200);
    expect(server.registry.size).toBe(1);
  });

  it('names why in the one line for an expired, not yet valid, wrong-usage or foreign certificate; the good client stays', async () => {
    const pki = await testPki();
    const { server, log, stats } = await startServer();
    const good = await startClient(server, { name: 'good-one' });
    const goodExchange = server.registry.get('good-one');
    const expired = await createClientIdentity(pki.ca, { commonName: 'old-one', validFrom: new Date(Date.now() - 10 * DAY_MS), days: 1, keyBits: 2048 });
    const future = await createClientIdentity(pki.ca, { commonName: 'early-one', validFrom: new Date(Date.now() + 2 * DAY_MS), days: 3, keyBits: 2048 });
    const serverCert = await createServerIdentity(pki.ca, { commonName: 'posing', dnsNames: ['posing.example'], keyBits: 2048 });
    const foreign = await (await foreignPki()).client('intruder');
    const cases: Array<[TlsIdentity, string, string]> = [
      [{ key: expired.keyPem, cert: expired.certPem, ca: pki.ca.certPem }, 'CERT_HAS_EXPIRED', 'refused a client: its certificate expired on '],
      [{ key: future.keyPem, cert: future.certPem, ca: pki.ca.certPem }, 'CERT_NOT_YET_VALID', 'refused a client: its certificate is not valid before '],
      [
        { key: serverCert.keyPem, cert: serverCert.certPem, ca: pki.ca.certPem },
        'INVALID_PURPOSE',
        'refused a client: its certificate does not allow client authentication',
      ],
      [{ ...foreign, ca: pki.ca.certPem }, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'refused a client: its certificate is not signed by a CA this node trusts'],
    ];
    for (const [identity, code, message] of cases) {
      const before = log.warnings().length;
      const peer = await rawTlsPeer(server.pipeAddress.port, identity, { expectFailure: true });
      await peer.waitClosed();
      await waitFor(() => log.warnings().length > before, 2000, `the refusal (${code})`);
      const line = log.warnings().slice(before);
      expect(
        line.map((l) => l['code']),
        code,
      ).toEqual([code]);
      expect(line[0]?.msg.startsWith(message), `${line[0]?.msg} starts with ${message}`).toBe(true);
    }
    expect(stats.count('connections.refused')).toBe(4);
    expect(server.registry.get('good-one')).toBe(goodExchange);
    expect(await answers(good)).toBe(200);
  });

  it('refuses a client that sends no certificate, with one line; nothing reaches the pipe', async () => {
    const pki = await testPki();
    const { server, log, stats } = await startServer();
    const peer = await rawTlsPeer(server.pipeAddress.port, { ca: pki.ca.certPem }, { expectFailure: true });
    await peer.waitClosed();
    await waitFor(() => log.warnings().length > 0, 2000, 'the refusal');
    expect(log.warnings().map((l) => [l.msg, l['code']])).toEqual([['refused a client: it sent no certificate', 'NO_CERTIFICATE']]);
    expect(stats.count('connections.refused')).toBe(1);
    expect(peer.frames).toHaveLength(0);
    expect(server.registry.size).toBe(0);
  });

  it('revoke + reloadIdentity(): the revoked client gets GoAway and its pipe closes within 1 s; another keeps answering', async () => {
    const pki = await testPki();
    const victimId = await pki.client('victim');
    const { server, log, stats } = await startServer();
    const victim = await startClient(server, { name: 'victim', env: FAST_RECONNECT });
    const bystander = await startClient(server, { name: 'bystander' });
    await waitFor(() => server.registry.size === 2);
    const bystanderExchange = server.registry.get('bystander');
    const victimExchange = victim.exchange as MessageExchange;
    const goaway = once(victimExchange, 'goaway') as Promise<[string]>;
    const closed = nextStatus(victim, 'disconnected');
    const crl = await makeCrl(pki.ca, { revoke: [victimId.cert] });
    const started = Date.now();
    const result = server.reloadIdentity({ ...pki.server, crl });
    expect(result).toEqual({ ok: true, changed: true, closed: 1 });
    const [reason] = await within(goaway, 1000, 'the GoAway');
    await within(closed, 1000, "the victim's pipe to close");
    expect(Date.now() - started).toBeLessThan(1000);
    expect(reason).toMatch(/^the server no longer accepts this client: its certificate is revoked \(serial [0-9A-F]+, CRL of CN=RestPipe Test CA\)$/);
    expect(stats.count('connections.revoked')).toBe(1);
    const closing = log.warnings().filter((l) => l.msg.startsWith("closing a client's connection"));
    expect(closing.map((l) => [l['client'], l['code'], l['serial']])).toEqual([['victim', 'CERT_REVOKED', serialOf(victimId)]]);
    // The bystander's pipe is the very same connection, and answers both ways.
    expect(server.registry.get('bystander')).toBe(bystanderExchange);
    expect(await answers(bystander)).toBe(200);
    expect((await httpClient()('GET', `${server.gatewayAddress}/client/bystander/time`)).status).toBe(200);
    // The victim keeps trying and is refused every time.
    await nextStatus(victim, 'connect_failed');
    expect(server.registry.get('victim')).toBeUndefined();
  });

  it('a revoked client cannot come back through a resumed TLS session', async () => {
    const pki = await testPki();
    const id = await pki.client('resumer');
    const { server, log } = await startServer();
    const client = await startClient(server, { name: 'resumer', env: FAST_RECONNECT });
    await waitFor(() => server.registry.get('resumer')?.ready === true);
    // A reconnect resumes (the client kept the session ticket): the control that makes the next step mean something.
    const reconnected = nextStatus(client, 'connected');
    server.registry.get('resumer')?.close();
    expect((await within(reconnected, 5000, 'the reconnect')).resumed).toBe(true);
    await waitFor(() => server.registry.get('resumer')?.ready === true);
    const failed = nextStatus(client, 'connect_failed');
    const crl = await makeCrl(pki.ca, { revoke: [id.cert] });
    expect(server.reloadIdentity({ ...pki.server, crl })).toMatchObject({ ok: true, closed: 1 });
    const failure = await within(failed, 5000, 'the attempt with the old session');
    expect(failure.resumed).toBe(true);
    const refusals = () => log.warnings().filter((l) => l.msg.startsWith('refused a client: its certificate is revoked'));
    await waitFor(() => refusals().length > 0, 2000, 'the refusal');
    expect(refusals()[0]).toMatchObject({ code: 'CERT_REVOKED', name: 'resumer', resumed: true });
    // The attempt after that is a full handshake (the session is forgotten), refused by OpenSSL's CRL check.
    const full = await within(nextStatus(client, 'connect_failed'), 5000, 'a full handshake');
    expect(full.resumed).toBe(false);
    await waitFor(() => refusals().length > 1, 2000, 'the second refusal');
    expect(refusals()[1]).toMatchObject({ code: 'CERT_REVOKED', name: 'resumer', resumed: false });
    expect(server.registry.get('resumer')).toBeUndefined();
  });

  it('a stale CRL warns at start and still revokes; a client it does not list connects', async () => {
    const pki = await testPki();
    const lost = await pki.client('stale-lost');
    const crl = await makeCrl(pki.ca, { revoke: [lost.cert], lastUpdate: new Date(Date.now() - 10 * DAY_MS), nextUpdate: new Date(Date.now() - 3 * DAY_MS) });
    const { server, log } = await startServer({ identity: { ...pki.server, crl } });
    const stale = log.warnings().filter((l) => l.msg.startsWith('the CRL is past its next update'));
    expect(stale).toHaveLength(1);
    expect(stale[0]).toMatchObject({ ca: 'CN=RestPipe Test CA' });
    // OpenSSL alone would turn everyone away (CRL_HAS_EXPIRED); the server's own check lets a good client in.
    const good = await startClient(server, { name: 'stale-ok' });
    expect(await answers(good)).toBe(200);
    const peer = await rawTlsPeer(server.pipeAddress.port, lost, { expectFailure: true });
    await peer.waitClosed();
    // OpenSSL's last word on it is the stale CRL; the server's own check names the revocation.
    await waitFor(() => log.warnings().some((l) => l.msg.startsWith('refused a client: its certificate is revoked (serial')), 2000, 'the refusal');
    expect((await httpClient()('GET', `${server.gatewayAddress}/_restpipe/status`)).json<{ identity: { crl: unknown } }>().identity.crl).toMatchObject({
      revoked: 1,
      stale: true,
    });
  });
});

describe('a CRL for some CAs only', () => {
  it("admits the clients of a CA that has no CRL in crl.pem (OpenSSL alone would refuse them all), and still revokes the other CA's", async () => {
    const pki = await testPki();
    const second = await createCa({ commonName: 'RestPipe Second CA', keyBits: 2048 });
    const bundle = pki.ca.certPem + second.certPem;
    const lost = await pki.client('first-ca-lost');
    const crl = await makeCrl(pki.ca, { revoke: [lost.cert] });
    const { server, log } = await startServer({ identity: { ...pki.server, ca: bundle, crl } });
    const other = await createClientIdentity(second, { commonName: 'second-ca-branch', keyBits: 2048 });
    const client = await startClient(server, { name: 'second-ca-branch', identity: { key: other.keyPem, cert: other.certPem, ca: pki.ca.certPem } });
    expect(await answers(client)).toBe(200);
    const peer = await rawTlsPeer(server.pipeAddress.port, lost, { expectFailure: true });
    await peer.waitClosed();
    await waitFor(() => log.warnings().some((l) => l.msg.startsWith('refused a client: its certificate is revoked (serial')), 2000, 'the refusal');
  });
});

describe('session resumption', () => {
  it('a reconnect after a server restart resumes the session (same key, same CAs)', async () => {
    const port = await freePort();
    const env = { RP_SERVER_BIND_PORT: String(port) };
    const first = await startServer({ env });
    const client = await startClient(first.server, { name: 'storm-1', env: FAST_RECONNECT });
    await waitFor(() => first.server.registry.get('storm-1')?.ready === true);
    expect(client.status().tls).toEqual({ minVersion: 'TLSv1.3', resumed: false });
    const down = nextStatus(client, 'disconnected');
    await first.server.close(0);
    await down;
    const reconnected = nextStatus(client, 'connected');
    const second = await startServer({ env });
    expect((await within(reconnected, 10_000, 'the reconnect')).resumed).toBe(true);
    await waitFor(() => second.server.registry.get('storm-1')?.ready === true);
    expect(second.stats.count('connections.resumed')).toBe(1);
    const clients = (await httpClient()('GET', `${second.server.gatewayAddress}/_restpipe/clients`)).json<Array<Record<string, unknown>>>();
    expect(clients.map((c) => [c['name'], c['tlsResumed']])).toEqual([['storm-1', true]]);
    expect(await answers(client)).toBe(200);
  });

  it('a server with another key does not resume the old session (a full handshake instead)', async () => {
    const pki = await testPki();
    const port = await freePort();
    const env = { RP_SERVER_BIND_PORT: String(port) };
    const first = await startServer({ env });
    const client = await startClient(first.server, { name: 'rekeyed', env: FAST_RECONNECT });
    const down = nextStatus(client, 'disconnected');
    await first.server.close(0);
    await down;
    const other = await createServerIdentity(pki.ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyBits: 2048 });
    const reconnected = nextStatus(client, 'connected');
    await startServer({ env, identity: { key: other.keyPem, cert: other.certPem, ca: pki.ca.certPem } });
    expect((await within(reconnected, 10_000, 'the reconnect')).resumed).toBe(false);
  });
});

describe('CA rotation', () => {
  it('trusts old and new CA side by side, then drops the old: its client gets GoAway, the new one stays', async () => {
    const pki = await testPki();
    const oldCa = pki.ca;
    const newCa = await createCa({ commonName: 'RestPipe Next CA', keyBits: 2048 });
    const bothCas = oldCa.certPem + newCa.certPem;
    const newServer = await createServerIdentity(newCa, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], keyBits: 2048 });
    const oldClientId = await createClientIdentity(oldCa, { commonName: 'old-branch', keyBits: 2048 });
    const newClientId = await createClientIdentity(newCa, { commonName: 'new-branch', keyBits: 2048 });
    // Step 1: the server still shows its old-CA certificate and trusts both CAs; clients trust both too.
    const { server, stats } = await startServer({ identity: { ...pki.server, ca: bothCas } });
    const oldClient = await startClient(server, { name: 'old-branch', identity: { key: oldClientId.keyPem, cert: oldClientId.certPem, ca: bothCas } });
    const newClient = await startClient(server, { name: 'new-branch', identity: { key: newClientId.keyPem, cert: newClientId.certPem, ca: bothCas } });
    await waitFor(() => server.registry.size === 2);
    expect(await answers(oldClient)).toBe(200);
    expect(await answers(newClient)).toBe(200);
    const newExchange = server.registry.get('new-branch');
    // Step 2: the server moves to its new-CA certificate and drops the old CA.
    const goaway = once(oldClient.exchange as MessageExchange, 'goaway') as Promise<[string]>;
    const gone = nextStatus(oldClient, 'disconnected');
    expect(server.reloadIdentity({ key: newServer.keyPem, cert: newServer.certPem, ca: newCa.certPem })).toEqual({ ok: true, changed: true, closed: 1 });
    const [reason] = await within(goaway, 1000, 'the GoAway');
    expect(reason).toBe('the server no longer accepts this client: its certificate is not signed by a CA this node trusts');
    await within(gone, 1000, "the old client's pipe to close");
    expect(stats.count('connections.revoked')).toBe(1);
    expect(server.registry.get('new-branch')).toBe(newExchange);
    expect(await answers(newClient)).toBe(200);
    // A new connection from the new CA's client verifies the new server certificate.
    const freshId = await createClientIdentity(newCa, { commonName: 'new-branch-2', keyBits: 2048 });
    const fresh = await startClient(server, { name: 'new-branch-2', identity: { key: freshId.keyPem, cert: freshId.certPem, ca: bothCas } });
    expect(await answers(fresh)).toBe(200);
    expect(server.registry.get('old-branch')).toBeUndefined();
  });
});

describe('reload from the certificate folder', () => {
  it('a corrupt file keeps the old identity: logged, the node alive, pipes untouched, new clients still admitted', async () => {
    const pki = await testPki();
    const dir = await installedIdentity('server', pki.server);
    const { server, log, stats } = await startServer({ certPath: dir });
    const client = await startClient(server, { name: 'steady' });
    const exchange = server.registry.get('steady');
    const serial = server.status()['identity'] as { serial: string };
    const failures: unknown[] = [];
    server.on('identity', (r) => failures.push(r));
    await writeFile(join(dir, 'restpipe.server.crt.pem'), '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
    // The folder watch reloads by itself, fails, and keeps the old identity.
    await waitFor(() => log.lines.some((l) => l.msg === 'could not reload the identity; keeping the current one'), 5000, 'the failed reload');
    const line = log.lines.find((l) => l.msg === 'could not reload the identity; keeping the current one');
    expect(line).toMatchObject({ trigger: 'watch', level: 50 });
    expect(String(line?.['err'])).toMatch(/^RP_SERVER_CERT_PATH=".*": restpipe\.server\.crt\.pem is not a PEM certificate/);
    const again = server.reloadIdentity();
    expect(again.ok).toBe(false);
    expect(stats.count('identity.reload_failed')).toBeGreaterThanOrEqual(2);
    expect(failures.length).toBeGreaterThanOrEqual(2);
    expect(server.status()['identity']).toMatchObject({ serial: serial.serial });
    expect(server.registry.get('steady')).toBe(exchange);
    expect(await answers(client)).toBe(200);
    expect(await answers(await startClient(server, { name: 'newcomer' }))).toBe(200);
    // A key that is not the certificate's, and a CRL of another CA: the same.
    const other = await (await foreignPki()).client('x');
    expect(server.reloadIdentity({ ...pki.server, key: other.key })).toMatchObject({
      ok: false,
      error: { message: expect.stringMatching(/^the key is not the key of the certificate/) },
    });
    const foreignCa = await createCa({ commonName: 'Some Other CA', keyBits: 2048 });
    const foreignCrl = await makeCrl(foreignCa);
    expect(server.reloadIdentity({ ...pki.server, crl: foreignCrl })).toMatchObject({
      ok: false,
      error: { message: 'the CRL of CN=Some Other CA in the CRLs is from no CA in the CA bundle' },
    });
    expect(server.registry.get('steady')).toBe(exchange);
  });

  it('a new crl.pem in the folder reloads by itself and closes the revoked client', async () => {
    const pki = await testPki();
    const dir = await installedIdentity('server', pki.server);
    const { server, log } = await startServer({ certPath: dir });
    const revokedId = await pki.client('watched');
    const client = await startClient(server, { name: 'watched', env: FAST_RECONNECT });
    const other = await startClient(server, { name: 'unlisted' });
    const gone = nextStatus(client, 'disconnected');
    await writeFile(join(dir, 'crl.pem'), await makeCrl(pki.ca, { revoke: [revokedId.cert] }));
    await within(gone, 5000, 'the reload by the folder watch');
    expect(log.lines.find((l) => l.msg === 'reloaded the identity')).toMatchObject({ trigger: 'watch', revoked: 1, closed: 1 });
    expect(await answers(other)).toBe(200);
  });
});

describe('status and expiry', () => {
  it('shows seconds to expiry and each client certificate serial and notAfter', async () => {
    const pki = await testPki();
    const id = await pki.client('inspected');
    const { server } = await startServer();
    await startClient(server, { name: 'inspected' });
    const http = httpClient();
    const status = (await http('GET', `${server.gatewayAddress}/_restpipe/status`)).json<{ identity: Record<string, unknown>; tls: unknown }>();
    const serverCert = new X509Certificate(pki.server.cert);
    const caCert = new X509Certificate(pki.ca.certPem);
    expect(status.identity).toMatchObject({
      serial: serverCert.serialNumber,
      notAfter: new Date(serverCert.validTo).toISOString(),
      caNotAfter: new Date(caCert.validTo).toISOString(),
      cas: 1,
      crl: null,
    });
    const expected = (Date.parse(serverCert.validTo) - Date.now()) / 1000;
    expect(Math.abs((status.identity['expiresInS'] as number) - expected)).toBeLessThan(60);
    expect(Math.abs((status.identity['caExpiresInS'] as number) - (Date.parse(caCert.validTo) - Date.now()) / 1000)).toBeLessThan(60);
    expect(status.tls).toEqual({ minVersion: 'TLSv1.3' });
    const clients = (await http('GET', `${server.gatewayAddress}/_restpipe/clients`)).json<Array<Record<string, unknown>>>();
    const seen = await opensslCertInfo(String(id.cert));
    expect(clients.map((c) => [c['name'], c['serial'], c['certNotAfter']])).toEqual([
      ['inspected', seen.serial, new Date(new X509Certificate(id.cert).validTo).toISOString()],
    ]);
  });

  it('warns at start when its certificate expires within RP_CERT_EXPIRY_WARN_DAYS, not when it is further', async () => {
    const pki = await testPki();
    const short = await createServerIdentity(pki.ca, { commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], days: 10, keyBits: 2048 });
    const identity = { key: short.keyPem, cert: short.certPem, ca: pki.ca.certPem };
    const warned = await startServer({ identity });
    const lines = warned.log.warnings().filter((l) => l.msg === "this node's certificate expires within RP_CERT_EXPIRY_WARN_DAYS");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ subject: 'CN=localhost', warnDays: 30 });
    expect(lines[0]?.['expiresInDays']).toBeGreaterThanOrEqual(9);
    expect(lines[0]?.['expiresInDays']).toBeLessThanOrEqual(10);
    const quiet = await startServer({ identity, env: { RP_CERT_EXPIRY_WARN_DAYS: '5' } });
    expect(quiet.log.warnings()).toEqual([]);
  });

  it('warns again once a day, and sends the gauges every hour', async () => {
    const pki = await testPki();
    const short = await createServerIdentity(pki.ca, { commonName: 'localhost', dnsNames: ['localhost'], days: 10, keyBits: 2048 });
    const id = prepareIdentity({ key: short.keyPem, cert: short.certPem, ca: pki.ca.certPem });
    vi.useFakeTimers({ now: Date.now(), toFake: ['setInterval', 'clearInterval', 'Date'] });
    const log = new LogCapture();
    const gauges: Array<[string, number]> = [];
    const monitor = new ExpiryMonitor({
      identity: () => id,
      warnDays: 30,
      log: pino({ level: 'info' }, log),
      stats: { increment() {}, gauge: (name, value) => gauges.push([name, value]), timing() {}, close: async () => {} },
    });
    monitor.start();
    const warnings = () => log.warnings().length;
    expect(warnings()).toBe(1);
    expect(gauges.map(([n]) => n)).toEqual(['identity.expires_in_s', 'identity.ca_expires_in_s']);
    const first = gauges[0]?.[1] as number;
    vi.advanceTimersByTime(3600_000);
    expect(warnings()).toBe(1);
    expect(gauges).toHaveLength(4);
    expect(first - (gauges[2]?.[1] as number)).toBe(3600);
    vi.advanceTimersByTime(23 * 3600_000);
    expect(warnings()).toBe(2);
    monitor.close();
    vi.advanceTimersByTime(3 * DAY_MS);
    expect(warnings()).toBe(2);
  });
});

describe('the client side', () => {
  it('drops its pipe when a reload no longer trusts the server, and refuses a server its CRL revokes', async () => {
    const pki = await testPki();
    const { server } = await startServer();
    const client = await startClient(server, { name: 'careful', env: FAST_RECONNECT });
    const id = await pki.client('careful');
    const gone = nextStatus(client, 'disconnected');
    const serverGone = new Promise<void>((resolve) => server.on('connection', (e) => e.type === 'disconnected' && resolve()));
    const crl = await makeCrl(pki.ca, { revoke: [pki.server.cert] });
    expect(client.reloadIdentity({ ...id, crl })).toEqual({ ok: true, changed: true, closed: 1 });
    await within(gone, 1000, "the client's pipe to close");
    await within(serverGone, 1000, 'the server to see it go');
    const failure = await within(nextStatus(client, 'connect_failed'), 5000, 'the next attempt');
    expect(failure.error.message).toMatch(/^refused the server: its certificate is revoked \(serial [0-9A-F]+, CRL of CN=RestPipe Test CA\)$/);
    expect(client.status()['counters']).toMatchObject({ 'connect.revoked': 1 });
    // Back to a CRL that does not list it: the pipe comes back.
    const up = nextStatus(client, 'connected');
    expect(client.reloadIdentity({ ...id, crl: await makeCrl(pki.ca) })).toMatchObject({ ok: true, closed: 0 });
    await within(up, 5000, 'the pipe to come back');
  });
});
