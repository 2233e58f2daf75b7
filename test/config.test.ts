/**
 * Settings: one table (shared/src/settings.ts) that the README's Options
 * table mirrors row by row and that the parsing follows: defaults as the
 * table states them, every bound taken and every value past one refused with
 * the variable and the value named (in process, and by the real executables
 * with exit code 2 before anything listens), a deeply frozen result, user
 * config modules under the environment, and help text from the same table.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { loadClientConfig, type ClientConfig } from '@restpipe/client';
import { loadServerConfig, type ServerConfig } from '@restpipe/server';
import {
  ConfigError,
  SETTINGS,
  acceptedValues,
  defaultCell,
  findSetting,
  formatSettingsHelp,
  settingsHelp,
  type EnvSource,
  type NodeName,
  type NumberSetting,
  type Setting,
} from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { CLIENT_CLI, REPO_ROOT, SERVER_CLI, installedIdentity, runToExit, spawnNode, tempDir } from './helpers/node-process.js';
import { testPki } from './helpers/identities.js';
import { closeAll } from './helpers/pipe.js';

afterEach(closeAll);

type AnyConfig = ServerConfig | ClientConfig;
const TABLE = SETTINGS as readonly Setting[];
const nodesOf = (s: Setting): NodeName[] => (s.nodes === 'both' ? ['server', 'client'] : [s.nodes]);
const load = (node: NodeName, env: EnvSource): Promise<AnyConfig> => (node === 'server' ? loadServerConfig(env) : loadClientConfig(env));
const isNumber = (s: Setting): s is NumberSetting => s.type === 'int' || s.type === 'bytes' || s.type === 'seconds';
/** [setting, node] for every node that reads it. */
const perNode = (settings: readonly Setting[]): Array<[string, NodeName, Setting]> =>
  settings.flatMap((s) => nodesOf(s).map((n): [string, NodeName, Setting] => [s.name, n, s]));

/** The value at a setting's field: `gateway.port` is `config.gateway.port`. */
function fieldValue(config: AnyConfig, field: string): unknown {
  return field.split('.').reduce<unknown>((v, key) => (v as Record<string, unknown> | undefined)?.[key], config);
}

/** A number in a setting's unit as the config holds it (seconds in ms). */
const inConfig = (s: NumberSetting, value: number) => (s.type === 'seconds' ? Math.round(value * 1000) : value);

/** The smallest value of a number setting, a bound that names another setting taken at that one's default. */
function minOf(s: NumberSetting): number {
  if (typeof s.min === 'number') return s.min;
  return (findSetting(s.min) as NumberSetting).default;
}

/** Field names the rest of the code reads: one renamed or dropped in the table fails to compile here. */
const COMMON_FIELDS = [
  'logLevel',
  'debug',
  'handlerClass',
  'requestTimeoutMs',
  'maxRequestTimeoutMs',
  'heartbeatIntervalMs',
  'heartbeatTimeoutMs',
  'maxFrameBytes',
  'maxBodyBytes',
  'streamChunkBytes',
  'streamWindowBytes',
  'streamConnectionBufferBytes',
  'maxInFlight',
  'statsd',
  'drainGraceMs',
] as const satisfies ReadonlyArray<keyof ServerConfig & keyof ClientConfig>;
const SERVER_FIELDS: ReadonlyArray<keyof ServerConfig> = [
  ...COMMON_FIELDS,
  'bindInterface',
  'bindPort',
  'certPath',
  'gateway',
  'hooksClass',
  'idleHookIntervalMs',
  'handshakeTimeoutMs',
  'handshakesMax',
  'handshakeQueueMs',
];
const CLIENT_FIELDS: ReadonlyArray<keyof ClientConfig> = [
  ...COMMON_FIELDS,
  'targetHostname',
  'targetPort',
  'targetServername',
  'targets',
  'certPath',
  'gateway',
  'hooksClass',
  'reconnectInitialMs',
  'reconnectMaxMs',
  'reconnectStableMs',
  'connectTimeoutMs',
  'connectHandshakeTimeoutMs',
  'connectWaitMs',
];

const README = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const OPTIONS_SECTION = README.slice(README.indexOf('## Options'), README.indexOf('\n## ', README.indexOf('## Options') + 1));

interface OptionRow {
  variable: string;
  node: string;
  defaultCell: string;
  meaning: string;
}

/** Rows of the README's Options table, in order. */
function readmeOptions(): OptionRow[] {
  const rows: OptionRow[] = [];
  for (const line of OPTIONS_SECTION.split('\n')) {
    const m = /^\|\s*`([A-Z0-9_]+)`\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|\s*(.+?)\s*\|\s*$/.exec(line);
    if (m) rows.push({ variable: m[1] as string, node: m[2] as string, defaultCell: m[3] as string, meaning: m[4] as string });
  }
  return rows;
}

/** The README row a setting must have. */
const rowOf = (s: Setting): OptionRow => ({ variable: s.name, node: s.nodes, defaultCell: defaultCell(s), meaning: s.doc });
const markdownRow = (r: OptionRow) => `| \`${r.variable}\` | ${r.node} | ${r.defaultCell} | ${r.meaning} |`;

/** `RP_` variables the nodes' sources name where they read them outside the table. */
function variablesReadInSource(): Set<string> {
  const names = new Set<string>();
  const reads = [
    // env.int('RP_…'), env.raw('DEBUG'), loadClass(…, 'RP_…'), process.env.RP_…
    /\benv\.\w+\(\s*'(RP_[A-Z0-9_]+|DEBUG)'/g,
    /\blayeredEnv\(\s*\w+,\s*'(RP_[A-Z0-9_]+)'/g,
    /\bloadClass\([^;]*?'(RP_[A-Z0-9_]+)'\s*\)/g,
    /\bloadIdentity\([^;]*?'(RP_[A-Z0-9_]+)'\s*\)/g,
    /process\.env(?:\.|\[')(RP_[A-Z0-9_]+|DEBUG)/g,
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

describe('the settings table', () => {
  it('is the README Options table, row by row, in order', () => {
    const documented = readmeOptions();
    expect(documented.length).toBeGreaterThan(30);
    const inReadme = new Set(documented.map((r) => r.variable));
    const inTable = new Set(TABLE.map((s) => s.name));
    expect(
      TABLE.filter((s) => !inReadme.has(s.name)).map((s) => markdownRow(rowOf(s))),
      'in shared/src/settings.ts but missing from the README Options table',
    ).toEqual([]);
    expect(
      documented.filter((r) => !inTable.has(r.variable)).map((r) => r.variable),
      'in the README Options table but missing from shared/src/settings.ts',
    ).toEqual([]);
    expect(documented.map(markdownRow)).toEqual(TABLE.map((s) => markdownRow(rowOf(s))));
  });

  it('names each variable once, each field once per node, and only earlier settings of the same nodes', () => {
    expect(new Set(TABLE.map((s) => s.name)).size).toBe(TABLE.length);
    for (const node of ['server', 'client'] as const) {
      const fields = TABLE.filter((s) => s.field !== undefined && nodesOf(s).includes(node)).map((s) => s.field);
      expect(new Set(fields).size, node).toBe(fields.length);
      expect(
        TABLE.filter((s) => s.type === 'module' && s.nodes === node),
        `one user config module for the ${node}`,
      ).toHaveLength(1);
    }
    TABLE.forEach((s, i) => {
      const refs = [isNumber(s) && typeof s.min === 'string' ? s.min : undefined, 'defaultFrom' in s ? s.defaultFrom : undefined];
      for (const ref of refs.filter((r) => r !== undefined)) {
        const target = TABLE.findIndex((t) => t.name === ref);
        expect(target, `${s.name} names ${ref}`).toBeGreaterThanOrEqual(0);
        expect(target, `${s.name} names ${ref}, which must come first`).toBeLessThan(i);
        expect(TABLE[target]?.nodes, `${s.name} names ${ref} of other nodes`).toBe(s.nodes);
      }
    });
  });

  it('has units in the names, and defaults within the bounds', () => {
    for (const s of TABLE) {
      expect(s.name.endsWith('_S'), `${s.name}: seconds and only seconds end in _S`).toBe(s.type === 'seconds');
      expect(s.name.endsWith('_BYTES'), `${s.name}: bytes and only bytes end in _BYTES`).toBe(s.type === 'bytes');
      if (s.type === 'seconds') expect(s.field, s.name).toMatch(/Ms$/);
      if (s.type === 'bytes') expect(s.field, s.name).toMatch(/Bytes$/);
      if (isNumber(s)) {
        expect(s.default, s.name).toBeGreaterThanOrEqual(minOf(s));
        expect(s.default, s.name).toBeLessThanOrEqual(s.max);
      }
      if (s.type === 'enum') expect(s.values, s.name).toContain(s.default);
    }
  });

  it('gives every setting whose empty value is not "unset" a word in the README', () => {
    const special = TABLE.filter((s) => s.empty !== undefined && s.empty !== 'default');
    expect(special.map((s) => s.name)).toEqual(['RP_STATSD_HOST', 'RP_STATSD_PORT', 'RP_STATSD_PREFIX']);
    expect(OPTIONS_SECTION).toContain('`RP_STATSD_HOST`/`RP_STATSD_PORT` (empty disables statsd)');
    expect(OPTIONS_SECTION).toContain('`RP_STATSD_PREFIX` (empty: no prefix)');
  });
});

describe('help text', () => {
  it("lists a node's own settings, then the shared ones, with the README's defaults and meanings", () => {
    for (const node of ['server', 'client'] as const) {
      const other = node === 'server' ? 'client' : 'server';
      const help = settingsHelp(node);
      const expected = [...TABLE.filter((s) => s.nodes === node), ...TABLE.filter((s) => s.nodes === 'both')].map((s) => s.name);
      expect(help.map((h) => h.name)).toEqual(expected);
      expect(help.some((h) => findSetting(h.name)?.nodes === other)).toBe(false);
      for (const h of help) {
        const row = readmeOptions().find((r) => r.variable === h.name);
        expect(h.default, h.name).toBe(row?.defaultCell.replaceAll('`', ''));
        expect(h.meaning, h.name).toBe(row?.meaning.replaceAll('`', ''));
      }
    }
    expect(settingsHelp('client').find((h) => h.name === 'RP_MAX_IN_FLIGHT')).toEqual({
      name: 'RP_MAX_IN_FLIGHT',
      default: '10000',
      accepts: 'a whole number from 1 to 1000000',
      meaning: 'most requests in flight per pipe and direction; beyond it the gateway answers 503 with Retry-After at once',
    });
    expect(settingsHelp('server').find((h) => h.name === 'RP_STREAM_WINDOW_BYTES')?.accepts).toBe('a whole number from RP_STREAM_CHUNK_BYTES to 2147483647');
    expect(settingsHelp('server').find((h) => h.name === 'RP_CLIENT_TARGET_SERVERNAME')).toBeUndefined();
  });

  it('formats as plain text for a terminal, one setting per block', () => {
    const text = formatSettingsHelp('server');
    expect(text).not.toContain('`');
    expect(text).toContain("  RP_SERVER_BIND_PORT  (default: 1234; a whole number from 0 to 65535)\n      the pipe's TLS port\n");
    expect(text).toContain('  RP_LOG_LEVEL  (default: info; one of fatal, error, warn, info, debug, trace, silent)\n');
    expect(text).not.toContain('RP_CLIENT_TARGET_PORT');
    expect(text.split('\n').filter((l) => /^ {2}\S/.test(l))).toHaveLength(settingsHelp('server').length);
  });
});

describe('defaults', () => {
  it.each(perNode(TABLE.filter((s) => s.field !== undefined)))('%s on the %s is the table default when unset', async (_name, node, s) => {
    const config = await load(node, {});
    const actual = fieldValue(config, s.field as string);
    if (s.type === 'flag') expect(actual).toBe(false);
    else if (isNumber(s)) expect(actual).toBe(inConfig(s, s.default));
    else if ('defaultFrom' in s && s.defaultFrom !== undefined) expect(actual).toBe(fieldValue(config, findSetting(s.defaultFrom)?.field as string));
    else expect(actual).toBe(s.default);
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
      maxInFlight: 10_000,
    });
    expect(s.handlerClass).toBeUndefined();
    const c = await loadClientConfig({});
    expect(c).toMatchObject({
      targetHostname: 'localhost',
      targetPort: 1234,
      targetServername: undefined,
      targets: [{ host: 'localhost', port: 1234, servername: 'localhost' }],
      gateway: { host: '127.0.0.1', port: 8001 },
      reconnectInitialMs: 500,
      reconnectMaxMs: 30_000,
      maxInFlight: 10_000,
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
    expect(c.targets).toEqual([{ host: 'localhost', port: 1234, servername: 'pipe.example.com' }]);
    // The servername follows a set hostname when unset itself.
    expect((await loadClientConfig({ RP_CLIENT_TARGET_HOSTNAME: 'pipe.example.net' })).targets[0]?.servername).toBe('pipe.example.net');
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
    for (const on of ['1', 'TRUE', ' yes ', 'On']) expect((await loadClientConfig({ DEBUG: on })).debug, on).toBe(true);
  });

  it('raise the largest request deadline and the reconnect ceiling to the values below them', async () => {
    const s = await loadServerConfig({ RP_REQUEST_TIMEOUT_S: '400', RP_REQUEST_TIMEOUT_MAX_S: '100' });
    expect(s.requestTimeoutMs).toBe(400_000);
    expect(s.maxRequestTimeoutMs).toBe(400_000);
    const c = await loadClientConfig({ RP_CLIENT_RECONNECT_INITIAL_S: '20', RP_CLIENT_RECONNECT_MAX_S: '5' });
    expect(c.reconnectInitialMs).toBe(20_000);
    expect(c.reconnectMaxMs).toBe(20_000);
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

  it('has one field per setting of its node (parts of gateway and statsd as one), and every field other code reads', async () => {
    for (const [node, existing] of [
      ['server', SERVER_FIELDS],
      ['client', CLIENT_FIELDS],
    ] as const) {
      const fromTable = new Set(TABLE.filter((s) => s.field !== undefined && nodesOf(s).includes(node)).map((s) => s.field?.split('.')[0]));
      // Fields made from several settings, besides the table's own.
      const derived = node === 'client' ? ['targets'] : [];
      const keys = Object.keys(await load(node, {}));
      expect(keys.sort(), node).toEqual([...fromTable, ...derived].sort());
      expect(keys, node).toEqual(expect.arrayContaining([...existing]));
    }
  });
});

/**
 * Settings at the far end of their bounds would trip the rules between
 * settings (a heartbeat timeout above its interval, a chunk that fits a
 * frame, deadlines raised to the ones below them): these make room.
 */
const ROOM: Record<string, string> = {
  RP_CLIENT_HEARTBEAT_INTERVAL_S: '0.05',
  RP_CLIENT_HEARTBEAT_TIMEOUT_S: '7200',
  RP_MAX_FRAME_BYTES: '2147483647',
  RP_STREAM_WINDOW_BYTES: '2147483647',
  RP_STREAM_CONNECTION_BUFFER_BYTES: '2147483647',
  RP_REQUEST_TIMEOUT_S: '0.001',
  RP_CLIENT_RECONNECT_INITIAL_S: '0.001',
};

describe('every whole-number and seconds setting', () => {
  const numeric = perNode(TABLE.filter(isNumber));

  it.each(numeric)('%s on the %s takes both bounds', async (name, node, setting) => {
    const s = setting as NumberSetting;
    for (const bound of [minOf(s), s.max]) {
      const config = await load(node, { ...ROOM, [name]: String(bound) });
      expect(fieldValue(config, s.field as string), `${name}=${bound}`).toBe(inConfig(s, bound));
    }
    // Empty counts as unset, except where it disables.
    const empty = await load(node, { [name]: '' });
    if (s.empty === 'disables') expect(fieldValue(empty, (s.field as string).split('.')[0] as string)).toBeUndefined();
    else expect(fieldValue(empty, s.field as string)).toBe(inConfig(s, s.default));
  });

  it.each(numeric)(
    '%s on the %s refuses a non-number and a value past either bound, naming the variable, the value and the bounds',
    async (name, node, setting) => {
      const s = setting as NumberSetting;
      const min = minOf(s);
      const step = s.type === 'seconds' ? 0.001 : 1;
      const below = min > 0 ? (s.type === 'seconds' ? min / 2 : min - 1) : -1;
      const kind = s.type === 'seconds' ? 'seconds' : 'a whole number';
      for (const bad of ['abc', String(below), String(s.max + step), `${s.default} `.repeat(2).trim()]) {
        const err = await configError(load(node, { ...ROOM, [name]: bad }));
        expect(err.message).toBe(`${name}=${JSON.stringify(bad)} is not valid: expected ${kind} from ${min} to ${s.max}`);
        if (typeof s.min === 'number') expect(err.message.endsWith(`expected ${acceptedValues(s)}`)).toBe(true);
      }
    },
  );
});

describe('every text setting', () => {
  const text = perNode(TABLE.filter((s) => s.field !== undefined && (s.type === 'host' || s.type === 'path' || s.type === 'class' || s.type === 'string')));

  it.each(text)('%s on the %s takes a value, and an empty one as the table says', async (name, node, s) => {
    const field = s.field as string;
    // Text is taken as given; host names, paths and classes are trimmed.
    expect(fieldValue(await load(node, { [name]: s.type === 'string' ? 'some-value' : ' some-value ' }), field)).toBe('some-value');
    const unset = fieldValue(await load(node, {}), field);
    // A blank prefix (the one text kept as given) is refused as a metric name: see BAD_VALUES.
    for (const empty of s.empty === 'keep' ? [''] : ['', '  ']) {
      const config = await load(node, { [name]: empty });
      if (s.empty === 'disables') expect(fieldValue(config, field.split('.')[0] as string), JSON.stringify(empty)).toBeUndefined();
      else if (s.empty === 'keep') expect(fieldValue(config, field), JSON.stringify(empty)).toBe(empty);
      else expect(fieldValue(config, field), JSON.stringify(empty)).toBe(unset);
    }
  });
});

describe('every enumerated setting', () => {
  it.each(perNode(TABLE.filter((s) => s.type === 'enum')))('%s on the %s takes each of its values in any case, and refuses others', async (name, node, s) => {
    if (s.type !== 'enum') throw new Error('not an enum');
    for (const value of s.values) {
      expect(fieldValue(await load(node, { [name]: value.toUpperCase() }), s.field as string)).toBe(value);
    }
    const err = await configError(load(node, { [name]: 'none-of-them' }));
    expect(err.message).toBe(`${name}="none-of-them" is not valid: expected ${acceptedValues(s)}`);
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
  ['RP_CLIENT_TARGET_HOSTNAME', 'a.example.com,,b.example.com', 'client'],
  ['RP_CLIENT_TARGET_HOSTNAME', 'a.example.com:99999', 'client'],
  ['RP_CLIENT_TARGET_HOSTNAME', '::1', 'client'],
  ['RP_CLIENT_TARGET_HOSTNAME', 'a.example.com b.example.com', 'client'],
  ['RP_CLIENT_GATEWAY_PORT', '1e3', 'client'],
  ['RP_CLIENT_RECONNECT_INITIAL_S', 'NaN', 'client'],
  ['RP_CLIENT_RECONNECT_MAX_S', 'Infinity', 'client'],
  ['RP_CLIENT_RECONNECT_STABLE_S', '-1', 'client'],
  ['RP_CLIENT_CONNECT_TIMEOUT_S', '10s', 'client'],
  ['RP_CLIENT_HANDSHAKE_TIMEOUT_S', '0', 'client'],
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

describe('a list of servers in RP_CLIENT_TARGET_HOSTNAME', () => {
  it('gives one target per entry, a bare host on RP_CLIENT_TARGET_PORT, each checked against its own host', async () => {
    const c = await loadClientConfig({ RP_CLIENT_TARGET_HOSTNAME: ' a.example.com:4443, b.example.com ,[::1]:9000,10.0.0.7', RP_CLIENT_TARGET_PORT: '1500' });
    expect(c.targets).toEqual([
      { host: 'a.example.com', port: 4443, servername: 'a.example.com' },
      { host: 'b.example.com', port: 1500, servername: 'b.example.com' },
      { host: '::1', port: 9000, servername: '::1' },
      { host: '10.0.0.7', port: 1500, servername: '10.0.0.7' },
    ]);
    expect(Object.isFrozen(c.targets) && c.targets.every((t) => Object.isFrozen(t))).toBe(true);
  });

  it('with RP_CLIENT_TARGET_SERVERNAME set, requires that name of every server', async () => {
    const c = await loadClientConfig({ RP_CLIENT_TARGET_HOSTNAME: '10.0.0.7,10.0.0.8:1235', RP_CLIENT_TARGET_SERVERNAME: 'pipe.example.com' });
    expect(c.targets.map((t) => t.servername)).toEqual(['pipe.example.com', 'pipe.example.com']);
    expect(c.targetServername).toBe('pipe.example.com');
  });

  it('is refused with the variable, the value and the bad entry named', async () => {
    const err = await configError(loadClientConfig({ RP_CLIENT_TARGET_HOSTNAME: 'a.example.com:4443,b.example.com:70000' }));
    expect(err.message).toBe(
      'RP_CLIENT_TARGET_HOSTNAME="a.example.com:4443,b.example.com:70000" is not valid: "b.example.com:70000": the port must be from 1 to 65535',
    );
    const empty = await configError(loadClientConfig({ RP_CLIENT_TARGET_HOSTNAME: 'a.example.com,' }));
    expect(empty.message).toBe('RP_CLIENT_TARGET_HOSTNAME="a.example.com," is not valid: "" is not a host or host:port');
  });
});

describe('the real executables', () => {
  const cases: Array<[string, string, string, string]> = [
    ['restpipe-server', 'RP_SERVER_BIND_PORT', 'abc', SERVER_CLI],
    ['restpipe-server', 'RP_SERVER_IDLE_HOOK_INTERVAL_S', '-1', SERVER_CLI],
    ['restpipe-client', 'RP_CLIENT_HEARTBEAT_TIMEOUT_S', '-1', CLIENT_CLI],
    ['restpipe-client', 'RP_LOG_LEVEL', 'loud', CLIENT_CLI],
    ['restpipe-client', 'RP_CLIENT_TARGET_HOSTNAME', 'a.example.com:4443,b.example.com:', CLIENT_CLI],
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
    expect(c.targets).toEqual([{ host: 'pipe.example.com', port: 4443, servername: 'pipe.example.com' }]);
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
    // The table drives the parsing (every line of it is read: see the tests
    // above); names read outside it must be in it too.
    const read = variablesReadInSource();
    const documented = new Set(readmeOptions().map((r) => r.variable));
    expect(read.size).toBeGreaterThan(0);
    expect([...read].filter((v) => !documented.has(v)).sort(), 'read in the code but missing from the README Options table').toEqual([]);
    expect([...read].filter((v) => findSetting(v) === undefined).sort(), 'read in the code but missing from shared/src/settings.ts').toEqual([]);
    expect([...documented].filter((v) => findSetting(v) === undefined).sort(), 'in the README Options table but read nowhere').toEqual([]);
  });

  it('says that the environment wins over the user config module', () => {
    expect(README).toMatch(/the environment wins over the module/i);
  });
});
