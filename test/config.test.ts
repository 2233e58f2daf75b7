/**
 * Settings: defaults as the README's Options table states them, a deeply
 * frozen result, every bad value refused with the variable and the value
 * named (in process, and by the real executables with exit code 2 before
 * anything listens), user config modules under the environment, and a
 * README that lists every variable the code reads.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { loadClientConfig, type ClientConfig } from '@restpipe/client';
import { loadServerConfig, type ServerConfig } from '@restpipe/server';
import { ConfigError } from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { CLIENT_CLI, REPO_ROOT, SERVER_CLI, installedIdentity, runToExit, spawnNode, tempDir } from './helpers/node-process.js';
import { testPki } from './helpers/identities.js';
import { closeAll } from './helpers/pipe.js';

afterEach(closeAll);

type AnyConfig = ServerConfig | ClientConfig;
type Getter = (c: AnyConfig) => unknown;
const server = (get: (c: ServerConfig) => unknown): { nodes: Array<'server' | 'client'>; get: Getter } => ({ nodes: ['server'], get: get as Getter });
const client = (get: (c: ClientConfig) => unknown): { nodes: Array<'server' | 'client'>; get: Getter } => ({ nodes: ['client'], get: get as Getter });
const both = (get: Getter): { nodes: Array<'server' | 'client'>; get: Getter } => ({ nodes: ['server', 'client'], get });
const seconds = (ms: number) => ms / 1000;
const tcp = (g: { host: string; port: number } | { path: string }) => ('path' in g ? undefined : g);

/** Every documented variable and where its value lands in the resolved config. */
const SETTINGS: Record<string, { nodes: Array<'server' | 'client'>; get: Getter }> = {
  RP_SERVER_BIND_INTERFACE: server((c) => c.bindInterface),
  RP_SERVER_BIND_PORT: server((c) => c.bindPort),
  RP_SERVER_CERT_PATH: server((c) => c.certPath),
  RP_SERVER_GATEWAY_HOST: server((c) => tcp(c.gateway)?.host),
  RP_SERVER_GATEWAY_PORT: server((c) => tcp(c.gateway)?.port),
  RP_SERVER_GATEWAY_SOCKET: server((c) => ('path' in c.gateway ? c.gateway.path : undefined)),
  RP_SERVER_USER_CONFIG_MODULE: server(() => undefined),
  RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS: server((c) => c.hooksClass),
  RP_SERVER_IDLE_HOOK_INTERVAL_S: server((c) => seconds(c.idleHookIntervalMs)),
  RP_SERVER_HANDSHAKE_TIMEOUT_S: server((c) => seconds(c.handshakeTimeoutMs)),
  RP_CLIENT_TARGET_HOSTNAME: client((c) => c.targetHostname),
  RP_CLIENT_TARGET_PORT: client((c) => c.targetPort),
  RP_CLIENT_TARGET_SERVERNAME: client((c) => c.targetServername),
  RP_CLIENT_CERT_PATH: client((c) => c.certPath),
  RP_CLIENT_GATEWAY_HOST: client((c) => tcp(c.gateway)?.host),
  RP_CLIENT_GATEWAY_PORT: client((c) => tcp(c.gateway)?.port),
  RP_CLIENT_GATEWAY_SOCKET: client((c) => ('path' in c.gateway ? c.gateway.path : undefined)),
  RP_CLIENT_USER_CONFIG_MODULE: client(() => undefined),
  RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS: client((c) => c.hooksClass),
  RP_CLIENT_RECONNECT_INITIAL_S: client((c) => seconds(c.reconnectInitialMs)),
  RP_CLIENT_RECONNECT_MAX_S: client((c) => seconds(c.reconnectMaxMs)),
  RP_CLIENT_RECONNECT_STABLE_S: client((c) => seconds(c.reconnectStableMs)),
  RP_CLIENT_CONNECT_TIMEOUT_S: client((c) => seconds(c.connectTimeoutMs)),
  RP_CLIENT_CONNECT_WAIT_S: client((c) => seconds(c.connectWaitMs)),
  RP_CLIENT_HEARTBEAT_INTERVAL_S: both((c) => seconds(c.heartbeatIntervalMs)),
  RP_CLIENT_HEARTBEAT_TIMEOUT_S: both((c) => seconds(c.heartbeatTimeoutMs)),
  RP_EVENT_HANDLER_FQ_CLASS: both((c) => c.handlerClass),
  RP_REQUEST_TIMEOUT_S: both((c) => seconds(c.requestTimeoutMs)),
  RP_REQUEST_TIMEOUT_MAX_S: both((c) => seconds(c.maxRequestTimeoutMs)),
  RP_MAX_BODY_BYTES: both((c) => c.maxBodyBytes),
  RP_MAX_FRAME_BYTES: both((c) => c.maxFrameBytes),
  RP_STREAM_CHUNK_BYTES: both((c) => c.streamChunkBytes),
  RP_STREAM_WINDOW_BYTES: both((c) => c.streamWindowBytes),
  RP_STREAM_CONNECTION_BUFFER_BYTES: both((c) => c.streamConnectionBufferBytes),
  RP_DRAIN_GRACE_S: both((c) => seconds(c.drainGraceMs)),
  RP_STATSD_HOST: both((c) => c.statsd?.host),
  RP_STATSD_PORT: both((c) => c.statsd?.port),
  RP_STATSD_PREFIX: both((c) => c.statsd?.prefix),
  RP_LOG_LEVEL: both((c) => c.logLevel),
  DEBUG: both((c) => c.debug),
};

const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');

/** Rows of the README's Options table: variable → node and default cell. */
function readmeOptions(): Map<string, { node: string; defaultCell: string }> {
  const section = README.slice(README.indexOf('## Options'), README.indexOf('\n## ', README.indexOf('## Options') + 1));
  const rows = new Map<string, { node: string; defaultCell: string }>();
  for (const line of section.split('\n')) {
    const m = /^\|\s*`([A-Z0-9_]+)`\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|/.exec(line);
    if (m) rows.set(m[1] as string, { node: m[2] as string, defaultCell: m[3] as string });
  }
  return rows;
}

/** Every `RP_` variable the nodes' sources read from an environment. */
function variablesReadInSource(): Set<string> {
  const names = new Set<string>();
  const reads = [
    // env.int('RP_…'), env.secondsAsMs('RP_…'), readPort(env, 'RP_…'), …
    /\benv\.\w+\(\s*'(RP_[A-Z0-9_]+|DEBUG)'/g,
    /\breadPort\(\s*env,\s*'(RP_[A-Z0-9_]+)'/g,
    /\blayeredEnv\(\s*\w+,\s*'(RP_[A-Z0-9_]+)'/g,
    /\bloadClass\([^;]*?'(RP_[A-Z0-9_]+)'\s*\)/g,
    /process\.env(?:\.|\[')(RP_[A-Z0-9_]+)/g,
  ];
  for (const pkg of ['shared', 'server', 'client']) {
    const dir = join(REPO_ROOT, pkg, 'src');
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(join(dir, file), 'utf8');
      for (const re of reads) for (const m of text.matchAll(re)) names.add(m[1] as string);
    }
  }
  return names;
}

async function configError(load: Promise<unknown>): Promise<ConfigError> {
  const err = await load.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as ConfigError).code).toBe('RP_CONFIG');
  return err as ConfigError;
}

describe('defaults', () => {
  it('match the README Options table on both nodes', async () => {
    const configs = { server: await loadServerConfig({}), client: await loadClientConfig({}) };
    const rows = readmeOptions();
    expect(rows.size).toBeGreaterThan(30);
    for (const [variable, { node, defaultCell }] of rows) {
      const setting = SETTINGS[variable];
      expect(setting, `the README documents ${variable}, unknown to this test`).toBeDefined();
      const nodes = node === 'both' ? ['server', 'client'] : [node];
      expect(setting?.nodes, `${variable}: README says node "${node}"`).toEqual(nodes);
      for (const n of nodes as Array<'server' | 'client'>) {
        const actual = setting?.get(configs[n]);
        const where = `${variable} on the ${n}: README default ${defaultCell}`;
        const literal = /^`([^`]*)`$/.exec(defaultCell);
        if (literal) expect(String(actual), where).toBe(literal[1]);
        else if (defaultCell === '–') expect(actual === undefined || actual === false, where).toBe(true);
        else if (variable === 'RP_CLIENT_TARGET_SERVERNAME') expect(actual, where).toBe((configs.client as ClientConfig).targetHostname);
        else if (variable === 'RP_EVENT_HANDLER_FQ_CLASS') expect(actual, where).toBeUndefined();
        else throw new Error(`cannot check the README default of ${variable}: ${defaultCell}`);
      }
    }
  });

  it('are what the code documents when nothing is set', async () => {
    const s = await loadServerConfig({});
    expect(s).toMatchObject({
      bindInterface: '0.0.0.0',
      bindPort: 1234,
      certPath: '/etc/restpipe/server',
      gateway: { host: '127.0.0.1', port: 8002 },
      idleHookIntervalMs: 60_000,
      logLevel: 'info',
      debug: false,
      statsd: { host: 'localhost', port: 8125, prefix: 'restpipe.' },
      heartbeatIntervalMs: 5000,
      heartbeatTimeoutMs: 10_000,
    });
    const c = await loadClientConfig({});
    expect(c).toMatchObject({
      targetHostname: 'localhost',
      targetPort: 1234,
      targetServername: 'localhost',
      gateway: { host: '127.0.0.1', port: 8001 },
      reconnectInitialMs: 500,
      reconnectMaxMs: 30_000,
    });
  });

  it('treat an empty host or path as unset, and a set servername as given', async () => {
    const c = await loadClientConfig({
      RP_CLIENT_TARGET_HOSTNAME: '',
      RP_CLIENT_CERT_PATH: ' ',
      RP_CLIENT_GATEWAY_HOST: '',
      RP_CLIENT_TARGET_SERVERNAME: 'pipe.example.com',
    });
    expect(c.targetHostname).toBe('localhost');
    expect(c.certPath).toBe('/etc/restpipe/client');
    expect(c.gateway).toEqual({ host: '127.0.0.1', port: 8001 });
    expect(c.targetServername).toBe('pipe.example.com');
    const s = await loadServerConfig({ RP_SERVER_BIND_INTERFACE: '', RP_SERVER_GATEWAY_SOCKET: '/run/restpipe/server.sock' });
    expect(s.bindInterface).toBe('0.0.0.0');
    expect(s.gateway).toEqual({ path: '/run/restpipe/server.sock' });
  });

  it('parse seconds with decimals, ports, booleans-ish DEBUG and log levels', async () => {
    const s = await loadServerConfig({
      RP_SERVER_IDLE_HOOK_INTERVAL_S: '0.05',
      RP_SERVER_BIND_PORT: ' 4443 ',
      RP_LOG_LEVEL: 'WARN',
      RP_REQUEST_TIMEOUT_S: '.5',
    });
    expect(s.idleHookIntervalMs).toBe(50);
    expect(s.bindPort).toBe(4443);
    expect(s.logLevel).toBe('warn');
    expect(s.requestTimeoutMs).toBe(500);
    expect((await loadServerConfig({ DEBUG: '1' })).logLevel).toBe('debug');
    expect((await loadServerConfig({ DEBUG: 'true', RP_LOG_LEVEL: 'trace' })).logLevel).toBe('trace');
    expect((await loadServerConfig({ DEBUG: '1', RP_LOG_LEVEL: 'silent' })).logLevel).toBe('debug');
    // DEBUG belongs to other tools too (the debug package): their values are no error.
    const other = await loadServerConfig({ DEBUG: 'express:*' });
    expect(other.debug).toBe(false);
    expect(other.logLevel).toBe('info');
  });

  it('disable statsd when the host or the port is empty', async () => {
    expect((await loadServerConfig({ RP_STATSD_HOST: '' })).statsd).toBeUndefined();
    expect((await loadClientConfig({ RP_STATSD_PORT: '' })).statsd).toBeUndefined();
    expect((await loadClientConfig({ RP_STATSD_HOST: '  ', RP_STATSD_PORT: '9125' })).statsd).toBeUndefined();
    expect((await loadClientConfig({ RP_STATSD_HOST: 'stats.local', RP_STATSD_PORT: '9125', RP_STATSD_PREFIX: '' })).statsd).toEqual({
      host: 'stats.local',
      port: 9125,
      prefix: '',
    });
  });
});

describe('the resolved config', () => {
  it('is frozen all the way down', async () => {
    for (const config of [await loadServerConfig({}), await loadClientConfig({})] as AnyConfig[]) {
      expect(Object.isFrozen(config)).toBe(true);
      expect(Object.isFrozen(config.gateway)).toBe(true);
      expect(Object.isFrozen(config.statsd)).toBe(true);
      expect(() => {
        (config as { logLevel: string }).logLevel = 'trace';
      }).toThrow(TypeError);
      expect(() => {
        (config.statsd as { port: number }).port = 1;
      }).toThrow(TypeError);
      expect(config.logLevel).toBe('info');
    }
  });
});

/** [variable, bad value, which loader]: every numeric, boolean-ish and enumerated setting. */
const BAD_VALUES: Array<[string, string, 'server' | 'client']> = [
  ['RP_SERVER_BIND_PORT', 'abc', 'server'],
  ['RP_SERVER_BIND_PORT', '65536', 'server'],
  ['RP_SERVER_BIND_PORT', '-1', 'server'],
  ['RP_SERVER_BIND_PORT', '12.5', 'server'],
  ['RP_SERVER_BIND_PORT', '0x50', 'server'],
  ['RP_SERVER_GATEWAY_PORT', '8o02', 'server'],
  ['RP_SERVER_IDLE_HOOK_INTERVAL_S', '0', 'server'],
  ['RP_SERVER_IDLE_HOOK_INTERVAL_S', 'one minute', 'server'],
  ['RP_SERVER_HANDSHAKE_TIMEOUT_S', '-5', 'server'],
  ['RP_CLIENT_TARGET_PORT', '0', 'client'],
  ['RP_CLIENT_TARGET_PORT', 'https', 'client'],
  ['RP_CLIENT_GATEWAY_PORT', '1e3', 'client'],
  ['RP_CLIENT_RECONNECT_INITIAL_S', 'NaN', 'client'],
  ['RP_CLIENT_RECONNECT_MAX_S', 'Infinity', 'client'],
  ['RP_CLIENT_RECONNECT_STABLE_S', '-1', 'client'],
  ['RP_CLIENT_CONNECT_TIMEOUT_S', '10s', 'client'],
  ['RP_CLIENT_CONNECT_WAIT_S', '1,5', 'client'],
  ['RP_CLIENT_HEARTBEAT_INTERVAL_S', '0', 'client'],
  ['RP_CLIENT_HEARTBEAT_TIMEOUT_S', '-1', 'client'],
  ['RP_CLIENT_HEARTBEAT_TIMEOUT_S', 'abc', 'server'],
  ['RP_REQUEST_TIMEOUT_S', '0', 'server'],
  ['RP_REQUEST_TIMEOUT_MAX_S', 'forever', 'client'],
  ['RP_MAX_BODY_BYTES', '8MB', 'server'],
  ['RP_MAX_FRAME_BYTES', '100', 'client'],
  ['RP_STREAM_CHUNK_BYTES', '12', 'server'],
  ['RP_STREAM_WINDOW_BYTES', '-', 'client'],
  ['RP_STREAM_CONNECTION_BUFFER_BYTES', 'lots', 'server'],
  ['RP_DRAIN_GRACE_S', 'soon', 'server'],
  ['RP_STATSD_PORT', 'statsd', 'server'],
  ['RP_STATSD_PORT', '70000', 'client'],
  ['RP_STATSD_PREFIX', 'rest pipe', 'client'],
  ['RP_STATSD_PREFIX', 'a:b', 'server'],
  ['RP_LOG_LEVEL', 'loud', 'server'],
  ['RP_LOG_LEVEL', 'verbose', 'client'],
];

describe('a bad value', () => {
  it.each(BAD_VALUES)('%s=%j is refused by the %s with a ConfigError naming both', async (variable, value, node) => {
    const load = node === 'server' ? loadServerConfig({ [variable]: value }) : loadClientConfig({ [variable]: value });
    const err = await configError(load);
    expect(err.message).toContain(`${variable}=${JSON.stringify(value)}`);
    expect(err.message).not.toContain('\n');
  });

  it('is refused even where another setting makes it unused (statsd off, gateway on a socket)', async () => {
    await configError(loadServerConfig({ RP_STATSD_HOST: '', RP_STATSD_PORT: 'abc' }));
    await configError(loadClientConfig({ RP_CLIENT_GATEWAY_SOCKET: '/tmp/x.sock', RP_CLIENT_GATEWAY_PORT: 'abc' }));
  });

  it('in a pair that contradicts itself names both variables', async () => {
    const err = await configError(loadClientConfig({ RP_CLIENT_HEARTBEAT_INTERVAL_S: '10', RP_CLIENT_HEARTBEAT_TIMEOUT_S: '5' }));
    expect(err.message).toMatch(/RP_CLIENT_HEARTBEAT_TIMEOUT_S="5".*RP_CLIENT_HEARTBEAT_INTERVAL_S="10"/);
  });

  it('shows control characters and quotes escaped, on one line', async () => {
    const err = await configError(loadServerConfig({ RP_SERVER_BIND_PORT: '12\n"34' }));
    expect(err.message).toContain('RP_SERVER_BIND_PORT="12\\n\\"34"');
  });
});

describe('the real executables', () => {
  const cases: Array<[string, string, string, string]> = [
    ['restpipe-server', 'RP_SERVER_BIND_PORT', 'abc', SERVER_CLI],
    ['restpipe-server', 'RP_SERVER_IDLE_HOOK_INTERVAL_S', '-1', SERVER_CLI],
    ['restpipe-client', 'RP_CLIENT_HEARTBEAT_TIMEOUT_S', '-1', CLIENT_CLI],
    ['restpipe-client', 'RP_LOG_LEVEL', 'loud', CLIENT_CLI],
  ];
  it.each(cases)('%s exits 2 with one line naming %s=%j, and never listens', async (program, variable, value, cli) => {
    const bad = { [variable]: value };
    // Port 0 everywhere else, so a node that wrongly started would not clash.
    const ports = { RP_SERVER_BIND_PORT: '0', RP_SERVER_GATEWAY_PORT: '0', RP_CLIENT_GATEWAY_PORT: '0', RP_STATSD_HOST: '', RP_LOG_LEVEL: 'info' };
    const run = await runToExit(cli, { ...ports, ...bad });
    expect(run.code).toBe(2);
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe(lines[0]?.trim());
    expect(lines[0]).toMatch(new RegExp(`^${program}: RP_CONFIG: `));
    expect(lines[0]).toContain(`${variable}=${JSON.stringify(value)}`);
    // Nothing was logged, so nothing listened: the listeners log when they bind.
    expect(run.stdout).not.toMatch(/listening/);
  });

  it('exit 2 naming the certificate folder when the identity is missing', async () => {
    const dir = await tempDir();
    const run = await runToExit(SERVER_CLI, {
      RP_SERVER_CERT_PATH: join(dir, 'nothing-here'),
      RP_SERVER_BIND_PORT: '0',
      RP_SERVER_GATEWAY_PORT: '0',
      RP_STATSD_HOST: '',
    });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^restpipe-server: RP_CONFIG: RP_SERVER_CERT_PATH=".*nothing-here": cannot read .*restpipe\.server\.key\.pem \(ENOENT\)/);
    expect(run.stdout).not.toMatch(/listening/);
  });

  it('print usage for --help and exit 0', async () => {
    const { spawnSync } = await import('node:child_process');
    for (const cli of [SERVER_CLI, CLIENT_CLI]) {
      const r = spawnSync(process.execPath, [cli, '--help'], { encoding: 'utf8', timeout: 10_000 });
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^usage: restpipe-(server|client)/);
    }
  });
});

describe('the user config module', () => {
  const SETTINGS_MODULE = './test/fixtures/settings.mjs';

  it('replaces the defaults with its exports, named like the variables', async () => {
    const c = await loadClientConfig({ RP_CLIENT_USER_CONFIG_MODULE: SETTINGS_MODULE });
    expect(c.targetPort).toBe(4443);
    expect(c.targetHostname).toBe('pipe.example.com');
    expect(c.targetServername).toBe('pipe.example.com');
    expect(c.reconnectMaxMs).toBe(2500);
    expect(c.requestTimeoutMs).toBe(12_000);
    expect(c.statsd?.prefix).toBe('from-module.');
    expect(c.debug).toBe(true);
    expect(Object.isFrozen(c)).toBe(true);
    const s = await loadServerConfig({ RP_SERVER_USER_CONFIG_MODULE: SETTINGS_MODULE });
    expect(s.bindPort).toBe(4443);
    expect(s.idleHookIntervalMs).toBe(120_000);
    // Each node reads only its own variable.
    expect((await loadServerConfig({ RP_CLIENT_USER_CONFIG_MODULE: SETTINGS_MODULE })).bindPort).toBe(1234);
  });

  it('loses to the environment', async () => {
    const c = await loadClientConfig({ RP_CLIENT_USER_CONFIG_MODULE: SETTINGS_MODULE, RP_CLIENT_TARGET_PORT: '5555', RP_STATSD_PREFIX: '', DEBUG: '0' });
    expect(c.targetPort).toBe(5555);
    expect(c.targetHostname).toBe('pipe.example.com');
    expect(c.statsd?.prefix).toBe('');
    expect(c.debug).toBe(false);
  });

  it('takes an absolute path, a default export object and ignores exports that are not settings', async () => {
    const dir = await tempDir();
    const file = join(dir, 'settings.mjs');
    await writeFile(
      file,
      'export default { RP_CLIENT_TARGET_PORT: 7000, RP_CLIENT_CONNECT_WAIT_S: 3 };\nexport const RP_CLIENT_TARGET_PORT = 7001;\nexport const notASetting = () => 1;\n',
    );
    const c = await loadClientConfig({ RP_CLIENT_USER_CONFIG_MODULE: file });
    expect(c.targetPort).toBe(7001); // a named export beats the default object
    expect(c.connectWaitMs).toBe(3000);
  });

  it('with a bad value fails naming the variable, the value and the module', async () => {
    const dir = await tempDir();
    const file = join(dir, 'bad.mjs');
    await writeFile(file, "export const RP_CLIENT_TARGET_PORT = 'abc';\n");
    const err = await configError(loadClientConfig({ RP_CLIENT_USER_CONFIG_MODULE: file }));
    expect(err.message).toBe(
      `RP_CLIENT_TARGET_PORT="abc" (set by RP_CLIENT_USER_CONFIG_MODULE=${JSON.stringify(file)}) is not valid: expected a whole number from 1 to 65535`,
    );
    // The environment fixes it without touching the module.
    expect((await loadClientConfig({ RP_CLIENT_USER_CONFIG_MODULE: file, RP_CLIENT_TARGET_PORT: '1' })).targetPort).toBe(1);
  });

  it('that exports a setting as an object is refused', async () => {
    const dir = await tempDir();
    const file = join(dir, 'object.mjs');
    await writeFile(file, 'export const RP_SERVER_BIND_PORT = { port: 1 };\n');
    const err = await configError(loadServerConfig({ RP_SERVER_USER_CONFIG_MODULE: file }));
    expect(err.message).toContain('exports RP_SERVER_BIND_PORT as object');
  });

  it('that cannot be loaded fails with a clear error', async () => {
    const missing = await configError(loadServerConfig({ RP_SERVER_USER_CONFIG_MODULE: './test/fixtures/no-such-settings.mjs' }));
    expect(missing.message).toMatch(/^RP_SERVER_USER_CONFIG_MODULE="\.\/test\/fixtures\/no-such-settings\.mjs" could not be loaded: Cannot find module/);
    const pkg = await configError(loadClientConfig({ RP_CLIENT_USER_CONFIG_MODULE: 'no-such-package/settings' }));
    expect(pkg.message).toMatch(/^RP_CLIENT_USER_CONFIG_MODULE="no-such-package\/settings" could not be loaded: Cannot find package 'no-such-package/);
    const dir = await tempDir();
    const broken = join(dir, 'broken.mjs');
    await writeFile(broken, "throw new Error('settings exploded');\n");
    const threw = await configError(loadClientConfig({ RP_CLIENT_USER_CONFIG_MODULE: broken }));
    expect(threw.message).toContain('could not be loaded: settings exploded');
  });

  it('stops the real executable with exit 2 when missing', async () => {
    const run = await runToExit(CLIENT_CLI, { RP_CLIENT_USER_CONFIG_MODULE: './missing-settings.mjs', RP_CLIENT_GATEWAY_PORT: '0', RP_STATSD_HOST: '' });
    expect(run.code).toBe(2);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/^restpipe-client: RP_CONFIG: RP_CLIENT_USER_CONFIG_MODULE="\.\/missing-settings\.mjs" could not be loaded/);
  });

  it('may be a package installed beside the application (resolved from the working directory)', async () => {
    const app = await tempDir('restpipe-app-');
    const pkg = join(app, 'node_modules', 'site-settings');
    await mkdir(pkg, { recursive: true });
    await writeFile(join(pkg, 'package.json'), JSON.stringify({ name: 'site-settings', type: 'module', exports: { './restpipe': './restpipe.js' } }));
    // A bad value on purpose: the exit proves the module was found and read.
    await writeFile(join(pkg, 'restpipe.js'), "export const RP_SERVER_BIND_PORT = 'from-package';\n");
    const run = await runToExit(SERVER_CLI, { RP_SERVER_USER_CONFIG_MODULE: 'site-settings/restpipe', RP_STATSD_HOST: '' }, { cwd: app });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('RP_SERVER_BIND_PORT="from-package" (set by RP_SERVER_USER_CONFIG_MODULE="site-settings/restpipe")');
  });
});

describe('logs', () => {
  /** The real client, dialing a port where nothing listens, until it logged a failed try. */
  async function clientLogs(env: Record<string, string>) {
    const pki = await testPki();
    const node = spawnNode(CLIENT_CLI, {
      RP_CLIENT_CERT_PATH: await installedIdentity('client', await pki.client('logger')),
      RP_CLIENT_TARGET_HOSTNAME: '127.0.0.1',
      RP_CLIENT_TARGET_SERVERNAME: 'localhost',
      RP_CLIENT_TARGET_PORT: '1',
      RP_CLIENT_GATEWAY_PORT: '0',
      RP_STATSD_HOST: '',
      ...env,
    });
    await node.waitForLog('could not connect to the server');
    return node.logs();
  }
  const levels = (logs: Array<Record<string, unknown>>) => new Set(logs.map((l) => l['level']));

  it('are pino JSON lines at info by default', async () => {
    const logs = await clientLogs({});
    expect(logs.every((l) => l['name'] === 'restpipe-client' && typeof l['time'] === 'number')).toBe(true);
    expect(logs.some((l) => l['msg'] === 'gateway listening')).toBe(true);
    expect(levels(logs).has(20)).toBe(false);
  });

  it('go down to debug with DEBUG=1', async () => {
    const logs = await clientLogs({ DEBUG: '1' });
    expect(levels(logs).has(20)).toBe(true);
    expect(logs.some((l) => l['level'] === 20 && l['msg'] === 'client state')).toBe(true);
  });

  it('follow RP_LOG_LEVEL', async () => {
    const logs = await clientLogs({ RP_LOG_LEVEL: 'warn' });
    expect([...levels(logs)]).toEqual([40]);
  });
});

describe('the README', () => {
  it('lists every variable the nodes read, and reads every variable it lists', () => {
    const read = variablesReadInSource();
    const documented = new Set(readmeOptions().keys());
    expect(read.size).toBeGreaterThan(30);
    expect([...read].filter((v) => !documented.has(v)).sort(), 'read in the code but missing from the README Options table').toEqual([]);
    expect([...documented].filter((v) => !read.has(v)).sort(), 'in the README Options table but read nowhere').toEqual([]);
  });

  it('says that the environment wins over the user config module', () => {
    expect(README).toMatch(/the environment wins over the module/i);
  });
});
