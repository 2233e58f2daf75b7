/**
 * Every failure of the real `restpipe-certs` executable: exactly one line on stderr,
 * `restpipe-certs: <RP_CERTS_…>: <message>`, with the documented exit code, nothing on stdout
 * and nothing written. The inputs are made with the tool itself (the CLI for the CA and the
 * identities; the library where the CLI has no option, e.g. a validity in the past).
 */
import { execFile, spawnSync } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, createCa, createClientIdentity, createCrl } from '@restpipe/certs-tool';
import { CLI_PATH, SLOW, snapshot, useTempDirs, writePems } from './helpers.js';

const execFileAsync = promisify(execFile);
const fixtureDir = useTempDirs('all');
const tempDir = useTempDirs('each');

/** The documented error line: program, code, a non-empty message, one newline. */
const ERROR_LINE = /^restpipe-certs: (RP_CERTS_[A-Z_]+): (.+)\n$/;

/** The folder holding every input file (ids/, other/, loose PEM files). */
let inputs: string;

function env(): NodeJS.ProcessEnv {
  return { ...process.env, DEBUG: '' };
}

function runCli(args: string[], cwd: string, nodeArgs: string[] = [], extraEnv: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [...nodeArgs, CLI_PATH, ...args], { cwd, encoding: 'utf8', timeout: 20_000, env: { ...env(), ...extraEnv } });
  if (r.error) throw r.error;
  return r;
}

async function cli(args: string[], cwd: string): Promise<void> {
  await execFileAsync(process.execPath, [CLI_PATH, ...args], { cwd, encoding: 'utf8', timeout: 20_000, env: env() });
}

beforeAll(async () => {
  inputs = fixtureDir();
  // Two unrelated CAs, then a server and a client of the first and a client of the second.
  await Promise.all([cli(['create-ca', '--out', 'ids'], inputs), cli(['create-ca', '--out', 'other', '--name', 'Other CA'], inputs)]);
  await Promise.all([
    cli(['create-server', '--out', 'ids', '--name', 'pipe.test', '--dns', 'pipe.test'], inputs),
    cli(['create-client', '--out', 'ids', '--name', 'branch-01'], inputs),
    cli(['create-client', '--out', 'other', '--name', 'branch-01'], inputs),
  ]);
  // What the CLI cannot make: validity windows in the past or future, an encrypted key.
  const ca = { keyPem: readFileSync(join(inputs, 'ids', 'ca.key.pem'), 'utf8'), certPem: readFileSync(join(inputs, 'ids', 'ca.crt.pem'), 'utf8') };
  const day = 86_400_000;
  const [expired, future, expiredCa] = await Promise.all([
    createClientIdentity(ca, { commonName: 'old', validFrom: new Date(Date.now() - 10 * day), days: 1 }),
    createClientIdentity(ca, { commonName: 'soon', validFrom: new Date(Date.now() + 2 * day) }),
    createCa({ commonName: 'Old CA', validFrom: new Date(Date.now() - 10 * day), days: 1 }),
  ]);
  const clientKey = readFileSync(join(inputs, 'ids', 'branch-01.key.pem'), 'utf8');
  const encrypted = createPrivateKey(clientKey).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }).toString();
  mkdirSync(join(inputs, 'old-ca'));
  writePems(join(inputs, 'old-ca'), { 'ca.key.pem': expiredCa.keyPem, 'ca.crt.pem': expiredCa.certPem });
  // Revocation inputs: a CA copy whose CRL revokes the server, a stale CRL, another CA's CRL,
  // a CA folder with a corrupt revoked.json.
  for (const d of ['rev', 'bad-state']) {
    mkdirSync(join(inputs, d));
    writePems(join(inputs, d), { 'ca.key.pem': ca.keyPem, 'ca.crt.pem': ca.certPem });
  }
  writeFileSync(join(inputs, 'bad-state', 'revoked.json'), 'not json');
  await cli(['revoke', '--cert', join(inputs, 'ids', 'server.crt.pem'), '--ca-dir', join(inputs, 'rev')], inputs);
  await cli(['crl', '--ca-dir', 'other'], inputs);
  writePems(inputs, { 'stale.crl.pem': await createCrl(ca, [], { crlNumber: 1, now: new Date(Date.now() - 40 * day), nextUpdateDays: 30 }) });
  writePems(inputs, {
    'expired.key.pem': expired.keyPem,
    'expired.crt.pem': expired.certPem,
    'future.key.pem': future.keyPem,
    'future.crt.pem': future.certPem,
    'encrypted.key.pem': encrypted,
    'junk.txt': 'this is not a certificate\n',
  });
}, SLOW);

/** An input path. */
function i(rel: string): string {
  return join(inputs, rel);
}

/** `set-identity ROLE` with the given key, cert and CA (default: the right CA) into `dir`. */
function setIdentity(role: 'server' | 'client', key: string, cert: string, ca = 'ids/ca.crt.pem'): (dir: string) => string[] {
  return (dir) => ['set-identity', role, '--key', i(key), '--cert', i(cert), '--ca', i(ca), '--dir', dir];
}

interface Case {
  what: string;
  code: string;
  exit: 1 | 2;
  /** The arguments, given the test's scratch folder (also the working directory). */
  args: (dir: string) => string[];
  /** Prepare the scratch folder before the snapshot (e.g. install once). */
  setup?: (dir: string) => void;
  /** The message must say this too. */
  fragment?: RegExp;
}

const cases: Case[] = [
  {
    what: 'a server certificate given as a client identity',
    code: 'RP_CERTS_WRONG_USAGE',
    exit: 1,
    args: setIdentity('client', 'ids/server.key.pem', 'ids/server.crt.pem'),
    fragment: /needs extended key usage clientAuth/,
  },
  {
    what: 'a client certificate given as the server identity',
    code: 'RP_CERTS_WRONG_USAGE',
    exit: 1,
    args: setIdentity('server', 'ids/branch-01.key.pem', 'ids/branch-01.crt.pem'),
    fragment: /needs extended key usage serverAuth/,
  },
  {
    what: 'the key of another identity',
    code: 'RP_CERTS_MISMATCH',
    exit: 1,
    args: setIdentity('client', 'ids/server.key.pem', 'ids/branch-01.crt.pem'),
  },
  {
    what: 'a certificate from another CA',
    code: 'RP_CERTS_WRONG_CA',
    exit: 1,
    args: setIdentity('client', 'other/branch-01.key.pem', 'other/branch-01.crt.pem'),
    fragment: /issued by CN=Other CA/,
  },
  { what: 'a non-PEM certificate', code: 'RP_CERTS_NOT_PEM', exit: 1, args: setIdentity('client', 'ids/branch-01.key.pem', 'junk.txt') },
  { what: 'a certificate given as the key', code: 'RP_CERTS_NOT_PEM', exit: 1, args: setIdentity('client', 'ids/branch-01.crt.pem', 'ids/branch-01.crt.pem') },
  {
    what: 'a leaf certificate as --ca',
    code: 'RP_CERTS_NOT_CA',
    exit: 1,
    args: setIdentity('client', 'ids/branch-01.key.pem', 'ids/branch-01.crt.pem', 'ids/server.crt.pem'),
  },
  {
    what: 'a missing key file',
    code: 'RP_CERTS_MISSING_FILE',
    exit: 1,
    args: setIdentity('client', 'ids/nope.key.pem', 'ids/branch-01.crt.pem'),
    fragment: /no such file/,
  },
  { what: 'a passphrase-protected key', code: 'RP_CERTS_ENCRYPTED_KEY', exit: 1, args: setIdentity('client', 'encrypted.key.pem', 'ids/branch-01.crt.pem') },
  { what: 'an expired certificate', code: 'RP_CERTS_EXPIRED', exit: 1, args: setIdentity('client', 'expired.key.pem', 'expired.crt.pem') },
  { what: 'a not-yet-valid certificate', code: 'RP_CERTS_NOT_YET_VALID', exit: 1, args: setIdentity('client', 'future.key.pem', 'future.crt.pem') },
  {
    what: 'an installed identity without --force',
    code: 'RP_CERTS_EXISTS',
    exit: 1,
    setup: (dir) => {
      const r = runCli(setIdentity('client', 'ids/branch-01.key.pem', 'ids/branch-01.crt.pem')(join(dir, 'node')), dir);
      expect(r.status, r.stderr).toBe(0);
    },
    args: (dir) => setIdentity('client', 'ids/branch-01.key.pem', 'ids/branch-01.crt.pem')(join(dir, 'node')),
    fragment: /--force/,
  },
  {
    what: 'a destination under a regular file',
    code: 'RP_CERTS_WRITE_FAILED',
    exit: 1,
    setup: (dir) => writeFileSync(join(dir, 'plain'), 'a file'),
    args: (dir) => setIdentity('client', 'ids/branch-01.key.pem', 'ids/branch-01.crt.pem')(join(dir, 'plain', 'node')),
  },
  {
    what: 'a destination that is a regular file',
    code: 'RP_CERTS_WRITE_FAILED',
    exit: 1,
    setup: (dir) => writeFileSync(join(dir, 'plain'), 'a file'),
    args: (dir) => setIdentity('client', 'ids/branch-01.key.pem', 'ids/branch-01.crt.pem')(join(dir, 'plain')),
  },
  {
    what: 'create-ca into a regular file',
    code: 'RP_CERTS_WRITE_FAILED',
    exit: 1,
    setup: (dir) => writeFileSync(join(dir, 'plain'), 'a file'),
    args: () => ['create-ca', '--out', 'plain'],
  },
  {
    what: 'create-client next to an existing identity of that name',
    code: 'RP_CERTS_EXISTS',
    exit: 1,
    args: () => ['create-client', '--name', 'branch-01', '--ca-dir', i('ids'), '--out', i('ids')],
  },
  {
    what: 'create-client signing with a leaf certificate',
    code: 'RP_CERTS_NOT_CA',
    exit: 1,
    args: () => ['create-client', '--name', 'c', '--ca-key', i('ids/server.key.pem'), '--ca-cert', i('ids/server.crt.pem')],
  },
  {
    what: 'create-client with the key of another CA',
    code: 'RP_CERTS_MISMATCH',
    exit: 1,
    args: () => ['create-client', '--name', 'c', '--ca-key', i('other/ca.key.pem'), '--ca-cert', i('ids/ca.crt.pem')],
  },
  { what: 'create-client with an expired CA', code: 'RP_CERTS_EXPIRED', exit: 1, args: () => ['create-client', '--name', 'c', '--ca-dir', i('old-ca')] },
  { what: 'create-client without a CA', code: 'RP_CERTS_MISSING_FILE', exit: 1, args: () => ['create-client', '--name', 'c'] },
  {
    what: 'create-client with a non-PEM CA key',
    code: 'RP_CERTS_NOT_PEM',
    exit: 1,
    args: () => ['create-client', '--name', 'c', '--ca-key', i('junk.txt'), '--ca-cert', i('ids/ca.crt.pem')],
  },
  { what: 'inspect of a missing file', code: 'RP_CERTS_MISSING_FILE', exit: 1, args: () => ['inspect', 'none.pem'] },
  { what: 'inspect of a non-PEM file', code: 'RP_CERTS_NOT_PEM', exit: 1, args: () => ['inspect', i('junk.txt')] },
  {
    what: 'an unknown option',
    code: 'RP_CERTS_USAGE',
    exit: 2,
    args: () => ['create-ca', '--bogus'],
    fragment: /--bogus.*\(see 'restpipe-certs create-ca --help'\)$/,
  },
  { what: 'an unknown command', code: 'RP_CERTS_USAGE', exit: 2, args: () => ['frobnicate'], fragment: /unknown command "frobnicate"/ },
  { what: 'no command', code: 'RP_CERTS_USAGE', exit: 2, args: () => [], fragment: /create-ca/ },
  { what: 'a missing required option', code: 'RP_CERTS_USAGE', exit: 2, args: () => ['create-client', '--days', '3'], fragment: /--name is required/ },
  { what: 'a malformed option value', code: 'RP_CERTS_USAGE', exit: 2, args: () => ['create-ca', '--days', 'ten'] },
  { what: 'set-identity without a role', code: 'RP_CERTS_USAGE', exit: 2, args: () => ['set-identity', '--key', 'k'] },
  { what: 'a key size out of range', code: 'RP_CERTS_INVALID_ARGUMENT', exit: 2, args: () => ['create-ca', '--bits', '1024'] },
  {
    what: 'a bad DNS name',
    code: 'RP_CERTS_INVALID_ARGUMENT',
    exit: 2,
    args: () => ['create-server', '--name', 's', '--dns', 'bad name', '--ca-dir', i('ids')],
    fragment: /not a valid DNS name/,
  },
  { what: 'a client name with a slash', code: 'RP_CERTS_INVALID_ARGUMENT', exit: 2, args: () => ['create-client', '--name', 'a/b', '--ca-dir', i('ids')] },
  { what: 'an unknown key type', code: 'RP_CERTS_INVALID_ARGUMENT', exit: 2, args: () => ['create-ca', '--key-type', 'dsa'], fragment: /rsa or ec/ },
  {
    what: 'a key size for an EC key',
    code: 'RP_CERTS_INVALID_ARGUMENT',
    exit: 2,
    args: () => ['create-ca', '--key-type', 'ec', '--bits', '2048'],
    fragment: /RSA keys only/,
  },
  // revoke and crl
  {
    what: 'revoke of a certificate from another CA',
    code: 'RP_CERTS_WRONG_CA',
    exit: 1,
    args: () => ['revoke', '--cert', i('other/branch-01.crt.pem'), '--ca-dir', i('ids')],
    fragment: /not issued by this CA/,
  },
  {
    what: 'revoke of the CA certificate',
    code: 'RP_CERTS_INVALID_ARGUMENT',
    exit: 2,
    args: () => ['revoke', '--cert', i('ids/ca.crt.pem'), '--ca-dir', i('ids')],
  },
  { what: 'revoke with --cert and --serial', code: 'RP_CERTS_USAGE', exit: 2, args: () => ['revoke', '--cert', 'x', '--serial', '01', '--ca-dir', i('ids')] },
  {
    what: 'revoke of a malformed serial',
    code: 'RP_CERTS_INVALID_ARGUMENT',
    exit: 2,
    args: () => ['revoke', '--serial', 'xyz', '--ca-dir', i('ids')],
    fragment: /hex digits/,
  },
  {
    what: 'revoke with an unknown reason',
    code: 'RP_CERTS_INVALID_ARGUMENT',
    exit: 2,
    args: () => ['revoke', '--serial', '01', '--reason', 'bored', '--ca-dir', i('ids')],
  },
  {
    what: 'revoke with a next update of 0 days',
    code: 'RP_CERTS_USAGE',
    exit: 2,
    args: () => ['revoke', '--serial', '01', '--next-update-days', '0', '--ca-dir', i('ids')],
  },
  {
    what: 'revoke with a next update over a year',
    code: 'RP_CERTS_INVALID_ARGUMENT',
    exit: 2,
    args: () => ['revoke', '--serial', '01', '--next-update-days', '400', '--ca-dir', i('ids')],
  },
  {
    what: 'revoke with a corrupt revoked.json',
    code: 'RP_CERTS_BAD_STATE',
    exit: 1,
    args: () => ['revoke', '--serial', '01', '--ca-dir', i('bad-state')],
    fragment: /not valid JSON/,
  },
  { what: 'crl without a CA', code: 'RP_CERTS_MISSING_FILE', exit: 1, args: () => ['crl'] },
  {
    what: 'crl signed with a leaf certificate',
    code: 'RP_CERTS_NOT_CA',
    exit: 1,
    args: () => ['crl', '--ca-key', i('ids/server.key.pem'), '--ca-cert', i('ids/server.crt.pem')],
  },
  // check-crl
  {
    what: 'check-crl of a stale CRL',
    code: 'RP_CERTS_CRL_STALE',
    exit: 1,
    args: () => ['check-crl', '--crl', i('stale.crl.pem'), '--ca', i('ids/ca.crt.pem')],
    fragment: /stale/,
  },
  { what: 'check-crl of another CA', code: 'RP_CERTS_WRONG_CA', exit: 1, args: () => ['check-crl', '--crl', i('other/crl.pem'), '--ca', i('ids/ca.crt.pem')] },
  {
    what: 'check-crl of a certificate',
    code: 'RP_CERTS_NOT_PEM',
    exit: 1,
    args: () => ['check-crl', '--crl', i('ids/ca.crt.pem'), '--ca', i('ids/ca.crt.pem')],
    fragment: /not a PEM CRL/,
  },
  // set-identity --crl
  {
    what: 'a CRL revoking the server certificate',
    code: 'RP_CERTS_REVOKED',
    exit: 1,
    args: (dir) => [...setIdentity('server', 'ids/server.key.pem', 'ids/server.crt.pem')(join(dir, 'node')), '--crl', i('rev/crl.pem')],
  },
  {
    what: "another CA's CRL for the server",
    code: 'RP_CERTS_WRONG_CA',
    exit: 1,
    args: (dir) => [...setIdentity('server', 'ids/server.key.pem', 'ids/server.crt.pem')(join(dir, 'node')), '--crl', i('other/crl.pem')],
  },
  {
    what: 'a non-PEM CRL for the server',
    code: 'RP_CERTS_NOT_PEM',
    exit: 1,
    args: (dir) => [...setIdentity('server', 'ids/server.key.pem', 'ids/server.crt.pem')(join(dir, 'node')), '--crl', i('junk.txt')],
  },
  {
    what: 'a CRL alone with no identity installed',
    code: 'RP_CERTS_MISSING_FILE',
    exit: 1,
    args: (dir) => ['set-identity', 'server', '--crl', i('rev/crl.pem'), '--dir', join(dir, 'node')],
  },
  { what: 'inspect with a non-PEM --crl', code: 'RP_CERTS_NOT_PEM', exit: 1, args: () => ['inspect', '--crl', i('junk.txt'), i('ids/ca.crt.pem')] },
  // renew
  { what: 'renew without --cert', code: 'RP_CERTS_USAGE', exit: 2, args: () => ['renew', '--ca-dir', i('ids')], fragment: /--cert is required/ },
  {
    what: 'renew of a CA certificate',
    code: 'RP_CERTS_INVALID_ARGUMENT',
    exit: 2,
    args: (dir) => ['renew', '--cert', i('ids/ca.crt.pem'), '--ca-dir', i('ids'), '--out', dir],
  },
  { what: 'renew over the existing files', code: 'RP_CERTS_EXISTS', exit: 1, args: () => ['renew', '--cert', i('ids/branch-01.crt.pem')], fragment: /--force/ },
];

describe('restpipe-certs failures', () => {
  for (const c of cases) {
    it(`${c.what}: exit ${c.exit}, one line with ${c.code}, nothing written`, { timeout: SLOW }, () => {
      const dir = tempDir();
      writeFileSync(join(dir, 'unrelated.txt'), 'keep me');
      c.setup?.(dir);
      const before = snapshot(dir);
      const inputsBefore = snapshot(inputs);
      const r = runCli(c.args(dir), dir);
      expect(r.stderr).toMatch(ERROR_LINE);
      expect(r.stderr.match(ERROR_LINE)?.[1], r.stderr).toBe(c.code);
      if (c.fragment) expect(r.stderr.trimEnd()).toMatch(c.fragment);
      expect(r.status, r.stderr).toBe(c.exit);
      expect(r.stdout).toBe('');
      expect(snapshot(dir)).toEqual(before);
      expect(snapshot(inputs)).toEqual(inputsBefore);
    });
  }

  it('an unexpected error (a bug) is one line with RP_CERTS_INTERNAL, exit 1, no stack', { timeout: SLOW }, () => {
    const dir = tempDir();
    // Simulate a bug below the CLI: a crypto call that throws where it never should.
    const hook = join(dir, 'bug.mjs');
    writeFileSync(
      hook,
      "import { X509Certificate } from 'node:crypto';\nX509Certificate.prototype.checkPrivateKey = () => { throw new TypeError('simulated bug'); };\n",
    );
    const args = setIdentity('client', 'ids/branch-01.key.pem', 'ids/branch-01.crt.pem')(join(dir, 'node'));
    const r = runCli(args, dir, ['--import', hook]);
    expect(r.stderr).toMatch(ERROR_LINE);
    expect(r.stderr.match(ERROR_LINE)?.[1], r.stderr).toBe('RP_CERTS_INTERNAL');
    expect(r.stderr).toContain('simulated bug');
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(snapshot(dir)).toEqual({ 'bug.mjs': expect.any(String) });

    // DEBUG=1 adds the stack trace before the same last line.
    const debug = runCli(args, dir, ['--import', hook], { DEBUG: '1' });
    const lines = debug.stderr.split('\n');
    expect(lines.length).toBeGreaterThan(3);
    expect(debug.stderr).toMatch(/\n {4}at /);
    expect(`${lines.at(-2)}\n`).toBe(r.stderr);
    expect(debug.status).toBe(1);
  });

  it('cover every error code the tool has', { timeout: 5_000 }, () => {
    const covered = new Set([...cases.map((c) => c.code), 'RP_CERTS_INTERNAL']);
    expect([...covered].sort()).toEqual([...ERROR_CODES].sort());
  });
});
