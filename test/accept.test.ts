/**
 * The server's accept checks read the peer certificate leanly
 * (`getPeerX509Certificate()`: subject CN and extended key usages) and must
 * decide exactly as the full `getPeerCertificate()` object would: the name
 * is the CN as the certificate holds it (the first of several), and a
 * certificate without a CN or without clientAuth is refused, counted and
 * logged once. Certificates are made by our certs-tool, or by real openssl
 * for shapes the certs-tool never makes.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createClientIdentity } from '@restpipe/certs-tool';
import { CLIENT_AUTH_OID, SERVER_AUTH_OID, allowsUsage, certificateName } from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { testPki } from './helpers/identities.js';
import { tempDir } from './helpers/node-process.js';
import { closeAll, httpClient, startClient, waitFor } from './helpers/pipe.js';
import { rawTlsPeer, startLoggedServer } from './helpers/raw-peer.js';

afterEach(closeAll);

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * A key and a certificate for `subject` (openssl `-subj` syntax, `+` joins a
 * multi-valued name), signed by the test CA, with `extensions` (openssl
 * config lines; basicConstraints alone when none are given).
 */
async function opensslIdentity(subject: string, extensions: string[]): Promise<{ key: string; cert: string; ca: string }> {
  const pki = await testPki();
  const dir = await tempDir('restpipe-openssl-');
  const file = (name: string) => join(dir, name);
  writeFileSync(file('ca.key'), pki.ca.keyPem);
  writeFileSync(file('ca.crt'), pki.ca.certPem);
  writeFileSync(file('ext.cnf'), `[leaf]\nbasicConstraints=CA:FALSE\n${extensions.join('\n')}\n`);
  openssl([
    'req',
    '-new',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    file('leaf.key'),
    '-out',
    file('leaf.csr'),
    '-utf8',
    '-multivalue-rdn',
    '-subj',
    subject,
  ]);
  openssl([
    'x509',
    '-req',
    '-in',
    file('leaf.csr'),
    '-CA',
    file('ca.crt'),
    '-CAkey',
    file('ca.key'),
    '-set_serial',
    '7',
    '-days',
    '2',
    '-extfile',
    file('ext.cnf'),
    '-extensions',
    'leaf',
    '-out',
    file('leaf.crt'),
  ]);
  return { key: readFileSync(file('leaf.key'), 'utf8'), cert: readFileSync(file('leaf.crt'), 'utf8'), ca: pki.ca.certPem };
}

/** A self-signed certificate for `subject` with `extensions` (for reading only). */
async function selfSigned(dir: string, subject: string, extensions: string[]): Promise<X509Certificate> {
  const out = join(dir, 'self.crt');
  const ext = extensions.flatMap((e) => ['-addext', e]);
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    join(dir, 'self.key'),
    '-out',
    out,
    '-days',
    '1',
    '-utf8',
    '-multivalue-rdn',
    '-subj',
    subject,
    ...ext,
  ]);
  return new X509Certificate(readFileSync(out));
}

describe('the lean certificate read', () => {
  it('names and usages agree with the getPeerCertificate() object for every subject shape', async () => {
    const dir = await tempDir();
    const shapes: Array<[subject: string, extensions: string[]]> = [
      ['/CN=branch-01', ['extendedKeyUsage=clientAuth']],
      ['/O=org/CN=a\\,b\\+c;d "q" <x> =eq \\\\back', ['extendedKeyUsage=serverAuth']],
      ['/CN=\\#hash and trailing ', ['extendedKeyUsage=clientAuth,serverAuth']],
      ['/CN= leading space', []],
      ['/CN=ünïcødé ☃ 😀', ['extendedKeyUsage=clientAuth']],
      ['/CN=new\nline\ttab\u0001ctl\u007fdel', []],
      ['/O=org+CN=multi/OU=unit/CN=second', ['extendedKeyUsage=codeSigning']],
      // DER sorts a multi-valued name's parts, shortest first: here the CN comes before ` + `.
      ['/O=a long organisation name+CN=ab/CN=second', []],
      ['/O=a long organisation name+CN=trailing\\ /CN=second', []],
      ['/OU=x+O=y\nCN=fake/CN=real', []],
      ['/O=no common name', ['extendedKeyUsage=clientAuth']],
      ['/CN=first/CN=second/CN=third', []],
    ];
    for (const [subject, extensions] of shapes) {
      const x509 = await selfSigned(dir, subject, extensions);
      const legacy = x509.toLegacyObject();
      expect(certificateName(x509), subject).toBe(certificateName(legacy));
      for (const oid of [CLIENT_AUTH_OID, SERVER_AUTH_OID]) expect(allowsUsage(x509, oid), `${subject} ${oid}`).toBe(allowsUsage(legacy, oid));
    }
    // The reads are not vacuous: the shapes above give these names.
    expect(certificateName(await selfSigned(dir, '/O=org+CN=multi/OU=unit/CN=second', []))).toBe('multi');
    expect(certificateName(await selfSigned(dir, '/O=a long organisation name+CN=ab', []))).toBe('ab');
    expect(certificateName(await selfSigned(dir, '/O=org/CN=a\\,b\\+c', []))).toBe('a,b+c');
    expect(certificateName(await selfSigned(dir, '/O=no common name', []))).toBeUndefined();
    expect(allowsUsage(await selfSigned(dir, '/CN=s', ['extendedKeyUsage=serverAuth']), CLIENT_AUTH_OID)).toBe(false);
  });
});

describe('the server accept checks', () => {
  it('knows a client by its CN exactly as the certificate holds it', async () => {
    const { server } = await startLoggedServer();
    const pki = await testPki();
    const name = 'branch,01+x "q" <y> \\ ünï #';
    const id = await createClientIdentity(pki.ca, { commonName: name, keyBits: 2048 });
    await startClient(server, { identity: { key: id.keyPem, cert: id.certPem, ca: pki.ca.certPem } });
    await waitFor(() => server.registry.get(name)?.ready === true, 5000, 'the client under its CN');
    const list = await httpClient()('GET', `${server.gatewayAddress}/_restpipe/clients`);
    expect(list.json<Array<{ name: string }>>().map((c) => c.name)).toEqual([name]);
  });

  it('takes the first CN of a subject with several, one of them in a multi-valued name', async () => {
    const { server } = await startLoggedServer();
    const identity = await opensslIdentity('/O=org+CN=branch-07/OU=unit/CN=second', ['extendedKeyUsage=clientAuth']);
    await startClient(server, { identity });
    await waitFor(() => server.registry.get('branch-07')?.ready === true, 5000, 'the client under its first CN');
    expect(server.registry.size).toBe(1);
  });

  it('accepts a certificate without extended key usage (it restricts none)', async () => {
    const { server, stats } = await startLoggedServer();
    const identity = await opensslIdentity('/CN=no-eku', []);
    await startClient(server, { identity });
    await waitFor(() => server.registry.get('no-eku')?.ready === true, 5000, 'the client');
    expect(stats.count('connections.refused')).toBe(0);
  });

  it('refuses a certificate without CN: counted, one warning, never registered', async () => {
    const { server, log, stats } = await startLoggedServer();
    const identity = await opensslIdentity('/O=RestPipe/OU=no common name', ['extendedKeyUsage=clientAuth']);
    const peer = await rawTlsPeer(server.pipeAddress.port, identity);
    await peer.waitClosed();
    await waitFor(() => log.warnings().length > 0, 2000, 'the warning');
    expect(log.warnings().map((l) => [l.msg, l['name']])).toEqual([['refused a client: its certificate has no common name', undefined]]);
    expect(log.warnings()[0]?.['address']).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(stats.count('connections.refused')).toBe(1);
    expect(stats.count('connections.added')).toBe(0);
    expect(peer.frames).toHaveLength(0);
    expect(server.registry.size).toBe(0);
  });
});
