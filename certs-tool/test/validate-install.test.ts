/**
 * validateIdentity, installIdentity and writeIdentity through the library API.
 */
import { createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CertsToolError,
  DEFAULT_IDENTITY_DIR,
  IDENTITY_FILES,
  createClientIdentity,
  createServerIdentity,
  describeCertificate,
  installIdentity,
  resolveIdentityDir,
  validateIdentity,
  writeIdentity,
} from '@restpipe/certs-tool';
import type { Identity, IdentityFiles, Role } from '@restpipe/certs-tool';
import { SLOW, getFixtures, modeOf, openssl, snapshot, useTempDirs } from './helpers.js';
import type { Fixtures } from './helpers.js';

const tempDir = useTempDirs('each');
let f: Fixtures;
let expired: Identity;
let notYetValid: Identity;

beforeAll(async () => {
  f = await getFixtures();
  const day = 86_400_000;
  [expired, notYetValid] = await Promise.all([
    createClientIdentity(f.ca, { commonName: 'old', validFrom: new Date(Date.now() - 10 * day), days: 1 }),
    createServerIdentity(f.ca, { commonName: 'future.test', validFrom: new Date(Date.now() + 2 * day) }),
  ]);
}, SLOW);

function files(id: Identity, ca: Identity = f.ca): IdentityFiles {
  return { keyPem: id.keyPem, certPem: id.certPem, caPem: ca.certPem };
}

function validationError(role: Role, input: IdentityFiles, now?: Date): CertsToolError {
  try {
    validateIdentity(role, input, now);
  } catch (err) {
    expect(err).toBeInstanceOf(CertsToolError);
    return err as CertsToolError;
  }
  throw new Error('validateIdentity accepted a bad identity');
}

describe('validateIdentity', () => {
  it('accepts the server and client identities of the CA', { timeout: SLOW }, () => {
    expect(() => validateIdentity('server', files(f.server))).not.toThrow();
    expect(() => validateIdentity('client', files(f.client))).not.toThrow();
  });

  it('reports a key that does not match the certificate', { timeout: SLOW }, () => {
    const err = validationError('server', { ...files(f.server), keyPem: f.client.keyPem });
    expect(err.code).toBe('RP_CERTS_MISMATCH');
    expect(err.message).toContain('does not match');
  });

  it('reports a certificate from another CA', { timeout: SLOW }, () => {
    const err = validationError('client', files(f.otherClient));
    expect(err.code).toBe('RP_CERTS_WRONG_CA');
    expect(err.message).toContain('Other CA');
  });

  it('reports expired and not-yet-valid certificates', { timeout: SLOW }, () => {
    expect(validationError('client', files(expired)).code).toBe('RP_CERTS_EXPIRED');
    expect(validationError('server', files(notYetValid)).code).toBe('RP_CERTS_NOT_YET_VALID');
    const later = new Date(Date.now() + 1000 * 86_400_000);
    expect(validationError('client', files(f.client), later).code).toBe('RP_CERTS_EXPIRED');
  });

  it('reports the wrong extended key usage for the role', { timeout: SLOW }, () => {
    const asClient = validationError('client', files(f.server));
    expect(asClient.code).toBe('RP_CERTS_WRONG_USAGE');
    expect(asClient.message).toContain('clientAuth');
    expect(validationError('server', files(f.client)).code).toBe('RP_CERTS_WRONG_USAGE');
  });

  it('reports non-PEM input, swapped files and encrypted keys', { timeout: SLOW }, () => {
    expect(validationError('server', { ...files(f.server), keyPem: 'not a key' }).code).toBe('RP_CERTS_NOT_PEM');
    expect(validationError('server', { ...files(f.server), certPem: f.server.keyPem }).code).toBe('RP_CERTS_NOT_PEM');
    expect(validationError('server', { ...files(f.server), keyPem: f.server.certPem }).message).toContain('found CERTIFICATE');
    const broken = f.server.certPem.replace(/\n[A-Za-z0-9+/]{20}/, '\n!!!!');
    expect(validationError('server', { ...files(f.server), certPem: broken }).code).toBe('RP_CERTS_NOT_PEM');
    const encrypted = createPrivateKey(f.server.keyPem).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }).toString();
    expect(validationError('server', { ...files(f.server), keyPem: encrypted }).code).toBe('RP_CERTS_ENCRYPTED_KEY');
  });

  it('reports a CA file that is not a CA', { timeout: SLOW }, () => {
    expect(validationError('client', { ...files(f.client), caPem: f.server.certPem }).code).toBe('RP_CERTS_NOT_CA');
  });

  it('accepts a CA bundle that contains the CA', { timeout: SLOW }, () => {
    expect(() => validateIdentity('client', { ...files(f.client), caPem: f.otherCa.certPem + f.ca.certPem })).not.toThrow();
  });
});

describe('identities from another tool (openssl, EC keys, an intermediate CA)', () => {
  const cnf = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[inter]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:corp.test
authorityKeyIdentifier = keyid
`;

  function run(args: string[]): void {
    const r = openssl(args);
    expect(r.status, r.stderr).toBe(0);
  }

  function corporateChain(dir: string): { root: string; inter: string; leaf: string; leafKey: string } {
    const c = join(dir, 'openssl.cnf');
    writeFileSync(c, cnf);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    const at = (n: string) => join(dir, n);
    run([
      'req',
      '-x509',
      '-config',
      c,
      '-extensions',
      'root',
      ...ec,
      '-keyout',
      at('root.key'),
      '-out',
      at('root.crt'),
      '-subj',
      '/CN=Corp Root',
      '-days',
      '30',
    ]);
    run(['req', '-new', '-config', c, ...ec, '-keyout', at('inter.key'), '-out', at('inter.csr'), '-subj', '/CN=Corp Intermediate']);
    run([
      'x509',
      '-req',
      '-in',
      at('inter.csr'),
      '-CA',
      at('root.crt'),
      '-CAkey',
      at('root.key'),
      '-set_serial',
      '2',
      '-days',
      '30',
      '-extfile',
      c,
      '-extensions',
      'inter',
      '-out',
      at('inter.crt'),
    ]);
    run(['req', '-new', '-config', c, ...ec, '-keyout', at('leaf.key'), '-out', at('leaf.csr'), '-subj', '/CN=corp.test']);
    run([
      'x509',
      '-req',
      '-in',
      at('leaf.csr'),
      '-CA',
      at('inter.crt'),
      '-CAkey',
      at('inter.key'),
      '-set_serial',
      '3',
      '-days',
      '30',
      '-extfile',
      c,
      '-extensions',
      'leaf',
      '-out',
      at('leaf.crt'),
    ]);
    const read = (n: string) => readFileSync(at(n), 'utf8');
    return { root: read('root.crt'), inter: read('inter.crt'), leaf: read('leaf.crt'), leafKey: read('leaf.key') };
  }

  it('validates and installs a leaf + intermediate chain against the root', { timeout: SLOW }, async () => {
    const dir = tempDir();
    const chain = corporateChain(dir);
    const input = { keyPem: chain.leafKey, certPem: chain.leaf + chain.inter, caPem: chain.root };
    expect(() => validateIdentity('server', input)).not.toThrow();
    expect(validationError('server', { ...input, certPem: chain.leaf }).code).toBe('RP_CERTS_WRONG_CA');
    expect(validationError('client', input).code).toBe('RP_CERTS_WRONG_USAGE');
    const info = describeCertificate(chain.leaf);
    expect(info.publicKey).toBe('EC prime256v1');
    expect(info.sans).toEqual(['DNS:corp.test']);
    expect(info.keyUsage).toEqual(['digitalSignature']);
    const paths = await installIdentity('server', input, join(dir, 'node'));
    expect(readFileSync(paths.cert, 'utf8')).toBe(chain.leaf + chain.inter);
  });
});

describe('installIdentity', () => {
  it('writes the three files with the node file names and modes', { timeout: SLOW }, async () => {
    const dir = join(tempDir(), 'etc', 'restpipe', 'server');
    const paths = await installIdentity('server', files(f.server), dir);
    expect(paths).toEqual({
      ca: join(dir, IDENTITY_FILES.server.ca),
      key: join(dir, IDENTITY_FILES.server.key),
      cert: join(dir, IDENTITY_FILES.server.cert),
    });
    expect(paths.key.endsWith('/restpipe.server.key.pem')).toBe(true);
    expect(readFileSync(paths.key, 'utf8')).toBe(f.server.keyPem);
    expect(readFileSync(paths.cert, 'utf8')).toBe(f.server.certPem);
    expect(readFileSync(paths.ca, 'utf8')).toBe(f.ca.certPem);
    expect(modeOf(paths.key)).toBe(0o600);
    expect(modeOf(paths.cert)).toBe(0o644);
    expect(modeOf(paths.ca)).toBe(0o644);
    expect(modeOf(dir)).toBe(0o700);
    expect(Object.keys(snapshot(dir))).toEqual(['ca.crt.pem', 'restpipe.server.crt.pem', 'restpipe.server.key.pem']);
  });

  it('uses the client file names for a client', { timeout: SLOW }, async () => {
    const dir = tempDir();
    const paths = await installIdentity('client', files(f.client), dir);
    expect(Object.keys(snapshot(dir))).toEqual(['ca.crt.pem', 'restpipe.client.crt.pem', 'restpipe.client.key.pem']);
    expect(modeOf(paths.key)).toBe(0o600);
  });

  it('replaces existing files only with force, and otherwise changes nothing', { timeout: SLOW }, async () => {
    const dir = tempDir();
    writeFileSync(join(dir, IDENTITY_FILES.client.cert), 'old certificate');
    const before = snapshot(dir);
    await expect(installIdentity('client', files(f.client), dir)).rejects.toMatchObject({ code: 'RP_CERTS_EXISTS' });
    expect(snapshot(dir)).toEqual(before);
    await installIdentity('client', files(f.client), dir, { force: true });
    expect(readFileSync(join(dir, IDENTITY_FILES.client.cert), 'utf8')).toBe(f.client.certPem);
    expect(Object.keys(snapshot(dir))).toHaveLength(3);
  });

  it('validates first: an invalid identity creates nothing', { timeout: SLOW }, async () => {
    const dir = join(tempDir(), 'missing');
    await expect(installIdentity('client', files(f.server), dir)).rejects.toMatchObject({ code: 'RP_CERTS_WRONG_USAGE' });
    expect(existsSync(dir)).toBe(false);
  });

  it('reports a destination that is not a directory as a write failure', { timeout: SLOW }, async () => {
    const file = join(tempDir(), 'a-file');
    writeFileSync(file, 'x');
    await expect(installIdentity('client', files(f.client), file)).rejects.toMatchObject({ code: 'RP_CERTS_WRITE_FAILED' });
  });
});

describe('writeIdentity', () => {
  it('writes <base>.key.pem 0600 and <base>.crt.pem 0644', { timeout: SLOW }, async () => {
    const dir = join(tempDir(), 'out');
    const paths = await writeIdentity(dir, 'branch-01', f.client);
    expect(paths).toEqual({ key: join(dir, 'branch-01.key.pem'), cert: join(dir, 'branch-01.crt.pem') });
    expect(modeOf(paths.key)).toBe(0o600);
    expect(modeOf(paths.cert)).toBe(0o644);
    expect(modeOf(dir)).toBe(0o700);
  });

  it('refuses existing files without force and path-like base names', { timeout: SLOW }, async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'x.key.pem'), 'old key');
    const before = snapshot(dir);
    await expect(writeIdentity(dir, 'x', f.client)).rejects.toMatchObject({ code: 'RP_CERTS_EXISTS' });
    await expect(writeIdentity(dir, 'sub/x', f.client)).rejects.toMatchObject({ code: 'RP_CERTS_INVALID_ARGUMENT' });
    await expect(writeIdentity(dir, '..', f.client)).rejects.toMatchObject({ code: 'RP_CERTS_INVALID_ARGUMENT' });
    expect(snapshot(dir)).toEqual(before);
  });
});

describe('resolveIdentityDir', () => {
  it('prefers --dir, then the environment, then /etc/restpipe', { timeout: SLOW }, () => {
    expect(resolveIdentityDir('server', '/x', { RP_SERVER_CERT_PATH: '/y' })).toBe('/x');
    expect(resolveIdentityDir('server', undefined, { RP_SERVER_CERT_PATH: '/y' })).toBe('/y');
    expect(resolveIdentityDir('client', undefined, { RP_CLIENT_CERT_PATH: '/z', RP_SERVER_CERT_PATH: '/y' })).toBe('/z');
    expect(resolveIdentityDir('client', undefined, { RP_CLIENT_CERT_PATH: '' })).toBe('/etc/restpipe/client');
    expect(DEFAULT_IDENTITY_DIR).toEqual({ server: '/etc/restpipe/server', client: '/etc/restpipe/client' });
  });
});
