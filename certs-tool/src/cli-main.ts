/**
 * The `restpipe-certs` command line: argument parsing, help, file reading and messages.
 * The work is done by the library; `main` returns the exit code instead of exiting so tests
 * can run it in-process.
 *
 * Exit codes: 0 success, 1 validation or I/O error (or a bug), 2 usage error. Every failure is
 * one line on stderr, `restpipe-certs: <code>: <message>`, so scripts can tell them apart.
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_NEXT_UPDATE_DAYS, REVOCATION_REASONS, checkRevocationReason, crlCoversIssuer, findRevocation, parseCrls, verifyCrl } from './crl.js';
import type { CrlInfo, VerifiedCrl } from './crl.js';
import { describeCertificate, formatCertificateInfo, formatCrlInfo } from './describe.js';
import { CertsToolError, CrlStaleError, InternalError, MissingFileError, NotPemError, UsageError, exitCodeFor } from './errors.js';
import { checkDestination, checkFileName } from './files.js';
import { DEFAULT_CA_DAYS, DEFAULT_CA_NAME, DEFAULT_LEAF_DAYS, createCa, createClientIdentity, createServerIdentity, renewIdentity } from './identities.js';
import type { Identity } from './identities.js';
import {
  CERT_PATH_ENV,
  DEFAULT_IDENTITY_DIR,
  IDENTITY_FILES,
  SERVER_CRL_FILE,
  installCrl,
  installIdentity,
  resolveIdentityDir,
  writeIdentity,
} from './install.js';
import { DEFAULT_KEY_BITS, EC_CURVE, checkKeyType } from './keys.js';
import type { KeyType } from './keys.js';
import { pemBlocks, parseCertificates, parsePrivateKey } from './pem.js';
import { REVOCATION_FILES, reissueCrl, revokeCertificate } from './revocation.js';
import type { RevocationEntry } from './revocation.js';
import type { Role } from './validate.js';

/** Where the CLI reads and writes; `processIo()` for the real process. */
export interface CliIo {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  env: Record<string, string | undefined>;
  /** Relative paths are resolved against this directory. */
  cwd: string;
}

/** The real process's streams, environment and working directory. */
export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() };
}

const PROG = 'restpipe-certs';
/** Default output folder of the create commands. */
export const DEFAULT_OUT_DIR = 'restpipe-identities';
/** How long key generation may take before the CLI starts showing progress. */
const PROGRESS_AFTER_MS = 1000;

type OptionSpec = { type: 'string' | 'boolean'; multiple?: boolean; short?: string };
type Values = Record<string, string | boolean | string[] | undefined>;

interface Command {
  name: string;
  summary: string;
  help: string;
  options: Record<string, OptionSpec>;
  positionals: boolean;
  run(values: Values, positionals: string[], io: CliIo): Promise<number>;
}

// ---------------------------------------------------------------------------------------------
// Help texts

const CA_OPTIONS_HELP = `  --ca-dir DIR        folder holding ca.key.pem and ca.crt.pem (default: the --out folder)
  --ca-key FILE       the CA private key (with --ca-cert, instead of --ca-dir)
  --ca-cert FILE      the CA certificate`;

const KEY_OPTIONS_HELP = `  --key-type TYPE     rsa or ec (EC ${EC_CURVE}: cheaper TLS handshakes) (default: rsa)
  --bits N            RSA key size (default: ${DEFAULT_KEY_BITS})`;

const COMMON_CREATE_HELP = `  --out, -o DIR       output folder, created mode 0700 if missing (default: ./${DEFAULT_OUT_DIR})
  --days N            validity in days (default: ${DEFAULT_LEAF_DAYS}, never past the CA's expiry)
${KEY_OPTIONS_HELP}
  --force, -f         replace existing output files`;

const REVOCATION_CA_HELP = `  --ca-dir DIR        folder holding ca.key.pem and ca.crt.pem; ${REVOCATION_FILES.state} and ${REVOCATION_FILES.crl}
                      are kept there (default: ./${DEFAULT_OUT_DIR})
  --ca-key FILE       the CA private key (with --ca-cert, instead of --ca-dir; the
  --ca-cert FILE      list is kept beside --ca-cert)
  --next-update-days N
                      the CRL's next update, days from now (default: ${DEFAULT_NEXT_UPDATE_DAYS}); re-issue
                      it with '${PROG} crl' before then`;

const MAIN_HELP = `Usage: ${PROG} <command> [options]

Create and install the mutual-TLS identities of RestPipe nodes.

Commands:
  create-ca          create a CA: ca.key.pem + ca.crt.pem
  create-server      create a server identity signed by the CA
  create-client      create a client identity signed by the CA
  renew              re-issue an identity: same names, new key, serial and validity
  revoke             revoke a certificate: add it to the CA's list and write crl.pem
  crl                re-issue the CA's CRL (do it before its next update) and list it
  check-crl          check a CRL against its CA: signature, dates (for monitoring)
  set-identity       validate an identity (and a CRL) and install it for a node
  inspect            show a certificate's names, usages, validity and fingerprint, or a CRL
  help [command]     show help

Typical use:
  ${PROG} create-ca
  ${PROG} create-server --name pipe.example.com --dns pipe.example.com --ip 203.0.113.7
  ${PROG} create-client --name branch-01
  ${PROG} set-identity server --key restpipe-identities/server.key.pem \\
      --cert restpipe-identities/server.crt.pem --ca restpipe-identities/ca.crt.pem

Run '${PROG} <command> --help' for a command's options; '${PROG} --version' prints the version.
Exit codes: 0 success, 1 invalid input or failed write, 2 usage error.
Errors are one line on stderr: ${PROG}: RP_CERTS_<CODE>: <message>
`;

// ---------------------------------------------------------------------------------------------
// Helpers

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

function list(values: Values, name: string): string[] {
  const v = values[name];
  const items = Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
  // Accept both `--dns a --dns b` and `--dns a,b`.
  return items
    .flatMap((s) => s.split(','))
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function required(values: Values, name: string, command: string): string {
  const v = str(values, name);
  if (v === undefined || v === '') throw new UsageError(`${command}: --${name} is required`);
  return v;
}

function positiveInt(values: Values, name: string): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v) || Number(v) < 1) {
    throw new UsageError(`--${name} must be a positive whole number, got ${JSON.stringify(v)}`);
  }
  return Number(v);
}

async function readInput(io: CliIo, path: string, what: string): Promise<string> {
  const abs = resolve(io.cwd, path);
  try {
    return await readFile(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'permission denied' : String(code ?? err);
    throw new MissingFileError(`cannot read ${what} ${path}: ${reason}`, { cause: err });
  }
}

/**
 * Run a slow step (key generation), and if it takes longer than a second tell the user on
 * stderr, with a dot per further second, so a 4096-bit key does not look like a hang.
 */
async function withProgress<T>(io: CliIo, message: string, work: Promise<T>): Promise<T> {
  let shown = false;
  const timer = setInterval(() => {
    io.stderr.write(shown ? '.' : `${PROG}: ${message}, please wait.`);
    shown = true;
  }, PROGRESS_AFTER_MS);
  try {
    return await work;
  } finally {
    clearInterval(timer);
    if (shown) io.stderr.write(' done\n');
  }
}

function day(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** A client name made safe as a file name: `ACME branch #1` → `ACME_branch__1`. */
export function fileNameFor(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');
  return safe === '' ? 'client' : safe;
}

function keyTypeOption(values: Values): KeyType | undefined {
  const v = str(values, 'key-type');
  return v === undefined ? undefined : checkKeyType(v);
}

function keyDescription(keyType: KeyType | undefined, bits: number | undefined): string {
  return keyType === 'ec' ? `an EC ${EC_CURVE} key` : `a ${bits ?? DEFAULT_KEY_BITS}-bit RSA key`;
}

function nextUpdateDaysOption(values: Values): number | undefined {
  return positiveInt(values, 'next-update-days');
}

/** The CA and the folder its revocation list lives in (--ca-dir, or the folder of --ca-cert). */
async function loadCaWithDir(values: Values, io: CliIo, defaultDir: string): Promise<{ ca: Identity; dir: string }> {
  const ca = await loadCa(values, io, defaultDir);
  const certPath = str(values, 'ca-cert');
  const dir = certPath !== undefined ? dirname(resolve(io.cwd, certPath)) : resolve(io.cwd, str(values, 'ca-dir') ?? defaultDir);
  return { ca, dir };
}

async function loadCa(values: Values, io: CliIo, outDir: string): Promise<Identity> {
  const keyPath = str(values, 'ca-key');
  const certPath = str(values, 'ca-cert');
  if ((keyPath === undefined) !== (certPath === undefined)) {
    throw new UsageError('--ca-key and --ca-cert go together; or use --ca-dir');
  }
  if (keyPath !== undefined && str(values, 'ca-dir') !== undefined) {
    throw new UsageError('use either --ca-dir or --ca-key/--ca-cert, not both');
  }
  const caDir = str(values, 'ca-dir') ?? outDir;
  const kp = keyPath ?? join(caDir, 'ca.key.pem');
  const cp = certPath ?? join(caDir, 'ca.crt.pem');
  const keyPem = await readInput(io, kp, 'CA key');
  const certPem = await readInput(io, cp, 'CA certificate');
  parsePrivateKey(keyPem, kp);
  parseCertificates(certPem, cp);
  return { keyPem, certPem };
}

function printWritten(io: CliIo, paths: { key: string; cert: string }): void {
  io.stdout.write(`  private key: ${paths.key} (mode 0600, keep it secret)\n`);
  io.stdout.write(`  certificate: ${paths.cert}\n`);
}

// ---------------------------------------------------------------------------------------------
// Commands

const createCaCommand: Command = {
  name: 'create-ca',
  summary: 'create a CA',
  help: `Usage: ${PROG} create-ca [--out DIR] [--name CN] [--days N] [--key-type rsa|ec] [--bits N] [--force]

Create a certificate authority: a private key and a self-signed certificate
(basicConstraints CA:TRUE, keyUsage keyCertSign + cRLSign). Writes DIR/ca.key.pem
(mode 0600) and DIR/ca.crt.pem. Keep ca.key.pem off the nodes; every node gets
ca.crt.pem.

Options:
  --out, -o DIR       output folder, created mode 0700 if missing (default: ./${DEFAULT_OUT_DIR})
  --name CN           the CA's common name (default: "${DEFAULT_CA_NAME}")
  --days N            validity in days (default: ${DEFAULT_CA_DAYS})
${KEY_OPTIONS_HELP}
  --force, -f         replace existing output files
  --help, -h          show this help
`,
  options: {
    out: { type: 'string', short: 'o' },
    name: { type: 'string' },
    days: { type: 'string' },
    bits: { type: 'string' },
    'key-type': { type: 'string' },
    force: { type: 'boolean', short: 'f' },
  },
  positionals: false,
  async run(values, _positionals, io) {
    const out = resolve(io.cwd, str(values, 'out') ?? DEFAULT_OUT_DIR);
    const force = values['force'] === true;
    const opts = {
      commonName: str(values, 'name') ?? DEFAULT_CA_NAME,
      days: positiveInt(values, 'days'),
      keyBits: positiveInt(values, 'bits'),
      keyType: keyTypeOption(values),
    };
    await checkDestination(out, ['ca.key.pem', 'ca.crt.pem'], force);
    const ca = await withProgress(io, `generating ${keyDescription(opts.keyType, opts.keyBits)}`, createCa(opts));
    const paths = await writeIdentity(out, 'ca', ca, { force });
    const info = describeCertificate(ca.certPem);
    io.stdout.write(`created CA "${info.commonName ?? opts.commonName}", valid until ${day(info.notAfter)}\n`);
    printWritten(io, paths);
    return 0;
  },
};

const createServerCommand: Command = {
  name: 'create-server',
  summary: 'create a server identity',
  help: `Usage: ${PROG} create-server --name CN [--dns NAME]... [--ip ADDR]... [options]

Create a server identity signed by the CA: keyUsage digitalSignature + keyEncipherment,
extended key usage serverAuth, and a subjectAltName with every DNS name and IP address
clients use to reach the server (RP_CLIENT_TARGET_HOSTNAME on the clients must be one
of them). Without --dns and --ip the SAN is the --name. Writes DIR/server.key.pem
(mode 0600) and DIR/server.crt.pem.

Options:
  --name CN           the server's common name, e.g. its host name (required)
  --dns NAME          a DNS name of the server; repeat or comma-separate for several
  --ip ADDR           an IPv4/IPv6 address of the server; repeat or comma-separate
  --file-name BASE    output file base name (default: server)
${CA_OPTIONS_HELP}
${COMMON_CREATE_HELP}
  --help, -h          show this help
`,
  options: {
    name: { type: 'string' },
    dns: { type: 'string', multiple: true },
    ip: { type: 'string', multiple: true },
    'file-name': { type: 'string' },
    'ca-dir': { type: 'string' },
    'ca-key': { type: 'string' },
    'ca-cert': { type: 'string' },
    out: { type: 'string', short: 'o' },
    days: { type: 'string' },
    bits: { type: 'string' },
    'key-type': { type: 'string' },
    force: { type: 'boolean', short: 'f' },
  },
  positionals: false,
  async run(values, _positionals, io) {
    const name = required(values, 'name', 'create-server');
    const out = resolve(io.cwd, str(values, 'out') ?? DEFAULT_OUT_DIR);
    const base = str(values, 'file-name') ?? 'server';
    checkFileName(base, '--file-name');
    const force = values['force'] === true;
    const opts = {
      commonName: name,
      dnsNames: list(values, 'dns'),
      ipAddresses: list(values, 'ip'),
      days: positiveInt(values, 'days'),
      keyBits: positiveInt(values, 'bits'),
      keyType: keyTypeOption(values),
    };
    const ca = await loadCa(values, io, out);
    await checkDestination(out, [`${base}.key.pem`, `${base}.crt.pem`], force);
    const id = await withProgress(io, `generating ${keyDescription(opts.keyType, opts.keyBits)}`, createServerIdentity(ca, opts));
    const paths = await writeIdentity(out, base, id, { force });
    const info = describeCertificate(id.certPem);
    io.stdout.write(`created server identity "${name}" (${info.sans.join(', ')}), valid until ${day(info.notAfter)}\n`);
    printWritten(io, paths);
    return 0;
  },
};

const createClientCommand: Command = {
  name: 'create-client',
  summary: 'create a client identity',
  help: `Usage: ${PROG} create-client --name NAME [options]

Create a client identity signed by the CA: the certificate's CN is NAME, the name the
server knows the client by and routes to (/client/NAME/...); extended key usage
clientAuth only. Writes DIR/NAME.key.pem (mode 0600) and DIR/NAME.crt.pem, with
characters other than letters, digits, '.', '_' and '-' in NAME replaced by '_'.

Options:
  --name NAME         the client's name (required; no "/")
  --file-name BASE    output file base name (default: NAME)
${CA_OPTIONS_HELP}
${COMMON_CREATE_HELP}
  --help, -h          show this help
`,
  options: {
    name: { type: 'string' },
    'file-name': { type: 'string' },
    'ca-dir': { type: 'string' },
    'ca-key': { type: 'string' },
    'ca-cert': { type: 'string' },
    out: { type: 'string', short: 'o' },
    days: { type: 'string' },
    bits: { type: 'string' },
    'key-type': { type: 'string' },
    force: { type: 'boolean', short: 'f' },
  },
  positionals: false,
  async run(values, _positionals, io) {
    const name = required(values, 'name', 'create-client');
    const out = resolve(io.cwd, str(values, 'out') ?? DEFAULT_OUT_DIR);
    const base = str(values, 'file-name') ?? fileNameFor(name);
    checkFileName(base, '--file-name');
    const force = values['force'] === true;
    const opts = { commonName: name, days: positiveInt(values, 'days'), keyBits: positiveInt(values, 'bits'), keyType: keyTypeOption(values) };
    const ca = await loadCa(values, io, out);
    await checkDestination(out, [`${base}.key.pem`, `${base}.crt.pem`], force);
    const id = await withProgress(io, `generating ${keyDescription(opts.keyType, opts.keyBits)}`, createClientIdentity(ca, opts));
    const paths = await writeIdentity(out, base, id, { force });
    const info = describeCertificate(id.certPem);
    io.stdout.write(`created client identity "${name}", valid until ${day(info.notAfter)}\n`);
    printWritten(io, paths);
    return 0;
  },
};

/** `base` of `DIR/base.crt.pem` (or `base.pem`, `base.crt`): where renew writes by default. */
function baseNameOf(certPath: string): string {
  const name = basename(certPath);
  for (const ext of ['.crt.pem', '.cert.pem', '.pem', '.crt']) {
    if (name.endsWith(ext) && name.length > ext.length) return name.slice(0, -ext.length);
  }
  return name;
}

const renewCommand: Command = {
  name: 'renew',
  summary: 'renew an identity',
  help: `Usage: ${PROG} renew --cert FILE [options]

Re-issue an identity from its certificate: the same common name, subject alternative
names and role (serverAuth or clientAuth), with a new key, a new serial number and a new
validity, signed by the CA. The key keeps the old one's type and size unless --key-type
or --bits say otherwise. Writes DIR/BASE.key.pem (mode 0600) and DIR/BASE.crt.pem, by
default over the old files beside --cert, so --force is needed to replace them.
Signing with another CA than the old certificate's re-issues the identity under that CA
(CA rotation). The old certificate stays valid: revoke it (reason superseded) once no
node uses it.

Options:
  --cert FILE         the certificate to renew (required)
  --out, -o DIR       output folder (default: the folder of --cert)
  --file-name BASE    output file base name (default: the --cert file's, e.g. branch-01)
  --ca-dir DIR        folder holding ca.key.pem and ca.crt.pem (default: the folder of --cert)
  --ca-key FILE       the CA private key (with --ca-cert, instead of --ca-dir)
  --ca-cert FILE      the CA certificate
  --days N            validity in days (default: ${DEFAULT_LEAF_DAYS}, never past the CA's expiry)
  --key-type TYPE     rsa or ec (default: the old key's type)
  --bits N            RSA key size (default: the old key's size)
  --force, -f         replace existing output files
  --help, -h          show this help
`,
  options: {
    cert: { type: 'string' },
    out: { type: 'string', short: 'o' },
    'file-name': { type: 'string' },
    'ca-dir': { type: 'string' },
    'ca-key': { type: 'string' },
    'ca-cert': { type: 'string' },
    days: { type: 'string' },
    'key-type': { type: 'string' },
    bits: { type: 'string' },
    force: { type: 'boolean', short: 'f' },
  },
  positionals: false,
  async run(values, _positionals, io) {
    const certPath = required(values, 'cert', 'renew');
    const certDir = dirname(resolve(io.cwd, certPath));
    const out = resolve(io.cwd, str(values, 'out') ?? certDir);
    const base = str(values, 'file-name') ?? baseNameOf(certPath);
    checkFileName(base, '--file-name');
    const force = values['force'] === true;
    const opts = { days: positiveInt(values, 'days'), keyBits: positiveInt(values, 'bits'), keyType: keyTypeOption(values) };
    const certPem = await readInput(io, certPath, 'certificate');
    parseCertificates(certPem, certPath);
    const ca = await loadCa(values, io, certDir);
    await checkDestination(out, [`${base}.key.pem`, `${base}.crt.pem`], force);
    const old = describeCertificate(certPem);
    const id = await withProgress(io, 'generating a new key', renewIdentity(ca, certPem, opts));
    const paths = await writeIdentity(out, base, id, { force });
    const info = describeCertificate(id.certPem);
    const names = id.role === 'server' ? ` (${info.sans.join(', ')})` : '';
    io.stdout.write(`renewed ${id.role} identity "${id.commonName}"${names}: serial ${info.serialHex}, ${info.publicKey}, valid until ${day(info.notAfter)}\n`);
    if (old.issuer !== info.issuer) io.stdout.write(`  re-issued by ${info.issuer} (the old one was issued by ${old.issuer})\n`);
    printWritten(io, paths);
    io.stdout.write(
      `install it with '${PROG} set-identity ${id.role} ... --force' and restart the node; then revoke the old certificate:\n` +
        `  ${PROG} revoke --serial ${old.serialHex} --reason superseded\n`,
    );
    return 0;
  },
};

function printRevoked(io: CliIo, entries: readonly RevocationEntry[]): void {
  if (entries.length === 0) {
    io.stdout.write('revoked: none\n');
    return;
  }
  io.stdout.write(`revoked: ${entries.length}\n`);
  const rows = entries.map((e) => [e.serialHex, e.commonName ?? '-', e.revokedAt.toISOString(), e.reason]);
  const widths = [0, 1, 2].map((c) => Math.max(...rows.map((r) => (r[c] as string).length)));
  for (const r of rows) {
    io.stdout.write(`  ${r.map((cell, c) => (c < 3 ? cell.padEnd(widths[c] ?? 0) : cell)).join('  ')}\n`);
  }
}

function installHint(io: CliIo, crlPath: string): void {
  io.stdout.write(
    `next: install it on the server and make the server reload it (SIGHUP):\n  ${PROG} set-identity server --crl ${crlPath}\n  kill -HUP <restpipe-server pid>   (or: systemctl reload restpipe-server)\n`,
  );
}

const revokeCommand: Command = {
  name: 'revoke',
  summary: 'revoke a certificate',
  help: `Usage: ${PROG} revoke (--cert FILE | --serial HEX) [--reason REASON] [CA options]

Revoke a certificate issued by the CA: add it to the CA's revocation list, kept in
${REVOCATION_FILES.state} beside the CA (serial, date, reason, CN), and write a new CRL signed by
the CA, ${REVOCATION_FILES.crl}, in the same folder (CRL number incremented). Earlier revocations stay on
the list. Then install crl.pem on the server ('set-identity server --crl FILE') and
send the server SIGHUP. A certificate already revoked is left as it is.

Options:
  --cert FILE         the certificate to revoke (checked to be the CA's)
  --serial HEX        or its serial number, as 'inspect' or 'openssl x509 -serial' show it
  --reason REASON     ${REVOCATION_REASONS.join(', ')}
                      (default: unspecified, which writes no reason code)
${REVOCATION_CA_HELP}
  --help, -h          show this help
`,
  options: {
    cert: { type: 'string' },
    serial: { type: 'string' },
    reason: { type: 'string' },
    'ca-dir': { type: 'string' },
    'ca-key': { type: 'string' },
    'ca-cert': { type: 'string' },
    'next-update-days': { type: 'string' },
  },
  positionals: false,
  async run(values, _positionals, io) {
    const certPath = str(values, 'cert');
    const serial = str(values, 'serial');
    if ((certPath === undefined) === (serial === undefined)) throw new UsageError('revoke: give either --cert FILE or --serial HEX');
    const reason = checkRevocationReason(str(values, 'reason') ?? 'unspecified');
    const nextUpdateDays = nextUpdateDaysOption(values);
    const certPem = certPath === undefined ? undefined : await readInput(io, certPath, 'certificate');
    if (certPem !== undefined) parseCertificates(certPem, certPath as string);
    const { ca, dir } = await loadCaWithDir(values, io, DEFAULT_OUT_DIR);
    const target = certPem !== undefined ? { certPem } : { serialHex: serial as string };
    const r = await revokeCertificate(ca, dir, target, { reason, nextUpdateDays });
    const who = `${r.entry.commonName !== undefined ? `"${r.entry.commonName}" ` : ''}(serial ${r.entry.serialHex})`;
    if (r.alreadyRevoked) {
      io.stdout.write(`${who} was already revoked on ${r.entry.revokedAt.toISOString()} (${r.entry.reason}); nothing changed\n  ${r.crlPath}\n`);
      return 0;
    }
    io.stdout.write(`revoked ${who}, reason ${r.entry.reason}\n`);
    io.stdout.write(`  CRL number ${r.state.crlNumber}, ${r.state.revoked.length} revoked, next update ${r.nextUpdate?.toISOString()}\n`);
    io.stdout.write(`  ${r.crlPath}\n  ${r.statePath}\n`);
    installHint(io, r.crlPath);
    return 0;
  },
};

const crlCommand: Command = {
  name: 'crl',
  summary: "re-issue the CA's CRL",
  help: `Usage: ${PROG} crl [--next-update-days N] [CA options]

Re-issue the CA's CRL, ${REVOCATION_FILES.crl} beside the CA, from its revocation list (${REVOCATION_FILES.state}):
the same revoked certificates, a new this-update and next-update date and the next CRL
number; and list what is revoked. The first run writes an empty list. Run it well before
the next update (e.g. weekly from cron) and install the new crl.pem on the server: once a
CRL is past its next update, TLS refuses every client of the CA.

Options:
${REVOCATION_CA_HELP}
  --help, -h          show this help
`,
  options: {
    'ca-dir': { type: 'string' },
    'ca-key': { type: 'string' },
    'ca-cert': { type: 'string' },
    'next-update-days': { type: 'string' },
  },
  positionals: false,
  async run(values, _positionals, io) {
    const nextUpdateDays = nextUpdateDaysOption(values);
    const { ca, dir } = await loadCaWithDir(values, io, DEFAULT_OUT_DIR);
    const r = await reissueCrl(ca, dir, { nextUpdateDays });
    const issuer = describeCertificate(ca.certPem).subject;
    io.stdout.write(`issued CRL number ${r.state.crlNumber} of ${issuer}, next update ${r.nextUpdate?.toISOString()}\n  ${r.crlPath}\n`);
    printRevoked(io, r.state.revoked);
    installHint(io, r.crlPath);
    return 0;
  },
};

const DAY_MS = 86_400_000;

const checkCrlCommand: Command = {
  name: 'check-crl',
  summary: 'check a CRL against its CA',
  help: `Usage: ${PROG} check-crl --crl FILE --ca FILE [--min-days N]

Check a CRL file (one CRL, or one per CA) against the CA certificate file (one CA or a
bundle): signed by a CA of the file, valid now and not past its next update. With
--min-days N, also fail when the next update is less than N days away: run it from
monitoring to re-issue the CRL in time. Exits 0 when all is well, 1 otherwise
(RP_CERTS_CRL_STALE when it is or is about to be stale).

Options:
  --crl FILE          the CRL file, e.g. $${CERT_PATH_ENV.server}/${SERVER_CRL_FILE} (required)
  --ca FILE           the CA certificate file, e.g. $${CERT_PATH_ENV.server}/${IDENTITY_FILES.server.ca} (required)
  --min-days N        fail when the next update is less than N days away
  --help, -h          show this help
`,
  options: { crl: { type: 'string' }, ca: { type: 'string' }, 'min-days': { type: 'string' } },
  positionals: false,
  async run(values, _positionals, io) {
    const crlPath = required(values, 'crl', 'check-crl');
    const caPath = required(values, 'ca', 'check-crl');
    const minDays = positiveInt(values, 'min-days');
    const crlPem = await readInput(io, crlPath, 'CRL');
    const caPem = await readInput(io, caPath, 'CA certificate');
    parseCertificates(caPem, caPath);
    const now = new Date();
    const crls = await verifyCrl(crlPem, caPem, { label: crlPath, now });
    for (const crl of crls) {
      const left = crl.nextUpdate === undefined ? Number.POSITIVE_INFINITY : (crl.nextUpdate.getTime() - now.getTime()) / DAY_MS;
      if (minDays !== undefined && left < minDays) {
        throw new CrlStaleError(
          `${crlPath} (issuer ${crl.issuer}) is about to go stale: next update ${crl.nextUpdate?.toISOString()}, in ${left.toFixed(1)} days, less than --min-days ${minDays}; re-issue it with ${PROG} crl`,
        );
      }
    }
    for (const crl of crls) {
      const next = crl.nextUpdate === undefined ? 'no next update' : `next update ${crl.nextUpdate.toISOString()}`;
      io.stdout.write(`ok: CRL number ${crl.crlNumber ?? '-'} of ${crl.issuer}, signed by the CA, ${crl.revoked.length} revoked, ${next}\n`);
    }
    return 0;
  },
};

function crlSummary(crls: readonly CrlInfo[]): string {
  return crls
    .map((c) => `CRL number ${c.crlNumber ?? '-'} of ${c.issuer}, ${c.revoked.length} revoked, next update ${c.nextUpdate?.toISOString() ?? '-'}`)
    .join('; ');
}

function warnStale(io: CliIo, crls: readonly VerifiedCrl[] | undefined, label: string): void {
  for (const crl of crls ?? []) {
    if (crl.stale) {
      io.stderr.write(
        `${PROG}: warning: ${label} (issuer ${crl.issuer}) is past its next update (${crl.nextUpdate?.toISOString()}): TLS refuses every client of that CA until a fresh CRL is installed; re-issue it with '${PROG} crl'\n`,
      );
    }
  }
}

const setIdentityCommand: Command = {
  name: 'set-identity',
  summary: 'validate and install an identity',
  help: `Usage: ${PROG} set-identity server --key FILE --cert FILE --ca FILE [--crl FILE] [--dir DIR] [--force]
       ${PROG} set-identity server --crl FILE [--dir DIR] [--force]
       ${PROG} set-identity client --key FILE --cert FILE --ca FILE [--dir DIR] [--force]

Validate an identity and install it where the node reads it. Checks that the key
matches the certificate, the certificate was signed by the CA, it is valid now, and it
has the extended key usage of the role (serverAuth for the server, clientAuth for a
client). The client needs the CA too: it verifies the server with it.

With --crl (server only), also installs the CA's certificate revocation list, after
checking that it is a CRL signed by the CA (one CRL per CA of a bundle) and that it does
not revoke the server's own certificate; it warns when the CRL is past its next update.
With --crl alone, it installs only the CRL, checked against the CA installed in DIR, and
replaces the installed one unless that is newer (a higher CRL number; --force goes
back). Send the server SIGHUP afterwards to make it reload the CRL.

Installs into DIR (mode 0700 if created):
  server: ${IDENTITY_FILES.server.ca}, ${IDENTITY_FILES.server.key} (0600), ${IDENTITY_FILES.server.cert}[, ${SERVER_CRL_FILE}]
  client: ${IDENTITY_FILES.client.ca}, ${IDENTITY_FILES.client.key} (0600), ${IDENTITY_FILES.client.cert}

Options:
  --key FILE          the node's private key (PEM, unencrypted)
  --cert FILE         its certificate (PEM; may be followed by intermediate CAs)
  --ca FILE           the CA certificate (PEM; may be a bundle of several CAs, e.g. the
                      old and the new one during a CA rotation)
  --crl FILE          the CA's CRL (server only; one CRL per CA of the bundle)
  --dir DIR           destination (default: $${CERT_PATH_ENV.server} or ${DEFAULT_IDENTITY_DIR.server}
                      for the server, $${CERT_PATH_ENV.client} or ${DEFAULT_IDENTITY_DIR.client} for a client)
  --force, -f         replace existing files
  --help, -h          show this help
`,
  options: {
    key: { type: 'string' },
    cert: { type: 'string' },
    ca: { type: 'string' },
    crl: { type: 'string' },
    dir: { type: 'string' },
    force: { type: 'boolean', short: 'f' },
  },
  positionals: true,
  async run(values, positionals, io) {
    const [role, ...extra] = positionals;
    if (role !== 'server' && role !== 'client') {
      throw new UsageError(
        role === undefined
          ? 'set-identity: say which node: set-identity server ... or set-identity client ...'
          : `set-identity: unknown role ${JSON.stringify(role)}; expected server or client`,
      );
    }
    if (extra.length > 0) throw new UsageError(`set-identity: unexpected argument ${JSON.stringify(extra[0])}`);
    const r: Role = role;
    const crlPath = str(values, 'crl');
    if (crlPath !== undefined && r === 'client') throw new UsageError('set-identity client: --crl is for the server, which checks client certificates');
    if (crlPath !== undefined && ['key', 'cert', 'ca'].every((o) => str(values, o) === undefined)) {
      // Only the CRL, for the identity already installed in DIR.
      const dir = resolve(io.cwd, resolveIdentityDir(r, str(values, 'dir'), io.env));
      const crlPem = await readInput(io, crlPath, 'CRL');
      parseCrls(crlPem, crlPath);
      const installed = await installCrl(crlPem, dir, { force: values['force'] === true });
      warnStale(io, installed.crls, crlPath);
      io.stdout.write(`installed the CRL (${crlSummary(installed.crls)}) into ${dir}\n  ${installed.crl}\n`);
      io.stdout.write('send the server SIGHUP to reload it (kill -HUP <restpipe-server pid>, or systemctl reload restpipe-server)\n');
      return 0;
    }
    const keyPath = required(values, 'key', `set-identity ${r}`);
    const certPath = required(values, 'cert', `set-identity ${r}`);
    const caPath = required(values, 'ca', `set-identity ${r}`);
    const dir = resolve(io.cwd, resolveIdentityDir(r, str(values, 'dir'), io.env));
    const keyPem = await readInput(io, keyPath, 'key');
    const certPem = await readInput(io, certPath, 'certificate');
    const caPem = await readInput(io, caPath, 'CA certificate');
    // Name the file in PEM errors; validateIdentity then checks how they fit together.
    parsePrivateKey(keyPem, keyPath);
    parseCertificates(certPem, certPath);
    parseCertificates(caPem, caPath);
    const crlPem = crlPath === undefined ? undefined : await readInput(io, crlPath, 'CRL');
    if (crlPem !== undefined) parseCrls(crlPem, crlPath as string);
    const files = crlPem === undefined ? { keyPem, certPem, caPem } : { keyPem, certPem, caPem, crlPem };
    const paths = await installIdentity(r, files, dir, { force: values['force'] === true });
    warnStale(io, paths.crls, crlPath ?? 'the CRL');
    const info = describeCertificate(certPem);
    const names = r === 'server' ? ` (${info.sans.join(', ')})` : '';
    io.stdout.write(`installed ${r} identity "${info.commonName ?? info.subject}"${names}, valid until ${day(info.notAfter)}, into ${dir}\n`);
    io.stdout.write(`  ${paths.ca}\n  ${paths.key} (mode 0600)\n  ${paths.cert}\n`);
    if (paths.crl !== undefined) io.stdout.write(`  ${paths.crl} (${crlSummary(paths.crls ?? [])})\n`);
    const envName = CERT_PATH_ENV[r];
    if (dir !== DEFAULT_IDENTITY_DIR[r] && io.env[envName] !== dir) {
      io.stdout.write(`start the ${r} with ${envName}=${dir}\n`);
    }
    return 0;
  },
};

const inspectCommand: Command = {
  name: 'inspect',
  summary: 'show a certificate or a CRL',
  help: `Usage: ${PROG} inspect [--json] [--crl FILE] FILE...

Show each certificate in FILE: subject, issuer, subject alternative names, CA flag, key
usages, extended key usages, validity, serial, public key and SHA-256 fingerprint (the
same as 'openssl x509 -noout -fingerprint -sha256'). Show each CRL in FILE: issuer, this
and next update (STALE once past), CRL number and the revoked serials with date and reason.

Options:
  --crl FILE          also say whether each certificate is revoked by this CRL
  --json              print JSON (an array with one object per certificate or CRL)
  --help, -h          show this help
`,
  options: { json: { type: 'boolean' }, crl: { type: 'string' } },
  positionals: true,
  async run(values, positionals, io) {
    if (positionals.length === 0) throw new UsageError('inspect: give a certificate or CRL file');
    const crlPath = str(values, 'crl');
    let crls: CrlInfo[] | undefined;
    if (crlPath !== undefined) crls = parseCrls(await readInput(io, crlPath, 'CRL'), crlPath);
    type Item = { file: string } & ({ kind: 'certificate'; pem: string; info: ReturnType<typeof describeCertificate> } | { kind: 'crl'; crl: CrlInfo });
    const all: Item[] = [];
    for (const file of positionals) {
      const text = await readInput(io, file, 'certificate');
      const blocks = pemBlocks(text);
      const hasCrl = blocks.some((b) => b.type === 'X509 CRL');
      if (!hasCrl) parseCertificates(text, file); // throws NotPemError naming the file
      for (const block of blocks) {
        if (block.type === 'CERTIFICATE') all.push({ file, kind: 'certificate', pem: block.text, info: describeCertificate(block.text) });
        else if (block.type === 'X509 CRL') all.push({ file, kind: 'crl', crl: parseCrls(block.text, file)[0] as CrlInfo });
      }
    }
    if (all.length === 0) throw new NotPemError(`${positionals.join(', ')} holds no certificate or CRL`);
    const revocation = (pem: string) => {
      if (!crls) return undefined;
      const entry = findRevocation(crls, pem);
      if (entry) return { revoked: true as const, revokedAt: entry.revokedAt, reason: entry.reason };
      return crlCoversIssuer(crls, pem) ? { revoked: false as const } : { revoked: 'unknown' as const };
    };
    if (values['json'] === true) {
      const json = all.map((item) => {
        if (item.kind === 'crl') {
          const { pem: _pem, ...crl } = item.crl;
          return { file: item.file, kind: 'crl', ...crl };
        }
        const r = revocation(item.pem);
        return { file: item.file, ...item.info, ...(r ? { revocation: r } : {}) };
      });
      io.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
      return 0;
    }
    all.forEach((item, i) => {
      if (all.length > 1) io.stdout.write(`${i > 0 ? '\n' : ''}== ${item.file} ==\n`);
      if (item.kind === 'crl') {
        io.stdout.write(formatCrlInfo(item.crl));
        return;
      }
      const r = revocation(item.pem);
      const extra: Array<[string, string]> = [];
      if (r) {
        const status =
          r.revoked === true
            ? `YES, since ${r.revokedAt.toISOString()} (${r.reason})`
            : r.revoked === false
              ? 'no'
              : `unknown: ${crlPath} has no CRL from ${item.info.issuer}`;
        extra.push(['Revoked', status]);
      }
      io.stdout.write(formatCertificateInfo(item.info, new Date(), extra));
    });
    return 0;
  },
};

const COMMANDS: readonly Command[] = [
  createCaCommand,
  createServerCommand,
  createClientCommand,
  renewCommand,
  revokeCommand,
  crlCommand,
  checkCrlCommand,
  setIdentityCommand,
  inspectCommand,
];

async function version(): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

/**
 * Run `restpipe-certs` with `argv` (without the node and script paths).
 * @returns the exit code: 0 success, 1 invalid input or failed write, 2 usage error.
 */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  const [first, ...rest] = argv;
  let command: Command | undefined;
  try {
    if (first === undefined) {
      throw new UsageError(`give a command: ${COMMANDS.map((c) => c.name).join(', ')}`);
    }
    if (first === '--help' || first === '-h') {
      io.stdout.write(MAIN_HELP);
      return 0;
    }
    if (first === '--version' || first === '-V') {
      io.stdout.write(`${PROG} ${await version()}\n`);
      return 0;
    }
    if (first === 'help') {
      const topic = rest[0];
      const target = topic === undefined ? undefined : COMMANDS.find((c) => c.name === topic);
      if (topic !== undefined && !target) throw new UsageError(`unknown command ${JSON.stringify(topic)}`);
      io.stdout.write(target ? target.help : MAIN_HELP);
      return 0;
    }
    command = COMMANDS.find((c) => c.name === first);
    if (!command) {
      throw new UsageError(`unknown command ${JSON.stringify(first)}`);
    }
    let parsed: { values: Values; positionals: string[] };
    try {
      parsed = parseArgs({
        args: [...rest],
        options: { ...command.options, help: { type: 'boolean', short: 'h' } },
        allowPositionals: command.positionals,
        strict: true,
      }) as { values: Values; positionals: string[] };
    } catch (err) {
      // parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes for bad command lines.
      throw new UsageError(`${command.name}: ${(err as Error).message}`, { cause: err });
    }
    if (parsed.values['help'] === true) {
      io.stdout.write(command.help);
      return 0;
    }
    return await command.run(parsed.values, parsed.positionals, io);
  } catch (err) {
    if (io.env['DEBUG'] === '1' && err instanceof Error && err.stack) {
      io.stderr.write(`${err.stack}\n`);
    }
    const reported = asCertsToolError(err);
    io.stderr.write(`${errorLine(reported, command)}\n`);
    return exitCodeFor(reported);
  }
}

/** A thrown value as a CertsToolError: itself, or an InternalError for anything else (a bug). */
function asCertsToolError(err: unknown): CertsToolError {
  if (err instanceof CertsToolError) return err;
  const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return new InternalError(`unexpected error, please report it (DEBUG=1 shows the stack): ${what}`, { cause: err });
}

/**
 * The one line a failure prints: `restpipe-certs: RP_CERTS_<CODE>: <message>`, the same
 * `<program>: <code>: <message>` shape as the nodes' `restpipe-server: RP_CONFIG: …`.
 */
function errorLine(err: CertsToolError, command: Command | undefined): string {
  let message = oneLine(err.message) || err.name;
  if (err.code === 'RP_CERTS_USAGE') {
    message += ` (see '${PROG} ${command ? `${command.name} ` : ''}--help')`;
  }
  return `${PROG}: ${err.code}: ${message}`;
}
