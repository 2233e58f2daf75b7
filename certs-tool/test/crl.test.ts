/**
 * Revocation: `revoke`, `crl`, `check-crl`, `set-identity server --crl` and `inspect --crl`
 * through the CLI, checked with the real openssl; `verifyCrl` and friends in the library.
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BadStateError,
  CrlStaleError,
  NotYetValidError,
  WrongCaError,
  createCa,
  createClientIdentity,
  createCrl,
  findRevocation,
  parseCrls,
  reissueCrl,
  revokeCertificate,
  verifyCrl,
} from '@restpipe/certs-tool';
import type { Identity } from '@restpipe/certs-tool';
import { main } from '@restpipe/certs-tool/cli-main';
import { SLOW, captureIo, getFixtures, openssl, snapshot, useTempDirs, writePems } from './helpers.js';
import type { CapturedIo, Fixtures } from './helpers.js';

const tempDir = useTempDirs('each');
const DAY = 86_400_000;
let f: Fixtures;
let ecCa: Identity;
let ecClient: Identity;

beforeAll(async () => {
  f = await getFixtures();
  ecCa = await createCa({ commonName: 'EC CA', keyType: 'ec' });
  ecClient = await createClientIdentity(ecCa, { commonName: 'ec-branch', keyType: 'ec' });
}, SLOW);

async function run(argv: string[], cwd: string): Promise<{ code: number; io: CapturedIo }> {
  const io = captureIo(cwd, {});
  const code = await main(argv, io);
  return { code, io };
}

/** A folder holding the fixture CA (ca.key.pem, ca.crt.pem) and its identities. */
function caFolder(ca: Identity = f.ca, extra: Record<string, string> = {}): string {
  const dir = tempDir();
  writePems(dir, { 'ca.key.pem': ca.keyPem, 'ca.crt.pem': ca.certPem, ...extra });
  return dir;
}

/** Serial of a certificate as openssl prints it. */
function serialOf(certPath: string): string {
  return openssl(['x509', '-in', certPath, '-noout', '-serial'])
    .stdout.trim()
    .replace(/^serial=/, '');
}

function crlText(dir: string): string {
  const r = openssl(['crl', '-in', join(dir, 'crl.pem'), '-noout', '-text']);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

function expectOpensslVerifies(crlPath: string, caPath: string): void {
  const r = openssl(['crl', '-in', crlPath, '-CAfile', caPath, '-noout']);
  expect(r.status, r.stderr).toBe(0);
  expect(r.stderr + r.stdout).toMatch(/verify OK/);
}

describe('restpipe-certs revoke', () => {
  it('writes crl.pem signed by the CA, listing the serial and reason, and revoked.json', { timeout: SLOW }, async () => {
    const dir = caFolder(f.ca, { 'client.crt.pem': f.client.certPem });
    const r = await run(['revoke', '--cert', 'client.crt.pem', '--reason', 'keyCompromise', '--ca-dir', '.'], dir);
    expect(r.code, r.io.err()).toBe(0);
    expect(r.io.err()).toBe('');
    const serial = serialOf(join(dir, 'client.crt.pem'));
    expect(r.io.out()).toContain(`revoked "branch-01" (serial ${serial}), reason keyCompromise`);
    expect(r.io.out()).toContain('set-identity server --crl');

    expectOpensslVerifies(join(dir, 'crl.pem'), join(dir, 'ca.crt.pem'));
    const text = crlText(dir);
    expect(text).toContain('Issuer: CN = RestPipe CA');
    expect(text).toMatch(/X509v3 CRL Number: *\n *1\n/);
    expect(text).toContain(`Serial Number: ${serial}`);
    expect(text).toMatch(/CRL Reason Code: *\n *Key Compromise/);
    expect(text).toContain('X509v3 Authority Key Identifier');
    // Next update 30 days after this update (+5 minutes: thisUpdate is back-dated).
    const last = Date.parse(/Last Update: (.+)/.exec(text)?.[1] ?? '');
    const next = Date.parse(/Next Update: (.+)/.exec(text)?.[1] ?? '');
    expect(next - last).toBe(30 * DAY + 5 * 60_000);

    const state = JSON.parse(readFileSync(join(dir, 'revoked.json'), 'utf8'));
    expect(state).toMatchObject({ version: 1, crlNumber: 1, revoked: [{ serial, commonName: 'branch-01', reason: 'keyCompromise' }] });
  });

  it('keeps earlier revocations when revoking another, by certificate or by serial', { timeout: SLOW }, async () => {
    const dir = caFolder(f.ca, { 'client.crt.pem': f.client.certPem, 'server.crt.pem': f.server.certPem });
    const clientSerial = serialOf(join(dir, 'client.crt.pem'));
    const serverSerial = serialOf(join(dir, 'server.crt.pem'));
    expect((await run(['revoke', '--cert', 'client.crt.pem', '--ca-dir', '.'], dir)).code).toBe(0);
    const second = await run(
      [
        'revoke',
        '--serial',
        serverSerial.toLowerCase(),
        '--reason',
        'superseded',
        '--ca-key',
        'ca.key.pem',
        '--ca-cert',
        'ca.crt.pem',
        '--next-update-days',
        '7',
      ],
      dir,
    );
    expect(second.code, second.io.err()).toBe(0);

    expectOpensslVerifies(join(dir, 'crl.pem'), join(dir, 'ca.crt.pem'));
    const text = crlText(dir);
    expect(text).toContain(`Serial Number: ${clientSerial}`);
    expect(text).toContain(`Serial Number: ${serverSerial}`);
    expect(text).toMatch(/Superseded/);
    expect(text).toMatch(/X509v3 CRL Number: *\n *2\n/);
    // "unspecified" writes no reason code: one reason code for two entries.
    expect(text.match(/CRL Reason Code/g)).toHaveLength(1);
    const last = Date.parse(/Last Update: (.+)/.exec(text)?.[1] ?? '');
    const next = Date.parse(/Next Update: (.+)/.exec(text)?.[1] ?? '');
    expect(next - last).toBe(7 * DAY + 5 * 60_000);

    // Revoking the same certificate again changes nothing.
    const before = snapshot(dir);
    const again = await run(['revoke', '--cert', 'client.crt.pem', '--ca-dir', '.'], dir);
    expect(again.code).toBe(0);
    expect(again.io.out()).toContain('already revoked');
    expect(snapshot(dir)).toEqual(before);
  });

  it('signs the CRL of an EC CA with ECDSA, which openssl verifies', { timeout: SLOW }, async () => {
    const dir = caFolder(ecCa, { 'ec.crt.pem': ecClient.certPem });
    const r = await run(['revoke', '--cert', 'ec.crt.pem', '--reason', 'cessationOfOperation', '--ca-dir', '.'], dir);
    expect(r.code, r.io.err()).toBe(0);
    expectOpensslVerifies(join(dir, 'crl.pem'), join(dir, 'ca.crt.pem'));
    const text = crlText(dir);
    expect(text).toContain('Signature Algorithm: ecdsa-with-SHA256');
    expect(text).toContain(`Serial Number: ${serialOf(join(dir, 'ec.crt.pem'))}`);
    expect(text).toContain('Cessation Of Operation');
  });
});

describe('restpipe-certs crl', () => {
  it('re-issues with the next CRL number and new dates, and lists what is revoked', { timeout: SLOW }, async () => {
    const dir = caFolder(f.ca, { 'client.crt.pem': f.client.certPem });
    // The first run writes an empty list.
    const first = await run(['crl', '--ca-dir', '.'], dir);
    expect(first.code, first.io.err()).toBe(0);
    expect(first.io.out()).toContain('issued CRL number 1 of CN=RestPipe CA');
    expect(first.io.out()).toContain('revoked: none');
    expectOpensslVerifies(join(dir, 'crl.pem'), join(dir, 'ca.crt.pem'));
    expect(crlText(dir)).toContain('No Revoked Certificates');

    expect((await run(['revoke', '--cert', 'client.crt.pem', '--reason', 'affiliationChanged', '--ca-dir', '.'], dir)).code).toBe(0);
    const before = crlText(dir);
    const again = await run(['crl', '--ca-dir', '.', '--next-update-days', '10'], dir);
    expect(again.code, again.io.err()).toBe(0);
    const serial = serialOf(join(dir, 'client.crt.pem'));
    expect(again.io.out()).toContain('issued CRL number 3 of CN=RestPipe CA');
    expect(again.io.out()).toMatch(new RegExp(`revoked: 1\\n  ${serial}  branch-01  \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z  affiliationChanged\\n`));
    const after = crlText(dir);
    expect(after).toMatch(/X509v3 CRL Number: *\n *3\n/);
    expect(after).toContain(`Serial Number: ${serial}`);
    expect(/Next Update: (.+)/.exec(after)?.[1]).not.toBe(/Next Update: (.+)/.exec(before)?.[1]);
    expectOpensslVerifies(join(dir, 'crl.pem'), join(dir, 'ca.crt.pem'));
  });

  it('moves thisUpdate and nextUpdate forward (library, with a clock)', { timeout: SLOW }, async () => {
    const dir = caFolder();
    const t0 = new Date('2030-01-01T00:00:00Z');
    await revokeCertificate(f.ca, dir, { certPem: f.client.certPem }, { now: t0, reason: 'keyCompromise' });
    const first = parseCrls(readFileSync(join(dir, 'crl.pem'), 'utf8'))[0];
    const t1 = new Date(t0.getTime() + 20 * DAY);
    const r = await reissueCrl(f.ca, dir, { now: t1, nextUpdateDays: 30 });
    const second = parseCrls(r.crlPem ?? '')[0];
    expect(first?.crlNumber).toBe(1);
    expect(second?.crlNumber).toBe(2);
    expect(first?.thisUpdate.toISOString()).toBe('2029-12-31T23:55:00.000Z');
    expect(second?.thisUpdate.toISOString()).toBe('2030-01-20T23:55:00.000Z');
    expect(second?.nextUpdate?.toISOString()).toBe('2030-02-20T00:00:00.000Z');
    expect(second?.revoked).toEqual(first?.revoked);
    expect(second?.revoked[0]).toMatchObject({ reason: 'keyCompromise', revokedAt: t0 });
  });

  it('refuses a state file of another CA, a malformed one, or crl.pem without it, and writes nothing', { timeout: SLOW }, async () => {
    const dir = caFolder();
    await reissueCrl(f.otherCa, dir);
    await expect(reissueCrl(f.ca, dir)).rejects.toBeInstanceOf(WrongCaError);
    writeFileSync(join(dir, 'revoked.json'), '{"version": 1, "ca": "x", "crlNumber": -1, "revoked": []}');
    await expect(reissueCrl(f.ca, dir)).rejects.toBeInstanceOf(BadStateError);
    const lost = caFolder();
    copyFileSync(join(dir, 'crl.pem'), join(lost, 'crl.pem'));
    const before = snapshot(lost);
    await expect(revokeCertificate(f.ca, lost, { certPem: f.client.certPem })).rejects.toThrow(/revoked.json from a backup/);
    expect(snapshot(lost)).toEqual(before);
  });
});

describe('verifyCrl', () => {
  async function crlOf(ca: Identity, opts: { now?: Date; nextUpdateDays?: number } = {}): Promise<string> {
    return createCrl(ca, [{ serialHex: '0A1B', revokedAt: new Date('2030-01-01T00:00:00Z'), reason: 'keyCompromise' }], { crlNumber: 7, ...opts });
  }

  it('reads the issuer, dates, number and entries of a CRL signed by the CA', { timeout: SLOW }, async () => {
    const [crl] = await verifyCrl(await crlOf(f.ca), f.ca.certPem);
    expect(crl).toMatchObject({ issuer: 'CN=RestPipe CA', signedBy: 'CN=RestPipe CA', crlNumber: 7, stale: false });
    expect(crl?.revoked).toEqual([{ serialHex: '0A1B', revokedAt: new Date('2030-01-01T00:00:00Z'), reason: 'keyCompromise' }]);
    expect(crl?.nextUpdate && crl.nextUpdate.getTime() - Date.now()).toBeGreaterThan(29 * DAY);
  });

  it('refuses a CRL from another CA, or with a broken signature', { timeout: SLOW }, async () => {
    await expect(verifyCrl(await crlOf(f.otherCa), f.ca.certPem)).rejects.toBeInstanceOf(WrongCaError);
    const pem = await crlOf(f.ca);
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 1;
    const tampered = `-----BEGIN X509 CRL-----\n${der.toString('base64')}\n-----END X509 CRL-----\n`;
    expect(openssl(['crl', '-CAfile', '/dev/stdin', '-noout'], tampered).status).not.toBe(0);
    await expect(verifyCrl(tampered, f.ca.certPem)).rejects.toThrow(/was not signed by the given CA/);
  });

  it('refuses a stale CRL unless allowStale, and a CRL from the future', { timeout: SLOW }, async () => {
    const stale = await crlOf(f.ca, { now: new Date(Date.now() - 40 * DAY), nextUpdateDays: 30 });
    await expect(verifyCrl(stale, f.ca.certPem)).rejects.toBeInstanceOf(CrlStaleError);
    const [read] = await verifyCrl(stale, f.ca.certPem, { allowStale: true });
    expect(read?.stale).toBe(true);
    const future = await crlOf(f.ca, { now: new Date(Date.now() + 2 * DAY) });
    await expect(verifyCrl(future, f.ca.certPem)).rejects.toBeInstanceOf(NotYetValidError);
  });

  it('checks each CRL of a bundle against a CA bundle, RSA and EC', { timeout: SLOW }, async () => {
    const crls = await verifyCrl((await crlOf(f.ca)) + (await crlOf(ecCa)), f.ca.certPem + ecCa.certPem);
    expect(crls.map((c) => c.signedBy)).toEqual(['CN=RestPipe CA', 'CN=EC CA']);
  });

  it('findRevocation matches the issuer and the serial', { timeout: SLOW }, async () => {
    const dir = caFolder();
    const r = await revokeCertificate(f.ca, dir, { certPem: f.client.certPem }, { reason: 'superseded' });
    const crls = parseCrls(r.crlPem ?? '');
    expect(findRevocation(crls, f.client.certPem)?.reason).toBe('superseded');
    expect(findRevocation(crls, f.server.certPem)).toBeUndefined();
    expect(findRevocation(crls, f.otherClient.certPem)).toBeUndefined(); // same CN, other CA
  });
});

describe('set-identity server --crl', () => {
  /** A folder with the CA, the server identity and a CRL revoking the fixture client. */
  async function issued(): Promise<string> {
    const dir = caFolder(f.ca, {
      'server.key.pem': f.server.keyPem,
      'server.crt.pem': f.server.certPem,
      'client.crt.pem': f.client.certPem,
    });
    await revokeCertificate(f.ca, dir, { certPem: f.client.certPem });
    return dir;
  }
  const full = ['set-identity', 'server', '--key', 'server.key.pem', '--cert', 'server.crt.pem', '--ca', 'ca.crt.pem'];

  it('installs crl.pem with the identity, then alone, refusing an older CRL without --force', { timeout: SLOW }, async () => {
    const dir = await issued();
    const r = await run([...full, '--crl', 'crl.pem', '--dir', 'node'], dir);
    expect(r.code, r.io.err()).toBe(0);
    expect(r.io.err()).toBe('');
    expect(readFileSync(join(dir, 'node', 'crl.pem'), 'utf8')).toBe(readFileSync(join(dir, 'crl.pem'), 'utf8'));
    expect(snapshot(join(dir, 'node'))['crl.pem']).toMatch(/^644:/);
    copyFileSync(join(dir, 'crl.pem'), join(dir, 'crl-1.pem'));

    // A re-issued CRL alone, into $RP_SERVER_CERT_PATH, checked against the installed CA.
    await reissueCrl(f.ca, dir);
    const io = captureIo(dir, { RP_SERVER_CERT_PATH: join(dir, 'node') });
    expect(await main(['set-identity', 'server', '--crl', 'crl.pem'], io), io.err()).toBe(0);
    expect(io.out()).toContain('CRL number 2 of CN=RestPipe CA, 1 revoked');
    expect(io.out()).toContain('SIGHUP');
    expect(readFileSync(join(dir, 'node', 'crl.pem'), 'utf8')).toBe(readFileSync(join(dir, 'crl.pem'), 'utf8'));

    // Going back to CRL number 1 needs --force.
    const before = snapshot(join(dir, 'node'));
    const back = await run(['set-identity', 'server', '--crl', 'crl-1.pem', '--dir', 'node'], dir);
    expect(back.code).toBe(1);
    expect(back.io.err()).toMatch(/^restpipe-certs: RP_CERTS_EXISTS: .*newer CRL .*number 2.*number 1.*--force to go back\n$/);
    expect(snapshot(join(dir, 'node'))).toEqual(before);
    expect((await run(['set-identity', 'server', '--crl', 'crl-1.pem', '--dir', 'node', '--force'], dir)).code).toBe(0);
    expect(readFileSync(join(dir, 'node', 'crl.pem'), 'utf8')).toBe(readFileSync(join(dir, 'crl-1.pem'), 'utf8'));
  });

  it('warns about a stale CRL but installs it', { timeout: SLOW }, async () => {
    const dir = await issued();
    const stale = await createCrl(f.ca, [], { crlNumber: 5, now: new Date(Date.now() - 40 * DAY), nextUpdateDays: 30 });
    writeFileSync(join(dir, 'stale.pem'), stale);
    const r = await run([...full, '--crl', 'stale.pem', '--dir', 'node'], dir);
    expect(r.code, r.io.err()).toBe(0);
    expect(r.io.err()).toMatch(/^restpipe-certs: warning: stale\.pem \(issuer CN=RestPipe CA\) is past its next update .*refuses every client/);
    expect(readFileSync(join(dir, 'node', 'crl.pem'), 'utf8')).toBe(stale);
  });

  it('accepts a CA bundle for --ca (CA rotation) with one CRL per CA, and refuses a bundle missing one', { timeout: SLOW }, async () => {
    const dir = await issued();
    const newCaDir = caFolder(ecCa);
    await reissueCrl(ecCa, newCaDir);
    writeFileSync(join(dir, 'bundle.pem'), f.ca.certPem + ecCa.certPem);
    writeFileSync(join(dir, 'crls.pem'), readFileSync(join(dir, 'crl.pem'), 'utf8') + readFileSync(join(newCaDir, 'crl.pem'), 'utf8'));
    const fullBundle = ['set-identity', 'server', '--key', 'server.key.pem', '--cert', 'server.crt.pem', '--ca', 'bundle.pem'];

    const missing = await run([...fullBundle, '--crl', 'crl.pem', '--dir', 'node'], dir);
    expect(missing.code).toBe(1);
    expect(missing.io.err()).toMatch(/^restpipe-certs: RP_CERTS_WRONG_CA: the CRL has no CRL from the CA CN=EC CA: .*UNABLE_TO_GET_CRL/);
    expect(snapshot(dir)['node/']).toBeUndefined();

    const r = await run([...fullBundle, '--crl', 'crls.pem', '--dir', 'node'], dir);
    expect(r.code, r.io.err()).toBe(0);
    expect(readFileSync(join(dir, 'node', 'ca.crt.pem'), 'utf8')).toBe(f.ca.certPem + ecCa.certPem);
    expect(r.io.out()).toMatch(/CRL number 1 of CN=RestPipe CA, 1 revoked, next update \S+; CRL number 1 of CN=EC CA, 0 revoked/);
    // The installed bundle holds both CAs: a client of either still passes set-identity.
    const client = await run(['set-identity', 'client', '--key', 'ec.key.pem', '--cert', 'ec.crt.pem', '--ca', 'bundle.pem', '--dir', 'c'], writeEc(dir));
    expect(client.code, client.io.err()).toBe(0);
  });

  it('refuses a CRL that revokes the server certificate itself, and --crl for a client', { timeout: SLOW }, async () => {
    const dir = await issued();
    await revokeCertificate(f.ca, dir, { certPem: f.server.certPem });
    const r = await run([...full, '--crl', 'crl.pem', '--dir', 'node'], dir);
    expect(r.code).toBe(1);
    expect(r.io.err()).toMatch(/^restpipe-certs: RP_CERTS_REVOKED: the server certificate \(serial [0-9A-F]+\) is revoked/);
    const c = await run(['set-identity', 'client', '--crl', 'crl.pem', '--dir', 'node'], dir);
    expect(c.code).toBe(2);
    expect(c.io.err()).toMatch(/RP_CERTS_USAGE: .*--crl is for the server/);
    expect(snapshot(dir)['node/']).toBeUndefined();
  });
});

function writeEc(dir: string): string {
  writePems(dir, { 'ec.key.pem': ecClient.keyPem, 'ec.crt.pem': ecClient.certPem });
  return dir;
}

describe('inspect and check-crl', () => {
  it('inspect shows a CRL and whether certificates are revoked by it', { timeout: SLOW }, async () => {
    const dir = caFolder(f.ca, { 'client.crt.pem': f.client.certPem, 'server.crt.pem': f.server.certPem, 'other.crt.pem': f.otherClient.certPem });
    await revokeCertificate(f.ca, dir, { certPem: f.client.certPem }, { reason: 'keyCompromise' });
    const serial = serialOf(join(dir, 'client.crt.pem'));
    const crl = await run(['inspect', 'crl.pem'], dir);
    expect(crl.code, crl.io.err()).toBe(0);
    expect(crl.io.out()).toMatch(/^CRL issuer: +CN=RestPipe CA\nThis update: +\S+\nNext update: +\S+\nCRL number: +1\nRevoked: +1\n/);
    expect(crl.io.out()).toContain(`  ${serial}  `);

    const certs = await run(['inspect', '--crl', 'crl.pem', 'client.crt.pem', 'server.crt.pem', 'other.crt.pem'], dir);
    expect(certs.code, certs.io.err()).toBe(0);
    const sections = certs.io.out().split(/^== /m).slice(1);
    expect(sections[0]).toMatch(/Revoked: +YES, since \S+ \(keyCompromise\)/);
    expect(sections[1]).toMatch(/Revoked: +no\n/);
    expect(sections[2]).toMatch(/Revoked: +unknown: crl\.pem has no CRL from CN=Other CA/);

    const json = await run(['inspect', '--json', '--crl', 'crl.pem', 'client.crt.pem', 'crl.pem'], dir);
    const parsed = JSON.parse(json.io.out());
    expect(parsed[0].revocation).toMatchObject({ revoked: true, reason: 'keyCompromise' });
    expect(parsed[1]).toMatchObject({ kind: 'crl', issuer: 'CN=RestPipe CA', crlNumber: 1, revoked: [{ serialHex: serial, reason: 'keyCompromise' }] });
  });

  it('check-crl passes a fresh CRL and fails one about to go stale', { timeout: SLOW }, async () => {
    const dir = caFolder();
    await reissueCrl(f.ca, dir, { nextUpdateDays: 10 });
    const ok = await run(['check-crl', '--crl', 'crl.pem', '--ca', 'ca.crt.pem', '--min-days', '9'], dir);
    expect(ok.code, ok.io.err()).toBe(0);
    expect(ok.io.out()).toMatch(/^ok: CRL number 1 of CN=RestPipe CA, signed by the CA, 0 revoked, next update /);
    const soon = await run(['check-crl', '--crl', 'crl.pem', '--ca', 'ca.crt.pem', '--min-days', '11'], dir);
    expect(soon.code).toBe(1);
    expect(soon.io.err()).toMatch(/^restpipe-certs: RP_CERTS_CRL_STALE: crl\.pem .*about to go stale.*--min-days 11/);
  });
});
