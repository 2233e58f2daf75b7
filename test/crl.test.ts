/**
 * The CRL reader and the trust store against real openssl: the revoked
 * serials and next update are what `openssl crl -text` prints, the
 * signature is checked over the exact signed bytes, a CRL that is not
 * its CA's is refused, and `TrustStore.check()` decides as OpenSSL would
 * (revoked, expired, not yet valid, foreign CA, through an intermediate).
 */
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createCa, createClientIdentity, createCrl } from '@restpipe/certs-tool';
import { CrlError, TrustError, TrustStore, crlPemBlocks, crlSignedBy, parseCrl, serialKey } from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { makeCrl, openssl } from './helpers/crl.js';
import { foreignPki, testPki } from './helpers/identities.js';
import { tempDir } from './helpers/node-process.js';
import { closeAll } from './helpers/pipe.js';

afterEach(closeAll);

const DAY_MS = 24 * 3600_000;

function onlyCrl(pem: string): Buffer {
  const [der] = crlPemBlocks(pem);
  if (!der) throw new Error('no CRL in the PEM');
  return der;
}

describe('the CRL reader', () => {
  it('reads the revoked serials, thisUpdate and nextUpdate exactly as openssl prints them', async () => {
    const pki = await testPki();
    const a = await pki.client('crl-a');
    const b = await pki.client('crl-b');
    const last = new Date(Math.floor(Date.now() / 1000) * 1000 - 3600_000);
    const next = new Date(last.getTime() + 3 * DAY_MS);
    const pem = await makeCrl(pki.ca, { revoke: [a.cert, b.cert], lastUpdate: last, nextUpdate: next });
    const crl = parseCrl(onlyCrl(pem));
    const text = await openssl(['crl', '-noout', '-text'], pem);
    const printed = [...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => serialKey(m[1] as string));
    expect(printed).toHaveLength(2);
    expect([...crl.revoked].sort()).toEqual(printed.sort());
    expect([...crl.revoked].sort()).toEqual([a.cert, b.cert].map((c) => serialKey(new X509Certificate(c).serialNumber)).sort());
    expect(crl.thisUpdate.toISOString()).toBe(last.toISOString());
    expect(crl.nextUpdate?.toISOString()).toBe(next.toISOString());
    expect(crl.signatureAlgorithm).toBe('1.2.840.113549.1.1.11');
  });

  it('verifies the signature over the signed bytes: the CA yes, another CA no, one flipped bit no', async () => {
    const pki = await testPki();
    const pem = await makeCrl(pki.ca, { revoke: [(await pki.client('crl-sig')).cert] });
    const der = onlyCrl(pem);
    const caKey = new X509Certificate(pki.ca.certPem).publicKey;
    // Same name as the test CA, another key.
    const other = await createCa({ commonName: 'RestPipe Test CA', keyBits: 2048 });
    expect(crlSignedBy(parseCrl(der), caKey)).toBe(true);
    expect(crlSignedBy(parseCrl(der), new X509Certificate(other.certPem).publicKey)).toBe(false);
    const crl = parseCrl(der);
    // Flip one bit inside the revoked serial: the CRL still parses, the signature no longer holds.
    const tampered = Buffer.from(der);
    const at = tampered.indexOf(crl.tbs) + crl.tbs.length - 40;
    tampered[at] = (tampered[at] as number) ^ 0x01;
    expect(crlSignedBy(parseCrl(tampered), caKey)).toBe(false);
    // openssl agrees on both.
    const dir = await tempDir();
    await writeFile(join(dir, 'ca.crt'), pki.ca.certPem);
    await writeFile(join(dir, 'crl.pem'), pem);
    await expect(openssl(['crl', '-in', join(dir, 'crl.pem'), '-CAfile', join(dir, 'ca.crt'), '-noout'])).resolves.toBe('');
  });

  it('refuses what is not a CRL, and a delta CRL', async () => {
    expect(() => parseCrl(Buffer.from('not der at all'))).toThrow(CrlError);
    expect(() => parseCrl(Buffer.from([0x30, 0x82, 0xff, 0xff, 0x00]))).toThrow(/truncated/);
    const pki = await testPki();
    const dir = await tempDir();
    const file = (n: string) => join(dir, n);
    await writeFile(file('ca.key'), pki.ca.keyPem);
    await writeFile(file('ca.crt'), pki.ca.certPem);
    await writeFile(file('index.txt'), '');
    await writeFile(file('crlnumber'), '1001\n');
    await writeFile(
      file('ca.cnf'),
      `[ca]\ndefault_ca=c\n[c]\ndatabase=${file('index.txt')}\ncrlnumber=${file('crlnumber')}\ncertificate=${file('ca.crt')}\nprivate_key=${file('ca.key')}\ndefault_md=sha256\ndefault_crl_days=1\ncrl_extensions=delta\n[delta]\n2.5.29.27=critical,DER:02:02:03:E8\n`,
    );
    await openssl(['ca', '-config', file('ca.cnf'), '-gencrl', '-out', file('delta.pem')]);
    const delta = onlyCrl(await readFile(file('delta.pem'), 'utf8'));
    expect(() => parseCrl(delta)).toThrow(/delta CRL/);
  });
});

describe('CRLs made by restpipe-certs', () => {
  it.each(['rsa', 'ec'] as const)('are read and verified by the nodes (%s CA): serials, nextUpdate, revocation', async (keyType) => {
    const ca = await createCa({ commonName: `Tool ${keyType} CA`, keyType });
    const revoked = await createClientIdentity(ca, { commonName: 'tool-revoked', keyType });
    const kept = await createClientIdentity(ca, { commonName: 'tool-kept', keyType });
    const serial = new X509Certificate(revoked.certPem).serialNumber;
    const now = new Date();
    const pem = await createCrl(ca, [{ serialHex: serial, revokedAt: now, reason: 'keyCompromise' }], { crlNumber: 3, now, nextUpdateDays: 10 });
    const crl = parseCrl(onlyCrl(pem));
    expect([...crl.revoked]).toEqual([serialKey(serial)]);
    expect(Math.round(((crl.nextUpdate?.getTime() ?? 0) - now.getTime()) / DAY_MS)).toBe(10);
    expect(crlSignedBy(crl, new X509Certificate(ca.certPem).publicKey)).toBe(true);
    const store = TrustStore.from(ca.certPem, pem);
    expect(store.check(new X509Certificate(revoked.certPem))?.code).toBe('CERT_REVOKED');
    expect(store.check(new X509Certificate(kept.certPem))).toBeUndefined();
  });
});

describe('the trust store', () => {
  it('takes CRLs of its CAs only: another CA, or a CA of the same name with another key, is an error', async () => {
    const pki = await testPki();
    const foreign = await createCa({ commonName: 'Some Other CA', keyBits: 2048 });
    const twin = await createCa({ commonName: 'RestPipe Test CA', keyBits: 2048 });
    expect(() => TrustStore.from(pki.ca.certPem, undefined)).not.toThrow();
    const ownCrl = await makeCrl(pki.ca);
    expect(() => TrustStore.from(pki.ca.certPem, ownCrl)).not.toThrow();
    const foreignCrl = await makeCrl(foreign);
    const twinCrl = await makeCrl(twin);
    const names = { ca: 'ca.crt.pem', crl: 'crl.pem' };
    expect(() => TrustStore.from(pki.ca.certPem, foreignCrl, names)).toThrow(
      new TrustError('the CRL of CN=Some Other CA in crl.pem is from no CA in ca.crt.pem'),
    );
    expect(() => TrustStore.from(pki.ca.certPem, twinCrl, names)).toThrow(
      new TrustError('the CRL of CN=RestPipe Test CA in crl.pem is not signed by the CA of that name in ca.crt.pem'),
    );
    // With both same-named CAs in the bundle, each CRL lands on the CA whose key signed it.
    const revokingCrl = await makeCrl(pki.ca, { revoke: [(await pki.client('crl-twin')).cert] });
    const both = TrustStore.from(pki.ca.certPem + twin.certPem, twinCrl + revokingCrl);
    expect(both.cas.map((c) => c.revoked.size)).toEqual([1, 0]);
    expect(() => TrustStore.from(pki.ca.certPem, 'no pem here')).toThrow(
      'the CRL file is not a PEM certificate revocation list (no -----BEGIN X509 CRL----- block)',
    );
    expect(() => TrustStore.from('nothing', undefined)).toThrow(/holds no PEM certificate/);
  });

  it('decides like OpenSSL: trusted, revoked, expired, not yet valid, foreign', async () => {
    const pki = await testPki();
    const ok = await pki.client('trust-ok');
    const revoked = await pki.client('trust-revoked');
    const expired = await createClientIdentity(pki.ca, { commonName: 'trust-expired', validFrom: new Date(Date.now() - 10 * DAY_MS), days: 1, keyBits: 2048 });
    const future = await createClientIdentity(pki.ca, { commonName: 'trust-future', validFrom: new Date(Date.now() + 2 * DAY_MS), days: 3, keyBits: 2048 });
    const intruder = await (await foreignPki()).client('intruder');
    const store = TrustStore.from(pki.ca.certPem, await makeCrl(pki.ca, { revoke: [revoked.cert] }));
    const check = (pem: string | Buffer, opts = {}) => store.check(new X509Certificate(pem), opts)?.code;
    expect(check(ok.cert)).toBeUndefined();
    expect(check(revoked.cert)).toBe('CERT_REVOKED');
    expect(store.check(new X509Certificate(revoked.cert))?.message).toMatch(/^its certificate is revoked \(serial [0-9A-F]+, CRL of CN=RestPipe Test CA\)$/);
    expect(check(expired.certPem)).toBe('CERT_HAS_EXPIRED');
    expect(check(expired.certPem, { checkTime: false })).toBeUndefined();
    expect(check(future.certPem)).toBe('CERT_NOT_YET_VALID');
    expect(check(intruder.cert)).toBe('CERT_UNTRUSTED');
    // The same verdicts from openssl verify with the CRL.
    const dir = await tempDir();
    await writeFile(join(dir, 'ca.crt'), pki.ca.certPem);
    await writeFile(join(dir, 'crl.pem'), await makeCrl(pki.ca, { revoke: [revoked.cert] }));
    const verify = async (pem: string | Buffer) => {
      await writeFile(join(dir, 'leaf.crt'), pem);
      return openssl(['verify', '-crl_check', '-CAfile', join(dir, 'ca.crt'), '-CRLfile', join(dir, 'crl.pem'), join(dir, 'leaf.crt')]).then(
        () => 'ok',
        (err: Error) => (/certificate revoked/.test(err.message) ? 'revoked' : 'other'),
      );
    };
    expect(await verify(ok.cert)).toBe('ok');
    expect(await verify(revoked.cert)).toBe('revoked');
  });

  it('follows a chain through an intermediate CA, and finds a revoked intermediate', async () => {
    const dir = await tempDir();
    const f = (n: string) => join(dir, n);
    await openssl([
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      f('root.key'),
      '-out',
      f('root.crt'),
      '-days',
      '5',
      '-subj',
      '/CN=Root',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    await openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('inter.key'), '-out', f('inter.csr'), '-subj', '/CN=Inter']);
    await writeFile(f('inter.ext'), 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
    await openssl([
      'x509',
      '-req',
      '-in',
      f('inter.csr'),
      '-CA',
      f('root.crt'),
      '-CAkey',
      f('root.key'),
      '-set_serial',
      '77',
      '-days',
      '4',
      '-extfile',
      f('inter.ext'),
      '-out',
      f('inter.crt'),
    ]);
    await openssl(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('leaf.key'), '-out', f('leaf.csr'), '-subj', '/CN=leaf']);
    await writeFile(f('leaf.ext'), 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');
    await openssl([
      'x509',
      '-req',
      '-in',
      f('leaf.csr'),
      '-CA',
      f('inter.crt'),
      '-CAkey',
      f('inter.key'),
      '-set_serial',
      '99',
      '-days',
      '3',
      '-extfile',
      f('leaf.ext'),
      '-out',
      f('leaf.crt'),
    ]);
    const read = async (n: string) => String(await readFile(f(n)));
    const root = { keyPem: await read('root.key'), certPem: await read('root.crt') };
    const leaf = new X509Certificate(await read('leaf.crt'));
    const inter = new X509Certificate(await read('inter.crt'));
    const store = TrustStore.from(root.certPem, await makeCrl(root));
    expect(store.check(leaf)?.code).toBe('CERT_UNTRUSTED');
    expect(store.check(leaf, { intermediates: [inter] })).toBeUndefined();
    const revoking = TrustStore.from(root.certPem, await makeCrl(root, { revoke: [await read('inter.crt')] }));
    expect(revoking.check(leaf, { intermediates: [inter] })).toEqual({
      code: 'CERT_REVOKED',
      message: 'its issuing CA (CN=Inter) is revoked (serial 4D, CRL of CN=Root)',
    });
  });
});
