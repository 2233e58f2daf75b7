/**
 * The CRL works for what it is for: a node:tls server given `crl:` refuses the revoked client
 * and accepts the others. And what node:tls itself does with a bad CRL, which is why a node
 * must check its CRL with verifyCrl at start: it refuses text that is not a CRL, but takes a
 * stale CRL, another CA's CRL or a CA bundle with a CRL missing, and then refuses EVERY client
 * concerned at the handshake; a PEM string with several CRLs counts only the first.
 */
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { connect, createSecureContext, createServer } from 'node:tls';
import type { Server, TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CrlStaleError, WrongCaError, createCa, createClientIdentity, createCrl, createServerIdentity, parseCrls, verifyCrl } from '@restpipe/certs-tool';
import type { Identity } from '@restpipe/certs-tool';
import { SERVER_NAME, SLOW, getFixtures } from './helpers.js';
import type { Fixtures } from './helpers.js';

const DAY = 86_400_000;
let f: Fixtures;
/** A second client of the fixture CA, revoked by `crl`. */
let revokedClient: Identity;
/** The fixture CA's CRL revoking `revokedClient`. */
let crl: string;
let ec: { ca: Identity; server: Identity; client: Identity; revoked: Identity; crl: string };
const servers = new Set<Server>();
const sockets = new Set<TLSSocket>();

beforeAll(async () => {
  f = await getFixtures();
  revokedClient = await createClientIdentity(f.ca, { commonName: 'lost-laptop' });
  const serial = (pem: string) => new X509Certificate(pem).serialNumber;
  crl = await createCrl(f.ca, [{ serialHex: serial(revokedClient.certPem), revokedAt: new Date(), reason: 'keyCompromise' }], { crlNumber: 1 });
  const ecCa = await createCa({ commonName: 'EC CA', keyType: 'ec' });
  const [server, client, revoked] = await Promise.all([
    createServerIdentity(ecCa, { commonName: SERVER_NAME, dnsNames: [SERVER_NAME], keyType: 'ec' }),
    createClientIdentity(ecCa, { commonName: 'ec-branch', keyType: 'ec' }),
    createClientIdentity(ecCa, { commonName: 'ec-lost', keyType: 'ec' }),
  ]);
  ec = {
    ca: ecCa,
    server,
    client,
    revoked,
    crl: await createCrl(ecCa, [{ serialHex: serial(revoked.certPem), revokedAt: new Date(), reason: 'superseded' }], { crlNumber: 1 }),
  };
}, SLOW);

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  await Promise.all([...servers].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  servers.clear();
});

type CrlOption = string | string[];

/**
 * A server like RestPipe's with `crl`. With `strict` (the real setting) it refuses bad client
 * certificates in the handshake; without, it accepts the connection and tells the client why
 * OpenSSL refused its certificate, so a test can see the reason.
 */
async function startServer(opts: { id: Identity; caPem: string; crl: CrlOption; strict: boolean }): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const server = createServer(
    { key: opts.id.keyPem, cert: opts.id.certPem, ca: opts.caPem, crl: opts.crl, requestCert: true, rejectUnauthorized: opts.strict },
    (socket) => {
      sockets.add(socket);
      if (socket.authorized) accepted++;
      socket.end(socket.authorized ? `hello ${String(socket.getPeerCertificate().subject?.CN)}` : `refused: ${String(socket.authorizationError)}`);
    },
  );
  servers.add(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, accepted: () => accepted };
}

function dial(port: number, id: Identity, caPem: string): Promise<{ reply?: string; error?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, key: id.keyPem, cert: id.certPem, ca: caPem, servername: SERVER_NAME });
    sockets.add(socket);
    let reply = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (reply += d));
    socket.on('error', (error: NodeJS.ErrnoException) => resolve({ error }));
    socket.on('end', () => resolve(reply ? { reply } : { error: new Error('closed without a reply') }));
  });
}

describe('a TLS server with the CRL', () => {
  it('refuses the revoked client and accepts another client of the CA', { timeout: SLOW }, async () => {
    const { port, accepted } = await startServer({ id: f.server, caPem: f.ca.certPem, crl, strict: true });
    const good = await dial(port, f.client, f.ca.certPem);
    expect(good.reply).toBe('hello branch-01');
    const bad = await dial(port, revokedClient, f.ca.certPem);
    expect(bad.reply).toBeUndefined();
    expect(bad.error).toBeDefined();
    expect(accepted()).toBe(1);
  });

  it('refuses it because it is revoked (CERT_REVOKED), with RSA and with EC identities', { timeout: SLOW }, async () => {
    const rsa = await startServer({ id: f.server, caPem: f.ca.certPem, crl, strict: false });
    expect((await dial(rsa.port, revokedClient, f.ca.certPem)).reply).toBe('refused: CERT_REVOKED');
    const ecServer = await startServer({ id: ec.server, caPem: ec.ca.certPem, crl: ec.crl, strict: false });
    expect((await dial(ecServer.port, ec.revoked, ec.ca.certPem)).reply).toBe('refused: CERT_REVOKED');
    expect((await dial(ecServer.port, ec.client, ec.ca.certPem)).reply).toBe('hello ec-branch');
  });
});

describe('what node:tls does with a bad CRL (and verifyCrl catches first)', () => {
  it('createSecureContext refuses text that is not a CRL', { timeout: SLOW }, () => {
    expect(() => createSecureContext({ crl: 'not a crl' })).toThrow(/Failed to parse CRL/);
    expect(() => createSecureContext({ crl: f.ca.certPem })).toThrow(/Failed to parse CRL/);
  });

  it('takes a stale CRL, then refuses every client with CRL_HAS_EXPIRED', { timeout: SLOW }, async () => {
    const stale = await createCrl(f.ca, [], { crlNumber: 2, now: new Date(Date.now() - 40 * DAY), nextUpdateDays: 30 });
    expect(() => createSecureContext({ crl: stale })).not.toThrow();
    const { port } = await startServer({ id: f.server, caPem: f.ca.certPem, crl: stale, strict: false });
    expect((await dial(port, f.client, f.ca.certPem)).reply).toBe('refused: CRL_HAS_EXPIRED');
    await expect(verifyCrl(stale, f.ca.certPem)).rejects.toBeInstanceOf(CrlStaleError);
  });

  it("takes another CA's CRL, then refuses every client with UNABLE_TO_GET_CRL", { timeout: SLOW }, async () => {
    const other = await createCrl(f.otherCa, [], { crlNumber: 1 });
    const { port } = await startServer({ id: f.server, caPem: f.ca.certPem, crl: other, strict: false });
    expect((await dial(port, f.client, f.ca.certPem)).reply).toBe('refused: UNABLE_TO_GET_CRL');
    await expect(verifyCrl(other, f.ca.certPem)).rejects.toBeInstanceOf(WrongCaError);
  });

  it('counts only the first CRL of a PEM string, but every CRL of an array (CA rotation)', { timeout: SLOW }, async () => {
    const bundle = f.ca.certPem + ec.ca.certPem;
    const both = crl + ec.crl;
    expect(parseCrls(both)).toHaveLength(2);
    // As one string: the EC CA's CRL is ignored, so its clients are all refused.
    const asString = await startServer({ id: f.server, caPem: bundle, crl: both, strict: false });
    expect((await dial(asString.port, ec.client, bundle)).reply).toBe('refused: UNABLE_TO_GET_CRL');
    expect((await dial(asString.port, f.client, bundle)).reply).toBe('hello branch-01');
    // As an array of PEM blocks (what a node should pass): both CAs' clients are checked.
    const asArray = await startServer({ id: f.server, caPem: bundle, crl: parseCrls(both).map((c) => c.pem), strict: false });
    expect((await dial(asArray.port, ec.client, bundle)).reply).toBe('hello ec-branch');
    expect((await dial(asArray.port, ec.revoked, bundle)).reply).toBe('refused: CERT_REVOKED');
    expect((await dial(asArray.port, revokedClient, bundle)).reply).toBe('refused: CERT_REVOKED');
    expect((await dial(asArray.port, f.client, bundle)).reply).toBe('hello branch-01');
  });
});
