/**
 * `renew` keeps the names, SANs and usages of an identity with a new key, serial and
 * validity (checked with openssl x509 -text); EC P-256 identities (`--key-type ec`) have the
 * same profile and work in a real mutual-TLS handshake.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { connect, createServer } from 'node:tls';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, createClientIdentity, createServerIdentity, renewIdentity } from '@restpipe/certs-tool';
import type { Identity } from '@restpipe/certs-tool';
import { main } from '@restpipe/certs-tool/cli-main';
import { SERVER_NAME, SLOW, captureIo, getFixtures, openssl, snapshot, useTempDirs, writePems } from './helpers.js';
import type { Fixtures } from './helpers.js';

const tempDir = useTempDirs('each');
let f: Fixtures;

beforeAll(async () => {
  f = await getFixtures();
}, SLOW);

/** `openssl x509 -text` without the parts that differ between two issues of one identity. */
function profile(certPath: string): string {
  const text = openssl(['x509', '-in', certPath, '-noout', '-text']).stdout;
  const ext = text.slice(text.indexOf('X509v3 extensions:'), text.indexOf('Signature Algorithm', text.indexOf('X509v3 extensions:')));
  return [/Subject: .*/.exec(text)?.[0], /Issuer: .*/.exec(text)?.[0], ext.replace(/(Key Identifier: *\n)\s*[0-9A-F:]+/g, '$1')].join('\n');
}

function field(certPath: string, flag: string): string {
  return openssl(['x509', '-in', certPath, '-noout', flag]).stdout.trim();
}

describe('restpipe-certs renew', () => {
  it('keeps the name, SANs and usages with a new key, serial and validity; --force to replace', { timeout: SLOW }, async () => {
    const dir = tempDir();
    writePems(dir, { 'ca.key.pem': f.ca.keyPem, 'ca.crt.pem': f.ca.certPem, 'server.key.pem': f.server.keyPem, 'server.crt.pem': f.server.certPem });
    writePems(dir, { 'old.crt.pem': f.server.certPem });
    const io = captureIo(dir, {});
    // Renewing in place would overwrite the old files: refused without --force, nothing written.
    const before = snapshot(dir);
    expect(await main(['renew', '--cert', 'server.crt.pem'], io)).toBe(1);
    expect(io.err()).toMatch(/^restpipe-certs: RP_CERTS_EXISTS: .*server\.key\.pem.*--force/);
    expect(snapshot(dir)).toEqual(before);

    const io2 = captureIo(dir, {});
    expect(await main(['renew', '--cert', 'server.crt.pem', '--days', '90', '--force'], io2), io2.err()).toBe(0);
    expect(io2.out()).toMatch(
      /^renewed server identity "pipe\.test" \(DNS:pipe\.test, DNS:localhost, IP:127\.0\.0\.1, IP:::1\): serial [0-9A-F]+, RSA 2048 bits/,
    );
    expect(io2.out()).toMatch(/revoke --serial [0-9A-F]+ --reason superseded/);

    const renewed = join(dir, 'server.crt.pem');
    const old = join(dir, 'old.crt.pem');
    expect(profile(renewed)).toBe(profile(old));
    expect(profile(renewed)).toContain('TLS Web Server Authentication');
    expect(profile(renewed)).toContain('DNS:pipe.test, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(field(renewed, '-serial')).not.toBe(field(old, '-serial'));
    expect(field(renewed, '-pubkey')).not.toBe(field(old, '-pubkey'));
    const notAfter = new Date(field(renewed, '-enddate').replace('notAfter=', ''));
    expect(Math.round((notAfter.getTime() - Date.now()) / 86_400_000)).toBe(90);
    expect(new X509Certificate(readFileSync(renewed)).checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'server.key.pem'))))).toBe(true);
    expect(openssl(['verify', '-CAfile', join(dir, 'ca.crt.pem'), '-purpose', 'sslserver', renewed]).stdout).toContain('OK');
  });

  it('renews a client into another folder, and under another CA (rotation), keeping the CN', { timeout: SLOW }, async () => {
    const dir = tempDir();
    const newCa = await createCa({ commonName: 'RestPipe CA 2' });
    writePems(dir, { 'ca.key.pem': f.ca.keyPem, 'ca.crt.pem': f.ca.certPem, 'branch-01.crt.pem': f.client.certPem });
    writePems(dir, { 'new-ca.key.pem': newCa.keyPem, 'new-ca.crt.pem': newCa.certPem });
    const io = captureIo(dir, {});
    const code = await main(['renew', '--cert', 'branch-01.crt.pem', '--out', 'next', '--ca-key', 'new-ca.key.pem', '--ca-cert', 'new-ca.crt.pem'], io);
    expect(code, io.err()).toBe(0);
    expect(io.out()).toContain('re-issued by CN=RestPipe CA 2 (the old one was issued by CN=RestPipe CA)');
    const renewed = join(dir, 'next', 'branch-01.crt.pem');
    expect(field(renewed, '-subject')).toBe('subject=CN = branch-01');
    expect(profile(renewed).replace('RestPipe CA 2', 'RestPipe CA')).toBe(profile(join(dir, 'branch-01.crt.pem')));
    expect(openssl(['verify', '-CAfile', join(dir, 'new-ca.crt.pem'), '-purpose', 'sslclient', renewed]).stdout).toContain('OK');
  });

  it('keeps the key type, or switches it with keyType', { timeout: SLOW }, async () => {
    const ecServer = await createServerIdentity(f.ca, { commonName: 'ec.test', keyType: 'ec' });
    const kept = await renewIdentity(f.ca, ecServer.certPem);
    expect(kept.keyType).toBe('ec');
    expect(new X509Certificate(kept.certPem).publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const switched = await renewIdentity(f.ca, f.client.certPem, { keyType: 'ec' });
    expect(switched).toMatchObject({ role: 'client', commonName: 'branch-01', keyType: 'ec' });
    await expect(renewIdentity(f.ca, f.ca.certPem)).rejects.toThrow(/is a CA certificate/);
  });
});

describe('EC P-256 identities (--key-type ec)', () => {
  it('create-ca/server/client write P-256 keys with the RSA profile, ECDSA-signed, keyEncipherment dropped', { timeout: SLOW }, async () => {
    const dir = tempDir();
    const run = async (argv: string[]) => {
      const io = captureIo(dir, {});
      const code = await main(argv, io);
      expect(code, io.err()).toBe(0);
    };
    await run(['create-ca', '--key-type', 'ec', '--out', 'ec']);
    await run(['create-server', '--key-type', 'ec', '--out', 'ec', '--name', SERVER_NAME, '--dns', SERVER_NAME, '--ip', '127.0.0.1']);
    await run(['create-client', '--key-type', 'ec', '--out', 'ec', '--name', 'branch-01']);
    await run(['create-server', '--out', 'rsa', '--ca-dir', 'ec', '--name', SERVER_NAME, '--dns', SERVER_NAME, '--ip', '127.0.0.1']);
    const ec = (name: string) => join(dir, 'ec', name);
    for (const name of ['ca.crt.pem', 'server.crt.pem', 'branch-01.crt.pem']) {
      const text = openssl(['x509', '-in', ec(name), '-noout', '-text']).stdout;
      expect(text, name).toContain('NIST CURVE: P-256');
      expect(text, name).toContain('Signature Algorithm: ecdsa-with-SHA256');
    }
    expect(openssl(['verify', '-CAfile', ec('ca.crt.pem'), '-purpose', 'sslserver', ec('server.crt.pem')]).stdout).toContain('OK');
    expect(openssl(['verify', '-CAfile', ec('ca.crt.pem'), '-purpose', 'sslclient', ec('branch-01.crt.pem')]).stdout).toContain('OK');
    // Same extensions as an RSA server certificate of the same CA, less keyEncipherment (RSA key transport only).
    const rsaProfile = profile(join(dir, 'rsa', 'server.crt.pem'));
    expect(profile(ec('server.crt.pem'))).toBe(rsaProfile.replace('Digital Signature, Key Encipherment', 'Digital Signature'));
    expect(openssl(['x509', '-in', ec('ca.crt.pem'), '-noout', '-text']).stdout).toMatch(/CA:TRUE, pathlen:0[\s\S]*Certificate Sign, CRL Sign/);
  });

  it('complete a mutual-TLS handshake', { timeout: SLOW }, async () => {
    const ca = await createCa({ keyType: 'ec' });
    const [server, client] = await Promise.all([
      createServerIdentity(ca, { commonName: SERVER_NAME, ipAddresses: ['127.0.0.1'], keyType: 'ec' }),
      createClientIdentity(ca, { commonName: 'branch-ec', keyType: 'ec' }),
    ]);
    const reply = await handshake(server, client, ca.certPem);
    expect(reply).toBe('hello branch-ec');
  });
});

async function handshake(server: Identity, client: Identity, caPem: string): Promise<string> {
  const srv = createServer({ key: server.keyPem, cert: server.certPem, ca: caPem, requestCert: true, rejectUnauthorized: true }, (s) =>
    s.end(`hello ${String(s.getPeerCertificate().subject?.CN)}`),
  );
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  try {
    return await new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, key: client.keyPem, cert: client.certPem, ca: caPem });
      let data = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (data += d));
      socket.on('error', reject);
      socket.on('end', () => {
        socket.destroy();
        resolve(data);
      });
    });
  } finally {
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
}
