/**
 * The `restpipe-certs` command line: argument parsing, help, file reading and messages.
 * The work is done by the library; `main` returns the exit code instead of exiting so tests
 * can run it in-process.
 *
 * Exit codes: 0 success, 1 validation or I/O error (or a bug), 2 usage error. Every failure is
 * one line on stderr, `restpipe-certs: <code>: <message>`, so scripts can tell them apart.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { describeCertificate, formatCertificateInfo } from './describe.js';
import { CertsToolError, InternalError, MissingFileError, UsageError, exitCodeFor } from './errors.js';
import { checkDestination, checkFileName } from './files.js';
import { DEFAULT_CA_DAYS, DEFAULT_CA_NAME, DEFAULT_LEAF_DAYS, createCa, createClientIdentity, createServerIdentity } from './identities.js';
import type { Identity } from './identities.js';
import { CERT_PATH_ENV, DEFAULT_IDENTITY_DIR, IDENTITY_FILES, installIdentity, resolveIdentityDir, writeIdentity } from './install.js';
import { DEFAULT_KEY_BITS } from './keys.js';
import { pemBlocks, parseCertificates, parsePrivateKey } from './pem.js';
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

const COMMON_CREATE_HELP = `  --out, -o DIR       output folder, created mode 0700 if missing (default: ./${DEFAULT_OUT_DIR})
  --days N            validity in days (default: ${DEFAULT_LEAF_DAYS}, never past the CA's expiry)
  --bits N            RSA key size (default: ${DEFAULT_KEY_BITS})
  --force, -f         replace existing output files`;

const MAIN_HELP = `Usage: ${PROG} <command> [options]

Create and install the mutual-TLS identities of RestPipe nodes.

Commands:
  create-ca          create a CA: ca.key.pem + ca.crt.pem
  create-server      create a server identity signed by the CA
  create-client      create a client identity signed by the CA
  set-identity       validate an identity and install it for the server or a client
  inspect            show a certificate's names, usages, validity and fingerprint
  help [command]     show help

Typical use:
  ${PROG} create-ca
  ${PROG} create-server --name pipe.example.com --dns pipe.example.com --ip 203.0.113.7
  ${PROG} create-client --name branch-01
  ${PROG} set-identity server --key restpipe-identities/server.key.pem \\
      --cert restpipe-identities/server.crt.pem --ca restpipe-identities/ca.crt.pem

Run '${PROG} <command> --help' for a command's options.
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
  help: `Usage: ${PROG} create-ca [--out DIR] [--name CN] [--days N] [--bits N] [--force]

Create a certificate authority: a private key and a self-signed certificate
(basicConstraints CA:TRUE, keyUsage keyCertSign + cRLSign). Writes DIR/ca.key.pem
(mode 0600) and DIR/ca.crt.pem. Keep ca.key.pem off the nodes; every node gets
ca.crt.pem.

Options:
  --out, -o DIR       output folder, created mode 0700 if missing (default: ./${DEFAULT_OUT_DIR})
  --name CN           the CA's common name (default: "${DEFAULT_CA_NAME}")
  --days N            validity in days (default: ${DEFAULT_CA_DAYS})
  --bits N            RSA key size (default: ${DEFAULT_KEY_BITS})
  --force, -f         replace existing output files
  --help, -h          show this help
`,
  options: {
    out: { type: 'string', short: 'o' },
    name: { type: 'string' },
    days: { type: 'string' },
    bits: { type: 'string' },
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
    };
    await checkDestination(out, ['ca.key.pem', 'ca.crt.pem'], force);
    const ca = await withProgress(io, `generating a ${opts.keyBits ?? DEFAULT_KEY_BITS}-bit RSA key`, createCa(opts));
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
    };
    const ca = await loadCa(values, io, out);
    await checkDestination(out, [`${base}.key.pem`, `${base}.crt.pem`], force);
    const id = await withProgress(io, `generating a ${opts.keyBits ?? DEFAULT_KEY_BITS}-bit RSA key`, createServerIdentity(ca, opts));
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
    force: { type: 'boolean', short: 'f' },
  },
  positionals: false,
  async run(values, _positionals, io) {
    const name = required(values, 'name', 'create-client');
    const out = resolve(io.cwd, str(values, 'out') ?? DEFAULT_OUT_DIR);
    const base = str(values, 'file-name') ?? fileNameFor(name);
    checkFileName(base, '--file-name');
    const force = values['force'] === true;
    const opts = { commonName: name, days: positiveInt(values, 'days'), keyBits: positiveInt(values, 'bits') };
    const ca = await loadCa(values, io, out);
    await checkDestination(out, [`${base}.key.pem`, `${base}.crt.pem`], force);
    const id = await withProgress(io, `generating a ${opts.keyBits ?? DEFAULT_KEY_BITS}-bit RSA key`, createClientIdentity(ca, opts));
    const paths = await writeIdentity(out, base, id, { force });
    const info = describeCertificate(id.certPem);
    io.stdout.write(`created client identity "${name}", valid until ${day(info.notAfter)}\n`);
    printWritten(io, paths);
    return 0;
  },
};

const setIdentityCommand: Command = {
  name: 'set-identity',
  summary: 'validate and install an identity',
  help: `Usage: ${PROG} set-identity server --key FILE --cert FILE --ca FILE [--dir DIR] [--force]
       ${PROG} set-identity client --key FILE --cert FILE --ca FILE [--dir DIR] [--force]

Validate an identity and install it where the node reads it. Checks that the key
matches the certificate, the certificate was signed by the CA, it is valid now, and it
has the extended key usage of the role (serverAuth for the server, clientAuth for a
client). The client needs the CA too: it verifies the server with it.

Installs into DIR (mode 0700 if created):
  server: ${IDENTITY_FILES.server.ca}, ${IDENTITY_FILES.server.key} (0600), ${IDENTITY_FILES.server.cert}
  client: ${IDENTITY_FILES.client.ca}, ${IDENTITY_FILES.client.key} (0600), ${IDENTITY_FILES.client.cert}

Options:
  --key FILE          the node's private key (PEM, unencrypted)
  --cert FILE         its certificate (PEM; may be followed by intermediate CAs)
  --ca FILE           the CA certificate (PEM; may be a bundle)
  --dir DIR           destination (default: $${CERT_PATH_ENV.server} or ${DEFAULT_IDENTITY_DIR.server}
                      for the server, $${CERT_PATH_ENV.client} or ${DEFAULT_IDENTITY_DIR.client} for a client)
  --force, -f         replace existing files
  --help, -h          show this help
`,
  options: {
    key: { type: 'string' },
    cert: { type: 'string' },
    ca: { type: 'string' },
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
    const paths = await installIdentity(r, { keyPem, certPem, caPem }, dir, { force: values['force'] === true });
    const info = describeCertificate(certPem);
    const names = r === 'server' ? ` (${info.sans.join(', ')})` : '';
    io.stdout.write(`installed ${r} identity "${info.commonName ?? info.subject}"${names}, valid until ${day(info.notAfter)}, into ${dir}\n`);
    io.stdout.write(`  ${paths.ca}\n  ${paths.key} (mode 0600)\n  ${paths.cert}\n`);
    const envName = CERT_PATH_ENV[r];
    if (dir !== DEFAULT_IDENTITY_DIR[r] && io.env[envName] !== dir) {
      io.stdout.write(`start the ${r} with ${envName}=${dir}\n`);
    }
    return 0;
  },
};

const inspectCommand: Command = {
  name: 'inspect',
  summary: 'show a certificate',
  help: `Usage: ${PROG} inspect [--json] FILE...

Show each certificate in FILE: subject, issuer, subject alternative names, CA flag, key
usages, extended key usages, validity, serial, public key and SHA-256 fingerprint (the
same as 'openssl x509 -noout -fingerprint -sha256').

Options:
  --json              print JSON (an array with one object per certificate)
  --help, -h          show this help
`,
  options: { json: { type: 'boolean' } },
  positionals: true,
  async run(values, positionals, io) {
    if (positionals.length === 0) throw new UsageError('inspect: give a certificate file');
    const all: Array<{ file: string; info: ReturnType<typeof describeCertificate> }> = [];
    for (const file of positionals) {
      const text = await readInput(io, file, 'certificate');
      parseCertificates(text, file); // throws NotPemError naming the file
      for (const block of pemBlocks(text).filter((b) => b.type === 'CERTIFICATE')) {
        all.push({ file, info: describeCertificate(block.text) });
      }
    }
    if (values['json'] === true) {
      io.stdout.write(
        `${JSON.stringify(
          all.map(({ file, info }) => ({ file, ...info })),
          null,
          2,
        )}\n`,
      );
      return 0;
    }
    all.forEach(({ file, info }, i) => {
      if (all.length > 1) io.stdout.write(`${i > 0 ? '\n' : ''}== ${file} ==\n`);
      io.stdout.write(formatCertificateInfo(info));
    });
    return 0;
  },
};

const COMMANDS: readonly Command[] = [createCaCommand, createServerCommand, createClientCommand, setIdentityCommand, inspectCommand];

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
      io.stdout.write(`${await version()}\n`);
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
