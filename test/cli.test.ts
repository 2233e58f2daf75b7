/**
 * The command lines of the real executables, as child processes:
 * `--version` and `--help` on every one, `--check-config` on the nodes
 * (settings, handler and hooks classes, identity files, without listening
 * or dialing), and `RP_LOG_FORMAT=pretty`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { unlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { createClientIdentity, createServerIdentity } from '@restpipe/certs-tool';
import { CLIENT_IDENTITY_FILES } from '@restpipe/client';
import { SERVER_IDENTITY_FILES } from '@restpipe/server';
import { type NodeName, settingsHelp, type TlsIdentity } from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { foreignPki, testPki } from './helpers/identities.js';
import { CLIENT_CLI, REPO_ROOT, SERVER_CLI, childEnv, installedIdentity, tempDir } from './helpers/node-process.js';
import { closeAll, onClose, waitFor } from './helpers/pipe.js';

afterEach(closeAll);

const CERTS_CLI = join(REPO_ROOT, 'certs-tool', 'dist', 'cli.js');
const DAY_MS = 24 * 60 * 60 * 1000;
const HANDLERS = './test/fixtures/handlers.mjs';
const HOOKS = './test/fixtures/hooks.mjs';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node <cli> ...args` with only `env` (and PATH and the like) until it exits; killed after 20 s. */
async function run(cli: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  const child = spawn(process.execPath, [cli, ...args], { cwd: REPO_ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(child, 'close');
  onClose(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const [code] = (await exited) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/**
 * A TCP port held open by the test, counting connections: a node that tried
 * to listen on it would fail (EADDRINUSE), one that dialed it would be counted.
 */
async function heldPort(): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onClose(() => new Promise((resolve) => server.close(resolve)));
  return { port: (server.address() as { port: number }).port, connections: () => connections };
}

/** The settings of a server whose pipe and gateway ports are held by the test. */
async function serverEnv(certPath: string, env: Record<string, string> = {}) {
  const pipe = await heldPort();
  const gateway = await heldPort();
  return {
    pipe,
    gateway,
    env: {
      RP_SERVER_CERT_PATH: certPath,
      RP_SERVER_BIND_INTERFACE: '127.0.0.1',
      RP_SERVER_BIND_PORT: String(pipe.port),
      RP_SERVER_GATEWAY_HOST: '127.0.0.1',
      RP_SERVER_GATEWAY_PORT: String(gateway.port),
      RP_STATSD_HOST: '',
      ...env,
    },
  };
}

/** The settings of a client whose target (a port that counts connections) and gateway port are held by the test. */
async function clientEnv(certPath: string, env: Record<string, string> = {}) {
  const target = await heldPort();
  const gateway = await heldPort();
  return {
    target,
    gateway,
    env: {
      RP_CLIENT_CERT_PATH: certPath,
      RP_CLIENT_TARGET_HOSTNAME: '127.0.0.1',
      RP_CLIENT_TARGET_SERVERNAME: 'localhost',
      RP_CLIENT_TARGET_PORT: String(target.port),
      RP_CLIENT_GATEWAY_HOST: '127.0.0.1',
      RP_CLIENT_GATEWAY_PORT: String(gateway.port),
      RP_CLIENT_CONNECT_TIMEOUT_S: '1',
      RP_STATSD_HOST: '',
      ...env,
    },
  };
}

/** Writes an identity's files into a new folder as they are, unchecked (certs-tool's install would refuse a bad one). */
async function identityFolder(role: NodeName, id: TlsIdentity): Promise<string> {
  const dir = await tempDir(`restpipe-${role}-bad-id-`);
  const files = role === 'server' ? SERVER_IDENTITY_FILES : CLIENT_IDENTITY_FILES;
  await writeFile(join(dir, files.key), String(id.key), { mode: 0o600 });
  await writeFile(join(dir, files.cert), String(id.cert));
  await writeFile(join(dir, files.ca), String(id.ca));
  return dir;
}

/** `2027-03-05T21:12:06Z`: a certificate's notAfter as the ok line shows it. */
function expiry(certPem: string | Buffer): string {
  return new Date(new X509Certificate(certPem).validTo).toISOString().replace('.000Z', 'Z');
}

const packageVersion = (pkg: string) => (JSON.parse(readFileSync(join(REPO_ROOT, pkg, 'package.json'), 'utf8')) as { version: string }).version;

describe('--version', () => {
  it.each([
    ['restpipe-server', SERVER_CLI, 'server'],
    ['restpipe-client', CLIENT_CLI, 'client'],
    ['restpipe-certs', CERTS_CLI, 'certs-tool'],
  ])('%s prints its name and its package version, and exits 0', async (program, cli, pkg) => {
    for (const flag of ['--version', '-V']) {
      // No identity, no settings: the version needs none, and nothing starts.
      const r = await run(cli, [flag], { RP_SERVER_BIND_PORT: 'not-a-port', RP_CLIENT_TARGET_PORT: 'not-a-port' });
      expect(r).toEqual({ code: 0, stdout: `${program} ${packageVersion(pkg)}\n`, stderr: '' });
    }
  });
});

describe('--help', () => {
  /** The settings a help text lists: each `  NAME  (default: D; A)` line and the meaning indented under it. */
  function listedSettings(help: string) {
    const lines = help.slice(help.indexOf('\nSettings')).split('\n');
    const listed: Array<{ name: string; default: string; accepts: string; meaning: string }> = [];
    lines.forEach((line, i) => {
      const m = /^ {2}([A-Z][A-Z0-9_]+) {2}\(default: (.*?); (.*)\)$/.exec(line);
      if (m) listed.push({ name: m[1] as string, default: m[2] as string, accepts: m[3] as string, meaning: (lines[i + 1] ?? '').replace(/^ {6}/, '') });
    });
    return listed;
  }

  it.each([
    ['restpipe-server', SERVER_CLI, 'server'],
    ['restpipe-client', CLIENT_CLI, 'client'],
  ] as const)('%s lists exactly the settings it reads, with defaults and meanings, and the options', async (program, cli, node) => {
    const r = await run(cli, ['--help'], { RP_SERVER_BIND_PORT: 'not-a-port', RP_CLIENT_TARGET_PORT: 'not-a-port' });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.startsWith(`usage: ${program}\n       ${program} --check-config | --version | --help\n`)).toBe(true);
    for (const option of ['--check-config', '--version, -V', '--help, -h']) expect(r.stdout).toContain(`\n  ${option}  `);
    const expected = settingsHelp(node);
    expect(listedSettings(r.stdout)).toEqual(expected);
    // Each of the node's own settings, and no setting of the other node.
    const other = node === 'server' ? 'RP_CLIENT_TARGET_PORT' : 'RP_SERVER_BIND_PORT';
    expect(r.stdout).not.toContain(other);
    expect(expected.map((s) => s.name)).toContain('RP_LOG_FORMAT');
    expect(expected.find((s) => s.name === 'RP_LOG_FORMAT')).toMatchObject({ default: 'json', accepts: 'one of json, pretty' });
  });

  it('-h is --help, and restpipe-certs --help still lists its commands', async () => {
    const long = await run(SERVER_CLI, ['--help']);
    const short = await run(SERVER_CLI, ['-h']);
    expect(short).toEqual(long);
    const certs = await run(CERTS_CLI, ['--help']);
    expect(certs.code).toBe(0);
    expect(certs.stdout).toMatch(/^Usage: restpipe-certs <command>/);
  });

  it('an unknown argument exits 2 with one line and starts nothing', async () => {
    const pki = await testPki();
    const { env, pipe } = await serverEnv(await installedIdentity('server', pki.server));
    const r = await run(SERVER_CLI, ['--chek-config'], env);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('restpipe-server: unknown argument "--chek-config": the options are --check-config, --version and --help\n');
    expect(pipe.connections()).toBe(0);
  });
});

describe('--check-config', () => {
  it('restpipe-server: one ok line with the summary, exit 0, while its ports are taken (so it never listens)', async () => {
    const pki = await testPki();
    const { env, pipe, gateway } = await serverEnv(await installedIdentity('server', pki.server));
    const r = await run(SERVER_CLI, ['--check-config'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `restpipe-server: configuration ok (pipe 127.0.0.1:${pipe.port}, gateway 127.0.0.1:${gateway.port}, identity CN=localhost, expires ${expiry(pki.server.cert)}, handler ServerExampleHandler (the example), statsd off)\n`,
    );
  });

  it('restpipe-client: imports the handler and hooks classes without constructing them, and never dials', async () => {
    const pki = await testPki();
    const id = await pki.client('branch-ok');
    const { env, target, gateway } = await clientEnv(await installedIdentity('client', id), {
      RP_EVENT_HANDLER_FQ_CLASS: `${HANDLERS}#ClientFileHandlers`,
      RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS: `${HOOKS}#PrintingClientHooks`,
      RP_STATSD_HOST: '127.0.0.1',
    });
    const r = await run(CLIENT_CLI, ['--check-config'], env);
    expect(r.stderr).toBe(''); // the printing hooks never ran
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `restpipe-client: configuration ok (server 127.0.0.1:${target.port} (certificate name localhost), gateway 127.0.0.1:${gateway.port}, identity CN=branch-ok, expires ${expiry(id.cert)}, handler ClientFileHandlers, hooks PrintingClientHooks, statsd 127.0.0.1:8125)\n`,
    );
    expect(target.connections()).toBe(0);
  });

  it('restpipe-server: a crl.pem beside the identity must parse', async () => {
    const pki = await testPki();
    const dir = await installedIdentity('server', pki.server);
    // A real CRL of the test CA, made by openssl.
    const work = await tempDir('restpipe-crl-');
    await writeFile(join(work, 'ca.key.pem'), pki.ca.keyPem);
    await writeFile(join(work, 'ca.crt.pem'), pki.ca.certPem);
    await writeFile(join(work, 'index.txt'), '');
    await writeFile(
      join(work, 'openssl.cnf'),
      `[ca]\ndefault_ca = d\n[d]\ndatabase = ${join(work, 'index.txt')}\ndefault_md = sha256\ndefault_crl_days = 30\n`,
    );
    execFileSync(
      'openssl',
      [
        'ca',
        '-gencrl',
        '-config',
        join(work, 'openssl.cnf'),
        '-keyfile',
        join(work, 'ca.key.pem'),
        '-cert',
        join(work, 'ca.crt.pem'),
        '-out',
        join(dir, 'crl.pem'),
      ],
      {
        stdio: 'ignore',
      },
    );
    const good = await run(SERVER_CLI, ['--check-config'], (await serverEnv(dir)).env);
    expect(good.stderr).toBe('');
    expect(good.code).toBe(0);
    expect(good.stdout).toContain(', CRL crl.pem, ');

    await writeFile(join(dir, 'crl.pem'), '-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n');
    const bad = await run(SERVER_CLI, ['--check-config'], (await serverEnv(dir)).env);
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(
      /^restpipe-server: RP_IDENTITY_FILES: RP_SERVER_CERT_PATH=".*": crl\.pem is not a PEM certificate revocation list \([^\n]*\)\n$/,
    );
  });

  /** A failing case: the folder and settings it runs with, and the one stderr line it must print. */
  interface Failing {
    cli: string;
    certPath: () => Promise<string>;
    env?: Record<string, string>;
    line: RegExp;
  }
  const server = (certPath: Failing['certPath'], line: RegExp, env?: Record<string, string>): Failing => ({ cli: SERVER_CLI, certPath, line, env });
  const client = (certPath: Failing['certPath'], line: RegExp, env?: Record<string, string>): Failing => ({ cli: CLIENT_CLI, certPath, line, env });
  const goodServer = async () => installedIdentity('server', (await testPki()).server);
  const goodClient = async () => installedIdentity('client', await (await testPki()).client('branch-ok'));

  const failing: Record<string, Failing> = {
    'a bad setting': server(goodServer, /^restpipe-server: RP_CONFIG: RP_SERVER_HANDSHAKE_TIMEOUT_S="soon" is not valid: expected seconds from 0\.1 to 600$/, {
      RP_SERVER_HANDSHAKE_TIMEOUT_S: 'soon',
    }),
    'a missing key file': client(async () => {
      const dir = await goodClient();
      await unlink(join(dir, CLIENT_IDENTITY_FILES.key));
      return dir;
    }, /^restpipe-client: RP_CONFIG: RP_CLIENT_CERT_PATH=".*": cannot read .*restpipe\.client\.key\.pem \(ENOENT\); install an identity with restpipe-certs set-identity$/),
    'a key that does not match the certificate': server(async () => {
      const pki = await testPki();
      return identityFolder('server', { ...pki.server, key: (await pki.client('someone-else')).key });
    }, /^restpipe-server: RP_IDENTITY_FILES: RP_SERVER_CERT_PATH=".*": the key restpipe\.server\.key\.pem does not match the certificate restpipe\.server\.crt\.pem \(CN=localhost\)/),
    'an expired certificate': client(async () => {
      const pki = await testPki();
      const c = await createClientIdentity(pki.ca, { commonName: 'expired', validFrom: new Date(Date.now() - 10 * DAY_MS), days: 1, keyBits: 2048 });
      return identityFolder('client', { key: c.keyPem, cert: c.certPem, ca: pki.ca.certPem });
    }, /^restpipe-client: RP_IDENTITY_FILES: RP_CLIENT_CERT_PATH=".*": the certificate restpipe\.client\.crt\.pem \(CN=expired\) expired on \d{4}-\d\d-\d\dT[\d:.]+Z: install a new identity with restpipe-certs set-identity$/),
    'a certificate not valid yet': server(async () => {
      const pki = await testPki();
      const s = await createServerIdentity(pki.ca, {
        commonName: 'localhost',
        dnsNames: ['localhost'],
        validFrom: new Date(Date.now() + DAY_MS),
        days: 30,
        keyBits: 2048,
      });
      return identityFolder('server', { key: s.keyPem, cert: s.certPem, ca: pki.ca.certPem });
    }, /^restpipe-server: RP_IDENTITY_FILES: RP_SERVER_CERT_PATH=".*": the certificate restpipe\.server\.crt\.pem \(CN=localhost\) is not valid yet: valid from /),
    'a client certificate given to the server': server(
      async () => identityFolder('server', await (await testPki()).client('branch-07')),
      /^restpipe-server: RP_IDENTITY_FILES: RP_SERVER_CERT_PATH=".*": the certificate restpipe\.server\.crt\.pem \(CN=branch-07\) is not a server certificate: it needs the extended key usage serverAuth, it has clientAuth$/,
    ),
    'the server certificate given to a client': client(
      async () => identityFolder('client', (await testPki()).server),
      /^restpipe-client: RP_IDENTITY_FILES: RP_CLIENT_CERT_PATH=".*": the certificate restpipe\.client\.crt\.pem \(CN=localhost\) is not a client certificate: it needs the extended key usage clientAuth, it has serverAuth$/,
    ),
    'a certificate from another CA': client(async () => {
      const foreign = await (await foreignPki()).client('intruder');
      return identityFolder('client', { ...foreign, ca: (await testPki()).ca.certPem });
    }, /^restpipe-client: RP_IDENTITY_FILES: RP_CLIENT_CERT_PATH=".*": the certificate restpipe\.client\.crt\.pem \(CN=intruder\) is not signed by the CA in ca\.crt\.pem \(CN=RestPipe Test CA\); it was issued by CN=Some Other CA$/),
    'a handler class of the other node': server(
      goodServer,
      /^restpipe-server: RP_CONFIG: RP_EVENT_HANDLER_FQ_CLASS="\.\/test\/fixtures\/handlers\.mjs#ClientFileHandlers": ClientFileHandlers must extend ServerEventHandler$/,
      { RP_EVENT_HANDLER_FQ_CLASS: `${HANDLERS}#ClientFileHandlers` },
    ),
    'a class that is no handler': client(
      goodClient,
      /^restpipe-client: RP_CONFIG: RP_EVENT_HANDLER_FQ_CLASS=".*#NotAHandler": NotAHandler must extend ClientEventHandler$/,
      {
        RP_EVENT_HANDLER_FQ_CLASS: `${HANDLERS}#NotAHandler`,
      },
    ),
    'a hooks class of the other node': client(
      goodClient,
      /^restpipe-client: RP_CONFIG: RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS=".*#PrintingServerHooks": PrintingServerHooks must extend ClientConnectionStateEvents$/,
      { RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS: `${HOOKS}#PrintingServerHooks` },
    ),
  };

  it.each(Object.entries(failing))('exits 2 with one stderr line for %s, listening on nothing and dialing nothing', async (_what, c) => {
    const dir = await c.certPath();
    const ports = c.cli === SERVER_CLI ? await serverEnv(dir, c.env) : await clientEnv(dir, c.env);
    const r = await run(c.cli, ['--check-config'], ports.env);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.split('\n');
    expect(lines).toHaveLength(2); // one line and its newline
    expect(lines[0]).toMatch(c.line);
    if ('target' in ports) expect(ports.target.connections()).toBe(0);
  });

  it('a start refuses an unusable identity with the same line, before it listens or dials', async () => {
    const c = failing['an expired certificate'] as Failing;
    const { env, target } = await clientEnv(await c.certPath());
    const checked = await run(CLIENT_CLI, ['--check-config'], env);
    const started = await run(CLIENT_CLI, [], env);
    expect(started.code).toBe(2);
    expect(started.stdout).toBe('');
    expect(started.stderr).toBe(checked.stderr);
    expect(started.stderr.trimEnd()).toMatch(c.line);
    expect(target.connections()).toBe(0);
  });
});

describe('deploy/systemd units', () => {
  it.each(['server', 'client'] as const)(
    'restpipe-%s.service runs the executable that checks its configuration, and stays stopped when the check fails',
    async (node) => {
      const unit = readFileSync(join(REPO_ROOT, 'deploy', 'systemd', `restpipe-${node}.service`), 'utf8');
      const value = (key: string) => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]);
      const [start] = value('ExecStart');
      expect(start).toBe(`/opt/restpipe/node_modules/.bin/restpipe-${node}`);
      // The start itself checks (exit 2); an ExecStartPre= check would be retried for ever.
      expect(value('ExecStartPre')).toEqual([]);
      expect(value('RestartPreventExitStatus')).toEqual(['2']);
      // The same command in this checkout, where npm links the workspace's executables.
      const command = (start as string).replace('/opt/restpipe', REPO_ROOT);
      const pki = await testPki();
      const ports =
        node === 'server'
          ? await serverEnv(await installedIdentity('server', pki.server))
          : await clientEnv(await installedIdentity('client', await pki.client('unit')));
      const child = spawn(command, ['--check-config'], { cwd: REPO_ROOT, env: childEnv(ports.env), stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      const [code] = await once(child, 'close');
      expect(code).toBe(0);
      expect(out).toMatch(new RegExp(`^restpipe-${node}: configuration ok \\(`));
    },
  );
});

describe('RP_LOG_FORMAT', () => {
  it('pretty: readable lines with the time, level, node and message, no JSON', async () => {
    const pki = await testPki();
    const child = spawn(process.execPath, [SERVER_CLI], {
      cwd: REPO_ROOT,
      env: childEnv({
        RP_SERVER_CERT_PATH: await installedIdentity('server', pki.server),
        RP_SERVER_BIND_INTERFACE: '127.0.0.1',
        RP_SERVER_BIND_PORT: '0',
        RP_SERVER_GATEWAY_PORT: '0',
        RP_STATSD_HOST: '',
        RP_LOG_FORMAT: 'pretty',
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(child, 'close');
    onClose(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    await waitFor(() => out.includes('gateway listening'), 15_000, 'the gateway to listen');
    // An answer from the gateway comes after the start's last microtask: the node now drains on SIGTERM.
    const gateway = /gateway listening \{"gateway":"(http:\/\/[^"]+)"\}/.exec(out)?.[1];
    expect((await fetch(`${gateway}/_restpipe/status`)).status).toBe(200);
    child.kill('SIGTERM');
    const [code] = await exited;
    expect(code).toBe(0);
    const lines = out.trimEnd().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const line of lines) {
      expect(line, line).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] (INFO|WARN) \(restpipe-server\): \S/);
      expect(() => JSON.parse(line)).toThrow();
    }
    expect(out).toMatch(/^\[[\d:.]+\] INFO \(restpipe-server\): pipe listening for clients \{"address":"127\.0\.0\.1","port":\d+\}$/m);
    expect(out).toMatch(/INFO \(restpipe-server\): stopping: draining requests in flight$/m);
  });
});
