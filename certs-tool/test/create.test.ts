/**
 * Identities created by the library, checked with the real openssl.
 */
import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { CertsToolError, createCa, createClientIdentity, createServerIdentity, describeCertificate } from '@restpipe/certs-tool';
import type { Identity } from '@restpipe/certs-tool';
import { CLIENT_NAME, SERVER_NAME, SLOW, getFixtures, openssl, useTempDirs, writePems } from './helpers.js';
import type { Fixtures } from './helpers.js';

const tempDir = useTempDirs('all');
let f: Fixtures;
let paths: Record<string, string>;

beforeAll(async () => {
  f = await getFixtures();
  paths = writePems(tempDir(), {
    'ca.crt.pem': f.ca.certPem,
    'server.crt.pem': f.server.certPem,
    'server.key.pem': f.server.keyPem,
    'client.crt.pem': f.client.certPem,
    'other-client.crt.pem': f.otherClient.certPem,
  });
}, SLOW);

function x509Text(path: string): string {
  const r = openssl(['x509', '-in', path, '-noout', '-text']);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

function p(name: string): string {
  const path = paths[name];
  if (!path) throw new Error(`no fixture file ${name}`);
  return path;
}

async function rejection(promise: Promise<unknown>): Promise<CertsToolError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CertsToolError);
  return err as CertsToolError;
}

describe('the CA', () => {
  it('is a self-signed CA with critical basicConstraints and keyUsage', { timeout: SLOW }, () => {
    const text = x509Text(p('ca.crt.pem'));
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toContain('X509v3 Subject Key Identifier');
    expect(text).toContain('Issuer: CN = RestPipe CA');
    expect(text).toContain('Subject: CN = RestPipe CA');
    expect(text).toContain('sha256WithRSAEncryption');
    expect(text).toContain('Public-Key: (2048 bit)');
    const r = openssl(['verify', '-CAfile', p('ca.crt.pem'), p('ca.crt.pem')]);
    expect(r.status, r.stderr).toBe(0);
  });

  it('is valid from 5 minutes ago for 3650 days by default', { timeout: SLOW }, () => {
    const info = describeCertificate(f.ca.certPem);
    const ageMs = Date.now() - info.notBefore.getTime();
    expect(ageMs).toBeGreaterThan(4 * 60_000);
    expect(ageMs).toBeLessThan(10 * 60_000);
    expect(info.notAfter.getTime() - info.notBefore.getTime()).toBe(3650 * 86_400_000);
  });

  it('honours commonName, days, keyBits and validFrom', { timeout: SLOW }, async () => {
    const validFrom = new Date('2030-01-02T03:04:05Z');
    const ca = await createCa({ commonName: 'Acme Pipe CA', days: 10, keyBits: 3072, validFrom });
    const info = describeCertificate(ca.certPem);
    expect(info.subject).toBe('CN=Acme Pipe CA');
    expect(info.publicKey).toBe('RSA 3072 bits');
    expect(info.notBefore.toISOString()).toBe('2030-01-02T03:04:05.000Z');
    expect(info.notAfter.toISOString()).toBe('2030-01-12T03:04:05.000Z');
  });
});

describe('a server identity', () => {
  it('verifies against the CA with openssl, for the sslserver purpose', { timeout: SLOW }, () => {
    const r = openssl(['verify', '-CAfile', p('ca.crt.pem'), '-purpose', 'sslserver', p('server.crt.pem')]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('OK');
  });

  it('is not usable as a TLS client certificate', { timeout: SLOW }, () => {
    const r = openssl(['verify', '-CAfile', p('ca.crt.pem'), '-purpose', 'sslclient', p('server.crt.pem')]);
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toContain('unsuitable certificate purpose');
  });

  it('carries serverAuth, key usages, CA:FALSE, SANs and the CA key id', { timeout: SLOW }, () => {
    const text = x509Text(p('server.crt.pem'));
    expect(text).toMatch(/X509v3 Extended Key Usage:\s+TLS Web Server Authentication\n/);
    expect(text).not.toContain('TLS Web Client Authentication');
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toContain(`DNS:${SERVER_NAME}, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1`);
    expect(text).toContain(`Subject: CN = ${SERVER_NAME}`);
    const caSki = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(x509Text(p('ca.crt.pem')))?.[1];
    expect(caSki).toBeDefined();
    expect(text).toMatch(new RegExp(`Authority Key Identifier:\\s+(keyid:)?${caSki}`));
  });

  it('defaults the SAN to DNS:<commonName>, or IP:<commonName> for an address', { timeout: SLOW }, async () => {
    const byName = await createServerIdentity(f.ca, { commonName: 'only-cn.example' });
    expect(describeCertificate(byName.certPem).sans).toEqual(['DNS:only-cn.example']);
    const byIp = await createServerIdentity(f.ca, { commonName: '10.1.2.3', dnsNames: [], ipAddresses: [] });
    expect(describeCertificate(byIp.certPem).sans).toEqual(['IP:10.1.2.3']);
  });

  it('lasts 825 days by default but never outlives its CA', { timeout: SLOW }, async () => {
    const info = describeCertificate(f.server.certPem);
    expect(info.notAfter.getTime() - info.notBefore.getTime()).toBe(825 * 86_400_000);
    const shortCa = await createCa({ days: 30 });
    const leaf = await createServerIdentity(shortCa, { commonName: 'x.test', days: 400 });
    expect(describeCertificate(leaf.certPem).notAfter).toEqual(describeCertificate(shortCa.certPem).notAfter);
  });

  it('rejects bad names, addresses, sizes and durations', { timeout: SLOW }, async () => {
    const cases: Array<[string, () => Promise<Identity>]> = [
      ['dns', () => createServerIdentity(f.ca, { commonName: 's', dnsNames: ['bad name'] })],
      ['ip', () => createServerIdentity(f.ca, { commonName: 's', ipAddresses: ['300.1.1.1'] })],
      ['cn', () => createServerIdentity(f.ca, { commonName: '' })],
      ['bits', () => createServerIdentity(f.ca, { commonName: 's', keyBits: 1024 })],
      ['days', () => createServerIdentity(f.ca, { commonName: 's', days: 0 })],
      ['client /', () => createClientIdentity(f.ca, { commonName: 'a/b' })],
      ['ca bits', () => createCa({ keyBits: 2047 })],
    ];
    for (const [what, make] of cases) {
      const err = await rejection(make());
      expect(err.code, what).toBe('RP_CERTS_INVALID_ARGUMENT');
    }
  });

  it('refuses a CA key that does not belong to the CA certificate', { timeout: SLOW }, async () => {
    const err = await rejection(createServerIdentity({ keyPem: f.otherCa.keyPem, certPem: f.ca.certPem }, { commonName: 's' }));
    expect(err.code).toBe('RP_CERTS_MISMATCH');
  });

  it('refuses to sign with a certificate that is not a CA', { timeout: SLOW }, async () => {
    const err = await rejection(createClientIdentity(f.server, { commonName: 'c' }));
    expect(err.code).toBe('RP_CERTS_NOT_CA');
  });
});

describe('a client identity', () => {
  it('verifies against the CA with openssl, for the sslclient purpose', { timeout: SLOW }, () => {
    const r = openssl(['verify', '-CAfile', p('ca.crt.pem'), '-purpose', 'sslclient', p('client.crt.pem')]);
    expect(r.status, r.stderr).toBe(0);
  });

  it('is not usable as a TLS server certificate', { timeout: SLOW }, () => {
    const r = openssl(['verify', '-CAfile', p('ca.crt.pem'), '-purpose', 'sslserver', p('client.crt.pem')]);
    expect(r.status).not.toBe(0);
  });

  it('has the client name as CN and clientAuth as its only extended usage', { timeout: SLOW }, () => {
    const text = x509Text(p('client.crt.pem'));
    expect(text).toContain(`Subject: CN = ${CLIENT_NAME}`);
    expect(text).toMatch(/X509v3 Extended Key Usage:\s+TLS Web Client Authentication\n/);
    expect(text).not.toContain('TLS Web Server Authentication');
    expect(text).toMatch(/CA:FALSE/);
    expect(describeCertificate(f.client.certPem).extKeyUsage).toEqual(['clientAuth']);
  });

  it('does not verify against another CA', { timeout: SLOW }, () => {
    const r = openssl(['verify', '-CAfile', p('ca.crt.pem'), p('other-client.crt.pem')]);
    expect(r.status).not.toBe(0);
  });

  it('keeps a non-ASCII client name intact', { timeout: SLOW }, async () => {
    const ca = await createCa({ commonName: 'Zürich CA' });
    const id = await createClientIdentity(ca, { commonName: 'filiale-zürich' });
    expect(describeCertificate(id.certPem).commonName).toBe('filiale-zürich');
    expect(new X509Certificate(id.certPem).checkIssued(new X509Certificate(ca.certPem))).toBe(true);
  });
});

describe('serial numbers and keys', () => {
  it('are random, positive and 128 bits wide', { timeout: SLOW }, () => {
    const serials = [f.ca, f.server, f.client, f.otherCa, f.otherClient].map((id) => describeCertificate(id.certPem).serialHex);
    expect(new Set(serials).size).toBe(serials.length);
    for (const s of serials) {
      expect(s.length).toBeLessThanOrEqual(32);
      expect(s.length).toBeGreaterThanOrEqual(30);
      expect(parseInt(s.slice(0, 2), 16)).toBeLessThan(0x80);
    }
  });

  it('are unencrypted PKCS#8 RSA keys that openssl accepts', { timeout: SLOW }, () => {
    expect(f.server.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const r = openssl(['pkey', '-in', p('server.key.pem'), '-noout', '-check']);
    expect(r.status, r.stderr).toBe(0);
  });
});
