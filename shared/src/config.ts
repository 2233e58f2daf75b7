/**
 * Settings from `RP_` environment variables: parsed once, validated before
 * anything listens, frozen. A bad value throws a `ConfigError` naming the
 * variable and the value.
 *
 * Precedence, lowest first: built-in defaults, the user config module
 * (`RP_SERVER_USER_CONFIG_MODULE` / `RP_CLIENT_USER_CONFIG_MODULE`, whose
 * exports are named like the variables), then the environment itself, so an
 * operator can always override a packaged module at deploy time.
 */
import { createRequire } from 'node:module';
import { isAbsolute, join, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from './errors.js';
import type { GatewayAddress } from './gateway-listen.js';
import { type NodeName, type Setting, type SettingFields, type SettingNodes, type SettingValues, settingsOf, TRUE_WORDS } from './settings.js';

export type EnvSource = Readonly<Record<string, string | undefined>>;

/** `NAME="value"` for messages, the value quoted so that spaces and control characters show. */
export function showSetting(name: string, value: string): string {
  return `${name}=${JSON.stringify(value)}`;
}

/** A whole number: digits only (no sign, exponent, hex or blanks). */
const WHOLE_NUMBER = /^[0-9]+$/;
/** Seconds: digits with an optional fraction (`0.05`, `.5`, `10`). */
const DECIMAL = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/;

/**
 * Reads typed values from an environment, naming the variable and the value
 * in every error. An empty value counts as unset, except where noted.
 */
export class Env {
  private readonly origins: ReadonlyMap<string, string>;

  /**
   * @param origins where a value came from when not the environment (a user
   *   config module), so an error can say which file to fix; taken from a
   *   `layeredEnv` result when not given.
   */
  constructor(
    private readonly source: EnvSource,
    origins?: ReadonlyMap<string, string>,
  ) {
    this.origins = origins ?? (source as WithOrigins)[ORIGINS] ?? new Map();
  }

  /** `NAME="value"`, plus where it was set when that was not the environment. */
  describe(name: string, value: string): string {
    const origin = this.origins.get(name);
    return origin ? `${showSetting(name, value)} (set by ${origin})` : showSetting(name, value);
  }

  /** The raw value; undefined when unset. */
  raw(name: string): string | undefined {
    return this.source[name];
  }

  /** The value as given; an empty value stays empty (e.g. `RP_STATSD_PREFIX=""`: no prefix). */
  string(name: string, fallback: string): string {
    const value = this.source[name];
    return value === undefined ? fallback : value;
  }

  /** A string where empty means "use the default" (host names, paths). */
  nonEmpty(name: string, fallback: string): string {
    return this.optional(name) ?? fallback;
  }

  /** A string that is unset when empty or blank. */
  optional(name: string): string | undefined {
    const value = this.source[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const value = this.source[name];
    if (value === undefined || value === '') return fallback;
    const n = WHOLE_NUMBER.test(value.trim()) ? Number(value.trim()) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new ConfigError(`${this.describe(name, value)} is not valid: expected a whole number from ${min} to ${max}`);
    }
    return n;
  }

  /** Seconds (decimals allowed), returned in milliseconds. */
  secondsAsMs(name: string, fallbackSeconds: number, minSeconds: number, maxSeconds: number): number {
    const value = this.source[name];
    if (value === undefined || value === '') return Math.round(fallbackSeconds * 1000);
    const n = DECIMAL.test(value.trim()) ? Number(value.trim()) : NaN;
    if (!Number.isFinite(n) || n < minSeconds || n > maxSeconds) {
      throw new ConfigError(`${this.describe(name, value)} is not valid: expected seconds from ${minSeconds} to ${maxSeconds}`);
    }
    return Math.round(n * 1000);
  }

  bool(name: string, fallback: boolean): boolean {
    const value = this.source[name];
    if (value === undefined || value === '') return fallback;
    const v = value.trim().toLowerCase();
    if (TRUE_WORDS.includes(v)) return true;
    if (FALSE_WORDS.includes(v)) return false;
    throw new ConfigError(`${this.describe(name, value)} is not valid: expected 1/0, true/false, yes/no or on/off`);
  }

  oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    const value = this.source[name];
    if (value === undefined || value === '') return fallback;
    const v = value.trim().toLowerCase();
    if (!(allowed as readonly string[]).includes(v)) {
      throw new ConfigError(`${this.describe(name, value)} is not valid: expected one of ${allowed.join(', ')}`);
    }
    return v as T;
  }
}

const FALSE_WORDS = ['0', 'false', 'no', 'off'];

export type { LogLevel } from './settings.js';

/** Where statsd metrics go; undefined in the config when statsd is disabled. */
export interface StatsdConfig {
  readonly host: string;
  readonly port: number;
  readonly prefix: string;
}

/**
 * Settings both nodes share: one field per `both` line of `SETTINGS`
 * (shared/src/settings.ts), which gives each its variable, default, bounds
 * and meaning, plus `statsd` assembled from `RP_STATSD_*`.
 */
export interface CommonConfig extends SettingFields<'both'> {
  /** `RP_STATSD_HOST`, `RP_STATSD_PORT`, `RP_STATSD_PREFIX`; undefined when host or port is empty. */
  readonly statsd: StatsdConfig | undefined;
}

/**
 * Reads every setting of `SETTINGS` read by exactly `nodes`, in table order,
 * each by its type and bounds, keyed by its config field. Relations between
 * settings (one must exceed another, parts that make one object) are the
 * caller's: see `readCommonConfig` and the nodes' loaders.
 */
export function readSettings<N extends SettingNodes>(env: Env, nodes: N): SettingValues<N> {
  const byName = new Map<string, unknown>();
  const values: Record<string, unknown> = {};
  for (const setting of settingsOf(nodes)) {
    if (setting.field === undefined) continue; // the user config module: read by layeredEnv
    const value = readSetting(env, setting, byName);
    byName.set(setting.name, value);
    values[setting.field] = value;
  }
  return values as SettingValues<N>;
}

function readSetting(env: Env, s: Setting, earlier: ReadonlyMap<string, unknown>): unknown {
  const { name } = s;
  if (s.empty === 'disables' && env.raw(name)?.trim() === '') return undefined;
  switch (s.type) {
    case 'int':
    case 'bytes':
      return env.int(name, s.default, typeof s.min === 'number' ? s.min : (earlier.get(s.min) as number), s.max);
    case 'seconds':
      return env.secondsAsMs(name, s.default, s.min as number, s.max);
    case 'enum':
      return env.oneOf(name, s.default, s.values);
    case 'flag':
      return TRUE_WORDS.includes((env.raw(name) ?? '').trim().toLowerCase());
    default: {
      const fallback = s.defaultFrom === undefined ? s.default : (earlier.get(s.defaultFrom) as string | undefined);
      const value = s.empty === 'keep' ? env.raw(name) : env.optional(name);
      const resolved = value ?? fallback;
      const problem = resolved === undefined ? undefined : s.check?.(resolved);
      if (problem !== undefined) throw new ConfigError(`${env.describe(name, resolved as string)} is not valid: ${problem}`);
      return resolved;
    }
  }
}

/** Room in a frame for everything besides a chunk's data (headers, URL, ids). */
const FRAME_OVERHEAD_BYTES = 64 * 1024;

/** The shared settings, with the rules that tie them together checked. */
export function readCommonConfig(env: Env): CommonConfig {
  const { 'statsd.host': statsdHost, 'statsd.port': statsdPort, 'statsd.prefix': statsdPrefix, ...fields } = readSettings(env, 'both');
  if (fields.heartbeatTimeoutMs <= fields.heartbeatIntervalMs) {
    throw new ConfigError(
      `${showSetting('RP_CLIENT_HEARTBEAT_TIMEOUT_S', String(fields.heartbeatTimeoutMs / 1000))} must be longer than ${showSetting('RP_CLIENT_HEARTBEAT_INTERVAL_S', String(fields.heartbeatIntervalMs / 1000))}`,
    );
  }
  if (fields.streamChunkBytes + FRAME_OVERHEAD_BYTES > fields.maxFrameBytes) {
    throw new ConfigError(
      `${showSetting('RP_STREAM_CHUNK_BYTES', String(fields.streamChunkBytes))} does not fit in a frame: ${showSetting('RP_MAX_FRAME_BYTES', String(fields.maxFrameBytes))} must be at least ${FRAME_OVERHEAD_BYTES} bytes larger`,
    );
  }
  return {
    ...fields,
    // DEBUG=1 raises the level to debug; it never lowers trace.
    logLevel: fields.debug && fields.logLevel !== 'trace' ? 'debug' : fields.logLevel,
    maxRequestTimeoutMs: Math.max(fields.maxRequestTimeoutMs, fields.requestTimeoutMs),
    // An empty host or port disables statsd; a port that is set is checked
    // even then, so a typo never hides behind a disabled sink.
    statsd: statsdHost !== undefined && statsdPort !== undefined ? { host: statsdHost, port: statsdPort, prefix: statsdPrefix } : undefined,
  };
}

/**
 * A node's gateway from its `gateway.*` settings: the unix socket when one
 * is set, else host and port (which were checked even when the socket
 * replaces them).
 */
export function gatewayAddress(host: string, port: number, socketPath: string | undefined): GatewayAddress {
  return socketPath !== undefined ? { path: socketPath } : { host, port };
}

/** The setting a node's user config module is named by. */
export function userConfigModuleVariable(node: NodeName): string {
  const setting = settingsOf(node).find((s) => s.type === 'module');
  if (!setting) throw new Error(`no user config module setting for the ${node}`);
  return setting.name;
}

/** Export names a user config module may set: the settings' own names. */
const SETTING_NAME = /^(?:RP_[A-Z0-9_]+|DEBUG)$/;

/**
 * Where each value a user config module set came from, carried on the
 * layered source (not enumerable, so spreading it drops it) for `Env`'s
 * messages.
 */
const ORIGINS: unique symbol = Symbol('restpipe.settingOrigins');
type WithOrigins = EnvSource & { readonly [ORIGINS]?: ReadonlyMap<string, string> };

/**
 * Loads the user config module named by `variable` (a path, or a package
 * specifier) and layers the environment over its exports: the module's
 * values replace the defaults, the environment replaces the module's.
 * Exports not named like a setting (helpers, `default` itself) are ignored;
 * a `default` export that is an object counts as named exports. An `Env`
 * over the result names the module in errors about values it set:
 * `RP_CLIENT_TARGET_PORT="abc" (set by RP_CLIENT_USER_CONFIG_MODULE="./settings.mjs")`.
 */
export async function layeredEnv(source: EnvSource, variable: string): Promise<EnvSource> {
  const { source: layered, origins } = await readUserModule(source, variable);
  if (origins.size > 0) Object.defineProperty(layered, ORIGINS, { value: origins, enumerable: false });
  return layered;
}

async function readUserModule(source: EnvSource, variable: string): Promise<{ source: EnvSource; origins: Map<string, string> }> {
  const origins = new Map<string, string>();
  const spec = source[variable]?.trim();
  if (spec === undefined || spec === '') return { source, origins };
  const setting = showSetting(variable, spec);
  let mod: Record<string, unknown>;
  try {
    mod = await importUserModule(spec);
  } catch (err) {
    throw new ConfigError(`${setting} could not be loaded: ${(err as Error).message}`, { cause: err });
  }
  const values: Record<string, unknown> = { ...(isRecord(mod.default) ? mod.default : {}), ...mod };
  const layer: Record<string, string> = {};
  for (const [key, value] of Object.entries(values)) {
    if (!SETTING_NAME.test(key) || value === undefined || value === null) continue;
    if (key === variable) continue; // the module cannot name another module
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      throw new ConfigError(`${setting} exports ${key} as ${typeof value}; expected a string, number or boolean`);
    }
    layer[key] = String(value);
    if (source[key] === undefined) origins.set(key, setting);
  }
  return { source: { ...layer, ...definedOnly(source) }, origins };
}

function definedOnly(source: EnvSource): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(source)) if (value !== undefined) out[key] = value;
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

/** A path (relative to the working directory) becomes a file URL; a package specifier stays. */
export function toImportSpecifier(spec: string): string {
  if (spec.startsWith('.') || isAbsolute(spec)) return pathToFileURL(resolvePath(spec)).href;
  return spec;
}

/**
 * Imports a module the operator named: a path (relative to the working
 * directory) or a package specifier. A package is looked for where RestPipe
 * is installed first, then from the working directory, so a handler package
 * installed beside the application is found even when RestPipe is installed
 * globally.
 */
export async function importUserModule(spec: string): Promise<Record<string, unknown>> {
  const specifier = toImportSpecifier(spec);
  try {
    return (await import(specifier)) as Record<string, unknown>;
  } catch (err) {
    // Only when the package itself is missing, not a module it imports.
    const missing = (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(`'${bareName(spec)}`);
    if (specifier !== spec || !missing) throw err;
    let resolved: string;
    try {
      resolved = createRequire(join(process.cwd(), 'noop.js')).resolve(spec);
    } catch {
      throw err;
    }
    return (await import(pathToFileURL(resolved).href)) as Record<string, unknown>;
  }
}

/** The package name of a bare specifier: `@scope/pkg/sub` → `@scope/pkg`. */
function bareName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? spec);
}

/** Deep-freezes a resolved config. */
export function freezeConfig<T extends object>(config: T): Readonly<T> {
  for (const value of Object.values(config)) {
    if (value && typeof value === 'object' && !Object.isFrozen(value)) freezeConfig(value as object);
  }
  return Object.freeze(config);
}
