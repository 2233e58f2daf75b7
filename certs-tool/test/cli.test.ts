/**
 * The restpipe-certs command line: in-process through main(), and a few runs of the real
 * executable.
 */
import { spawnSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createClientIdentity } from '@restpipe/certs-tool';
import { main } from '@restpipe/certs-tool/cli-main';
import { CLI_PATH, SERVER_NAME, SLOW, captureIo, getFixtures, modeOf, openssl, snapshot, useTempDirs, writePems } from './helpers.js';
import type { CapturedIo } from './helpers.js';

const fixtureDir = useTempDirs('all');
const tempDir = useTempDirs('each');
/** Paths of PEM files: ca, server, client, other CA's client, expired, future, junk... */
let pem: Record<string, string>;

beforeAll(async () => {
  const f = await getFixtures();
  const day = 86_400_000;
  const [expired, future] = await Promise.all([
    createClientIdentity(f.ca, { commonName: 'old', validFrom: new Date(Date.now() - 10 * day), days: 1 }),
    createClientIdentity(f.ca, { commonName: 'soon', validFrom: new Date(Date.now() + 2 * day) }),
  ]);
  const encrypted = createPrivateKey(f.client.keyPem).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }).toString();
  pem = writePems(fixtureDir(), {
    'ca.crt.pem': f.ca.certPem,
    'ca.key.pem': f.ca.keyPem,
    'server.key.pem': f.server.keyPem,
    'server.crt.pem': f.server.certPem,
    'client.key.pem': f.client.keyPem,
    'client.crt.pem': f.client.certPem,
    'other.key.pem': f.otherClient.keyPem,
    'other.crt.pem': f.otherClient.certPem,
    'expired.key.pem': expired.keyPem,
    'expired.crt.pem': expired.certPem,
    'future.key.pem': future.keyPem,
    'future.crt.pem': future.certPem,
    'encrypted.key.pem': encrypted,
    'junk.txt': 'this is not a certificate\n',
  });
}, SLOW);

function p(name: string): string {
  const path = pem[name];
  if (!path) throw new Error(`no fixture ${name}`);
  return path;
}

async function run(argv: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ code: number; io: CapturedIo }> {
  const io = captureIo(opts.cwd ?? tempDir(), opts.env ?? {});
  const code = await main(argv, io);
  return { code, io };
}

/** Exactly one line on stderr, in the CLI's error format: `restpipe-certs: RP_CERTS_…: …`. */
function expectOneLineError(io: CapturedIo, fragment: string | RegExp): void {
  const err = io.err();
  expect(err).toMatch(/^restpipe-certs: RP_CERTS_[A-Z_]+: [^\n]+\n$/);
  expect(err).toMatch(fragment);
  expect(io.out()).toBe('');
}

describe('create-ca, create-server, create-client', () => {
  it('create a CA and identities with the right files and modes', { timeout: SLOW }, async () => {
    const cwd = tempDir();
    const ca = await run(['create-ca'], { cwd });
    expect(ca.code, ca.io.err()).toBe(0);
    expect(ca.io.err()).toBe('');
    const out = join(cwd, 'restpipe-identities');
    expect(modeOf(out)).toBe(0o700);
    expect(modeOf(join(out, 'ca.key.pem'))).toBe(0o600);
    expect(modeOf(join(out, 'ca.crt.pem'))).toBe(0o644);
    expect(ca.io.out()).toContain(join(out, 'ca.key.pem'));

    const server = await run(['create-server', '--name', SERVER_NAME, '--dns', `${SERVER_NAME},localhost`, '--ip', '127.0.0.1', '--ip', '::1'], { cwd });
    expect(server.code, server.io.err()).toBe(0);
    expect(modeOf(join(out, 'server.key.pem'))).toBe(0o600);
    const text = openssl(['x509', '-in', join(out, 'server.crt.pem'), '-noout', '-text']).stdout;
    expect(text).toContain(`DNS:${SERVER_NAME}, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1`);
    expect(text).toContain('TLS Web Server Authentication');

    const client = await run(['create-client', '--name', 'branch 01'], { cwd });
    expect(client.code, client.io.err()).toBe(0);
    expect(modeOf(join(out, 'branch_01.key.pem'))).toBe(0o600);
    const subject = openssl(['x509', '-in', join(out, 'branch_01.crt.pem'), '-noout', '-subject']).stdout;
    expect(subject.trim()).toBe('subject=CN = branch 01');

    for (const leaf of ['server.crt.pem', 'branch_01.crt.pem']) {
      const r = openssl(['verify', '-CAfile', join(out, 'ca.crt.pem'), join(out, leaf)]);
      expect(r.status, r.stderr).toBe(0);
    }
  });

  it('sign with --ca-key/--ca-cert into --out with --file-name, --days and --bits', { timeout: SLOW }, async () => {
    const cwd = tempDir();
    const r = await run(
      [
        'create-server',
        '--name',
        'n.test',
        '--ca-key',
        p('ca.key.pem'),
        '--ca-cert',
        p('ca.crt.pem'),
        '--out',
        'o',
        '--file-name',
        'edge',
        '--days',
        '30',
        '--bits',
        '3072',
      ],
      { cwd },
    );
    expect(r.code, r.io.err()).toBe(0);
    const text = openssl(['x509', '-in', join(cwd, 'o', 'edge.crt.pem'), '-noout', '-text']).stdout;
    expect(text).toContain('Public-Key: (3072 bit)');
    expect(text).toContain('DNS:n.test');
    const verify = openssl(['verify', '-CAfile', p('ca.crt.pem'), join(cwd, 'o', 'edge.crt.pem')]);
    expect(verify.status, verify.stderr).toBe(0);
  });

  it('refuse to overwrite without --force, and replace with it', { timeout: SLOW }, async () => {
    const cwd = tempDir();
    expect((await run(['create-ca', '--out', 'ids'], { cwd })).code).toBe(0);
    const before = snapshot(join(cwd, 'ids'));
    const again = await run(['create-ca', '--out', 'ids'], { cwd });
    expect(again.code).toBe(1);
    expectOneLineError(again.io, /already exist.*--force/);
    expect(snapshot(join(cwd, 'ids'))).toEqual(before);
    const forced = await run(['create-ca', '--out', 'ids', '--force'], { cwd });
    expect(forced.code).toBe(0);
    expect(snapshot(join(cwd, 'ids'))).not.toEqual(before);
  });

  it('report a missing CA and write nothing', { timeout: SLOW }, async () => {
    const cwd = tempDir();
    const r = await run(['create-client', '--name', 'c1'], { cwd });
    expect(r.code).toBe(1);
    expectOneLineError(r.io, /cannot read CA key .*ca\.key\.pem: no such file/);
    expect(snapshot(cwd)).toEqual({});
  });

  it('report bad option values as usage errors (exit 2)', { timeout: SLOW }, async () => {
    const cwd = tempDir();
    const cases: Array<[string[], RegExp]> = [
      [['create-server', '--name', 's', '--dns', 'bad name', '--ca-dir', join(p('ca.crt.pem'), '..')], /not a valid DNS name/],
      [['create-server', '--name', 's', '--ip', '1.2.3', '--ca-dir', join(p('ca.crt.pem'), '..')], /not a valid IPv4 or IPv6/],
      [['create-server', '--dns', 'x.test'], /--name is required/],
      [['create-ca', '--days', 'ten'], /--days must be a positive whole number/],
      [['create-ca', '--bits', '1024'], /key size/],
      [['create-ca', '--bogus'], /Unknown option '--bogus'/],
      [['create-server', '--name', 's', '--ca-key', p('ca.key.pem')], /--ca-key and --ca-cert go together/],
      [['make-coffee'], /unknown command "make-coffee"/],
    ];
    for (const [argv, fragment] of cases) {
      const r = await run(argv, { cwd });
      expect(r.code, argv.join(' ')).toBe(2);
      expectOneLineError(r.io, fragment);
    }
    expect(snapshot(cwd)).toEqual({});
  });
});

describe('set-identity', () => {
  it('installs a server identity with the node file names and modes', { timeout: SLOW }, async () => {
    const dir = join(tempDir(), 'server-node');
    const r = await run(['set-identity', 'server', '--key', p('server.key.pem'), '--cert', p('server.crt.pem'), '--ca', p('ca.crt.pem'), '--dir', dir]);
    expect(r.code, r.io.err()).toBe(0);
    expect(r.io.err()).toBe('');
    expect(modeOf(dir)).toBe(0o700);
    expect(modeOf(join(dir, 'restpipe.server.key.pem'))).toBe(0o600);
    expect(modeOf(join(dir, 'restpipe.server.crt.pem'))).toBe(0o644);
    expect(modeOf(join(dir, 'ca.crt.pem'))).toBe(0o644);
    expect(readFileSync(join(dir, 'restpipe.server.key.pem'), 'utf8')).toBe(readFileSync(p('server.key.pem'), 'utf8'));
    expect(r.io.out()).toContain(`RP_SERVER_CERT_PATH=${dir}`);
  });

  it('installs a client identity into $RP_CLIENT_CERT_PATH when --dir is not given', { timeout: SLOW }, async () => {
    const dir = join(tempDir(), 'client-node');
    const r = await run(['set-identity', 'client', '--key', p('client.key.pem'), '--cert', p('client.crt.pem'), '--ca', p('ca.crt.pem')], {
      env: { RP_CLIENT_CERT_PATH: dir },
    });
    expect(r.code, r.io.err()).toBe(0);
    expect(Object.keys(snapshot(dir))).toEqual(['ca.crt.pem', 'restpipe.client.crt.pem', 'restpipe.client.key.pem']);
    expect(modeOf(join(dir, 'restpipe.client.key.pem'))).toBe(0o600);
  });

  it('replaces an installed identity only with --force', { timeout: SLOW }, async () => {
    const dir = tempDir();
    const args = ['set-identity', 'client', '--key', p('client.key.pem'), '--cert', p('client.crt.pem'), '--ca', p('ca.crt.pem'), '--dir', dir];
    expect((await run(args)).code).toBe(0);
    writeFileSync(join(dir, 'restpipe.client.crt.pem'), 'changed');
    const before = snapshot(dir);
    const again = await run(args);
    expect(again.code).toBe(1);
    expectOneLineError(again.io, /restpipe\.client\.key\.pem.*already exist.*--force/);
    expect(snapshot(dir)).toEqual(before);
    expect((await run([...args, '--force'])).code).toBe(0);
    expect(readFileSync(join(dir, 'restpipe.client.crt.pem'), 'utf8')).toBe(readFileSync(p('client.crt.pem'), 'utf8'));
  });

  // Every bad input: exit 1, one line on stderr, nothing written to the destination.
  const badInputs: Array<{ what: string; role: 'server' | 'client'; key: string; cert: string; ca?: string; fragment: RegExp }> = [
    { what: 'a missing key file', role: 'client', key: 'nope.key.pem', cert: 'client.crt.pem', fragment: /cannot read key .*nope\.key\.pem: no such file/ },
    {
      what: 'a missing CA file',
      role: 'client',
      key: 'client.key.pem',
      cert: 'client.crt.pem',
      ca: 'nope.crt.pem',
      fragment: /cannot read CA certificate .*nope\.crt\.pem/,
    },
    {
      what: 'a non-PEM certificate',
      role: 'client',
      key: 'client.key.pem',
      cert: 'junk.txt',
      fragment: /junk\.txt is not a PEM certificate \(no PEM data found\)/,
    },
    {
      what: 'a certificate given as the key',
      role: 'client',
      key: 'client.crt.pem',
      cert: 'client.crt.pem',
      fragment: /is not a PEM private key \(found CERTIFICATE\)/,
    },
    { what: 'a non-PEM CA', role: 'client', key: 'client.key.pem', cert: 'client.crt.pem', ca: 'junk.txt', fragment: /junk\.txt is not a PEM certificate/ },
    {
      what: 'a key that does not match the certificate',
      role: 'client',
      key: 'other.key.pem',
      cert: 'client.crt.pem',
      fragment: /client key does not match the client certificate \(CN=branch-01\)/,
    },
    {
      what: 'a certificate from another CA',
      role: 'client',
      key: 'other.key.pem',
      cert: 'other.crt.pem',
      fragment: /not signed by the given CA \(CN=RestPipe CA\).*issued by CN=Other CA/,
    },
    { what: 'an expired certificate', role: 'client', key: 'expired.key.pem', cert: 'expired.crt.pem', fragment: /\(CN=old\) expired on \d{4}-/ },
    {
      what: 'a not-yet-valid certificate',
      role: 'client',
      key: 'future.key.pem',
      cert: 'future.crt.pem',
      fragment: /\(CN=soon\) is not valid yet: valid from \d{4}-/,
    },
    {
      what: 'a server certificate as a client identity',
      role: 'client',
      key: 'server.key.pem',
      cert: 'server.crt.pem',
      fragment: /is not a client certificate: it needs extended key usage clientAuth, it has serverAuth/,
    },
    {
      what: 'a client certificate as the server identity',
      role: 'server',
      key: 'client.key.pem',
      cert: 'client.crt.pem',
      fragment: /is not a server certificate: it needs extended key usage serverAuth/,
    },
    {
      what: 'a leaf certificate as the CA',
      role: 'client',
      key: 'client.key.pem',
      cert: 'client.crt.pem',
      ca: 'server.crt.pem',
      fragment: /is not a CA certificate/,
    },
    { what: 'a passphrase-protected key', role: 'client', key: 'encrypted.key.pem', cert: 'client.crt.pem', fragment: /passphrase-protected/ },
  ];
  for (const c of badInputs) {
    it(`rejects ${c.what}`, { timeout: SLOW }, async () => {
      const dir = tempDir();
      writeFileSync(join(dir, 'unrelated.txt'), 'keep me');
      const before = snapshot(dir);
      const at = (name: string) => pem[name] ?? join(dir, '..', name);
      const r = await run(['set-identity', c.role, '--key', at(c.key), '--cert', at(c.cert), '--ca', at(c.ca ?? 'ca.crt.pem'), '--dir', dir]);
      expect(r.code).toBe(1);
      expectOneLineError(r.io, c.fragment);
      expect(snapshot(dir)).toEqual(before);
    });
  }

  it('does not create a missing destination directory for bad input', { timeout: SLOW }, async () => {
    const dir = join(tempDir(), 'not-yet');
    const r = await run(['set-identity', 'client', '--key', p('server.key.pem'), '--cert', p('server.crt.pem'), '--ca', p('ca.crt.pem'), '--dir', dir]);
    expect(r.code).toBe(1);
    expect(existsSync(dir)).toBe(false);
  });

  it('reports command-line mistakes as usage errors (exit 2)', { timeout: SLOW }, async () => {
    const dir = tempDir();
    const full = ['--key', p('client.key.pem'), '--cert', p('client.crt.pem'), '--ca', p('ca.crt.pem'), '--dir', dir];
    const cases: Array<[string[], RegExp]> = [
      [['set-identity', ...full], /say which node/],
      [['set-identity', 'relay', ...full], /unknown role "relay"/],
      [['set-identity', 'client', '--key', p('client.key.pem'), '--cert', p('client.crt.pem'), '--dir', dir], /--ca is required/],
      [['set-identity', 'client', 'extra', ...full], /unexpected argument "extra"/],
      [['set-identity', 'client', '--dir'], /--dir/],
    ];
    for (const [argv, fragment] of cases) {
      const r = await run(argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expectOneLineError(r.io, fragment);
    }
    expect(snapshot(dir)).toEqual({});
  });
});

describe('inspect', () => {
  it('prints subject, SANs, usages, validity and the openssl SHA-256 fingerprint', { timeout: SLOW }, async () => {
    const r = await run(['inspect', p('server.crt.pem')]);
    expect(r.code, r.io.err()).toBe(0);
    const out = r.io.out();
    const fp = openssl(['x509', '-in', p('server.crt.pem'), '-noout', '-fingerprint', '-sha256'])
      .stdout.trim()
      .split('=')[1];
    expect(fp).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(out).toContain(`SHA-256 fingerprint: ${fp}`);
    expect(out).toContain(`Subject:             CN=${SERVER_NAME}`);
    expect(out).toContain('Issuer:              CN=RestPipe CA');
    expect(out).toContain(`DNS:${SERVER_NAME}, DNS:localhost, IP:127.0.0.1, IP:::1`);
    expect(out).toContain('Key usage:           digitalSignature, keyEncipherment');
    expect(out).toContain('Extended key usage:  serverAuth');
    expect(out).toMatch(/Not before: +\d{4}-\d\d-\d\dT/);
    expect(out).toMatch(/Not after: +\d{4}-\d\d-\d\dT/);
  });

  it('prints JSON for every certificate in every file with --json', { timeout: SLOW }, async () => {
    const dir = tempDir();
    const bundle = join(dir, 'bundle.pem');
    writeFileSync(bundle, readFileSync(p('client.crt.pem'), 'utf8') + readFileSync(p('ca.crt.pem'), 'utf8'));
    const r = await run(['inspect', '--json', bundle, p('server.crt.pem')]);
    expect(r.code, r.io.err()).toBe(0);
    const parsed = JSON.parse(r.io.out()) as Array<{ subject: string; extKeyUsage: string[]; isCa: boolean }>;
    expect(parsed.map((c) => c.subject)).toEqual(['CN=branch-01', 'CN=RestPipe CA', `CN=${SERVER_NAME}`]);
    expect(parsed[0]?.extKeyUsage).toEqual(['clientAuth']);
    expect(parsed[1]?.isCa).toBe(true);
  });

  it('reports a missing or non-PEM file', { timeout: SLOW }, async () => {
    const missing = await run(['inspect', join(tempDir(), 'none.pem')]);
    expect(missing.code).toBe(1);
    expectOneLineError(missing.io, /no such file/);
    const junk = await run(['inspect', p('junk.txt')]);
    expect(junk.code).toBe(1);
    expectOneLineError(junk.io, /is not a PEM certificate/);
    const none = await run(['inspect']);
    expect(none.code).toBe(2);
  });
});

describe('help', () => {
  it('every command has --help', { timeout: SLOW }, async () => {
    for (const cmd of ['create-ca', 'create-server', 'create-client', 'renew', 'revoke', 'crl', 'check-crl', 'set-identity', 'inspect']) {
      const r = await run([cmd, '--help']);
      expect(r.code, cmd).toBe(0);
      expect(r.io.out()).toMatch(new RegExp(`^Usage: restpipe-certs ${cmd}`));
      const viaHelp = await run(['help', cmd]);
      expect(viaHelp.io.out()).toBe(r.io.out());
    }
    const top = await run(['--help']);
    expect(top.code).toBe(0);
    expect(top.io.out()).toContain('set-identity');
    const none = await run([]);
    expect(none.code).toBe(2);
    expect(none.io.err()).toBe(
      "restpipe-certs: RP_CERTS_USAGE: give a command: create-ca, create-server, create-client, renew, revoke, crl, check-crl, set-identity, inspect (see 'restpipe-certs --help')\n",
    );
  });
});

describe('the restpipe-certs executable', () => {
  function spawnCli(args: string[], cwd: string): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync(process.execPath, [CLI_PATH, ...args], { cwd, encoding: 'utf8', timeout: 20_000, env: { ...process.env, DEBUG: '' } });
    if (r.error) throw r.error;
    return r;
  }

  it('starts with a node shebang', { timeout: SLOW }, () => {
    expect(readFileSync(CLI_PATH, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });

  it('prints help and exits 0', { timeout: SLOW }, () => {
    const r = spawnCli(['--help'], tempDir());
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: restpipe-certs <command>');
  });

  it('creates a CA', { timeout: SLOW }, () => {
    const cwd = tempDir();
    const r = spawnCli(['create-ca', '--name', 'Spawned CA'], cwd);
    expect(r.status, r.stderr).toBe(0);
    expect(modeOf(join(cwd, 'restpipe-identities', 'ca.key.pem'))).toBe(0o600);
    const subject = openssl(['x509', '-in', join(cwd, 'restpipe-identities', 'ca.crt.pem'), '-noout', '-subject']).stdout;
    expect(subject.trim()).toBe('subject=CN = Spawned CA');
  });

  it('exits 1 with one line on stderr for a server certificate given as a client identity', { timeout: SLOW }, () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'node'));
    const r = spawnCli(['set-identity', 'client', '--key', p('server.key.pem'), '--cert', p('server.crt.pem'), '--ca', p('ca.crt.pem'), '--dir', 'node'], dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^restpipe-certs: RP_CERTS_WRONG_USAGE: [^\n]*clientAuth[^\n]*\n$/);
    expect(snapshot(join(dir, 'node'))).toEqual({});
  });

  it('exits 2 for an unknown command', { timeout: SLOW }, () => {
    const r = spawnCli(['frobnicate'], tempDir());
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`restpipe-certs: RP_CERTS_USAGE: unknown command "frobnicate" (see 'restpipe-certs --help')\n`);
  });
});
