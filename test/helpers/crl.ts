/**
 * Revocation lists made by real openssl (`openssl ca -revoke` and
 * `openssl ca -gencrl` with a minimal config in a temp folder), signed by a
 * CA identity from the certs-tool, and openssl's own reading of a
 * certificate (serial, fingerprint) to compare with.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Identity } from '@restpipe/certs-tool';
import { tempDir } from './node-process.js';

const run = promisify(execFile);

/** Runs openssl; resolves with stdout, rejects with its stderr in the message. */
export async function openssl(args: string[], input?: string): Promise<string> {
  const child = run('openssl', args, { encoding: 'utf8', maxBuffer: 4 * 1024 * 1024 });
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  try {
    return (await child).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args.join(' ')}: ${e.stderr ?? e.message}`);
  }
}

/** openssl's time format for `-crl_lastupdate` / `-crl_nextupdate`: YYYYMMDDHHMMSSZ. */
function opensslTime(date: Date): string {
  return `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

export interface CrlOptions {
  /** Certificates (PEM) to list as revoked. */
  revoke?: readonly (string | Buffer)[];
  /** @default now minus a minute */
  lastUpdate?: Date;
  /** @default seven days after lastUpdate */
  nextUpdate?: Date;
}

/** A PEM CRL signed by `ca`, listing `revoke`, made by `openssl ca -gencrl`. */
export async function makeCrl(ca: Identity, opts: CrlOptions = {}): Promise<string> {
  const dir = await tempDir('restpipe-crl-');
  const file = (name: string) => join(dir, name);
  await writeFile(file('ca.key'), ca.keyPem);
  await writeFile(file('ca.crt'), ca.certPem);
  await writeFile(file('index.txt'), '');
  await writeFile(file('crlnumber'), '1000\n');
  await writeFile(
    file('ca.cnf'),
    [
      '[ca]',
      'default_ca = test_ca',
      '[test_ca]',
      `database = ${file('index.txt')}`,
      `crlnumber = ${file('crlnumber')}`,
      `certificate = ${file('ca.crt')}`,
      `private_key = ${file('ca.key')}`,
      'default_md = sha256',
      'default_crl_days = 7',
      '',
    ].join('\n'),
  );
  for (const [i, cert] of (opts.revoke ?? []).entries()) {
    await writeFile(file(`revoke-${i}.crt`), cert);
    await openssl(['ca', '-config', file('ca.cnf'), '-revoke', file(`revoke-${i}.crt`)]);
  }
  const last = opts.lastUpdate ?? new Date(Date.now() - 60_000);
  const next = opts.nextUpdate ?? new Date(last.getTime() + 7 * 24 * 3600_000);
  await openssl([
    'ca',
    '-config',
    file('ca.cnf'),
    '-gencrl',
    '-crl_lastupdate',
    opensslTime(last),
    '-crl_nextupdate',
    opensslTime(next),
    '-out',
    file('crl.pem'),
  ]);
  return readFile(file('crl.pem'), 'utf8');
}

/** openssl's view of a certificate: serial (hex, upper case) and SHA-256 fingerprint (colon hex). */
export async function opensslCertInfo(certPem: string): Promise<{ serial: string; fingerprint: string }> {
  const out = await openssl(['x509', '-noout', '-serial', '-fingerprint', '-sha256'], certPem);
  const serial = /serial=([0-9A-F]+)/i.exec(out)?.[1];
  const fingerprint = /Fingerprint=([0-9A-F:]+)/i.exec(out)?.[1];
  if (!serial || !fingerprint) throw new Error(`unexpected openssl x509 output: ${out}`);
  return { serial: serial.toUpperCase(), fingerprint: fingerprint.toUpperCase() };
}
