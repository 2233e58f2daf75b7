/**
 * The identities work for what they are for: a real mutual-TLS handshake with node:tls on
 * 127.0.0.1, the server requiring a client certificate from the CA and the client checking
 * the server's name.
 */
import type { AddressInfo } from 'node:net';
import { connect, createServer } from 'node:tls';
import type { Server, TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Identity } from '@restpipe/certs-tool';
import { CLIENT_NAME, SERVER_NAME, SLOW, getFixtures } from './helpers.js';
import type { Fixtures } from './helpers.js';

let f: Fixtures;
const servers = new Set<Server>();
const sockets = new Set<TLSSocket>();

beforeAll(async () => {
  f = await getFixtures();
}, SLOW);

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  await Promise.all([...servers].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  servers.clear();
});

/** A server like RestPipe's: requires a client certificate signed by `ca`, sends back the peer's CN. */
async function startServer(id: Identity, caPem: string): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const server = createServer({ key: id.keyPem, cert: id.certPem, ca: caPem, requestCert: true, rejectUnauthorized: true }, (socket) => {
    accepted++;
    sockets.add(socket);
    const cn = socket.getPeerCertificate().subject?.CN;
    socket.end(`hello ${String(cn)}`);
  });
  servers.add(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, accepted: () => accepted };
}

/** Connect as a RestPipe client would; resolves with what the server said, or the error. */
function dial(port: number, id: Identity, caPem: string, servername: string | undefined): Promise<{ reply?: string; error?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, key: id.keyPem, cert: id.certPem, ca: caPem, servername });
    sockets.add(socket);
    let reply = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (reply += d));
    socket.on('error', (error: NodeJS.ErrnoException) => resolve({ error }));
    socket.on('end', () => resolve(reply ? { reply } : { error: new Error('closed without a reply') }));
  });
}

describe('mutual TLS with the generated identities', () => {
  it('succeeds with the server and client identities of one CA', { timeout: SLOW }, async () => {
    const { port } = await startServer(f.server, f.ca.certPem);
    const result = await dial(port, f.client, f.ca.certPem, SERVER_NAME);
    expect(result.error).toBeUndefined();
    expect(result.reply).toBe(`hello ${CLIENT_NAME}`);
  });

  it('checks the server name against the IP address SAN too', { timeout: SLOW }, async () => {
    const { port } = await startServer(f.server, f.ca.certPem);
    const result = await dial(port, f.client, f.ca.certPem, undefined); // host 127.0.0.1
    expect(result.reply).toBe(`hello ${CLIENT_NAME}`);
  });

  it('fails when the client identity comes from another CA', { timeout: SLOW }, async () => {
    const { port, accepted } = await startServer(f.server, f.ca.certPem);
    const result = await dial(port, f.otherClient, f.ca.certPem, SERVER_NAME);
    expect(result.reply).toBeUndefined();
    expect(result.error).toBeDefined();
    expect(accepted()).toBe(0);
  });

  it('fails when the client does not trust the server CA', { timeout: SLOW }, async () => {
    const { port } = await startServer(f.server, f.ca.certPem);
    const result = await dial(port, f.client, f.otherCa.certPem, SERVER_NAME);
    expect(result.error?.code).toMatch(/SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
  });

  it('fails when the name the client dials is not in the server certificate', { timeout: SLOW }, async () => {
    const { port } = await startServer(f.server, f.ca.certPem);
    const result = await dial(port, f.client, f.ca.certPem, 'elsewhere.test');
    expect(result.error?.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('fails when a client presents a server certificate', { timeout: SLOW }, async () => {
    const { port, accepted } = await startServer(f.server, f.ca.certPem);
    const result = await dial(port, f.server, f.ca.certPem, SERVER_NAME);
    expect(result.reply).toBeUndefined();
    expect(result.error).toBeDefined();
    expect(accepted()).toBe(0);
  });
});
