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

const TRUE_WORDS = ['1', 'true', 'yes', 'on'];
const FALSE_WORDS = ['0', 'false', 'no', 'off'];

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Where statsd metrics go; undefined in the config when statsd is disabled. */
export interface StatsdConfig {
  readonly host: string;
  readonly port: number;
  readonly prefix: string;
}

/** Settings both nodes share. */
export interface CommonConfig {
  /** `RP_LOG_LEVEL`, or `debug` when `DEBUG=1`. @default 'info' */
  readonly logLevel: LogLevel;
  /** `DEBUG=1`: verbose logs of connections and frames. @default false */
  readonly debug: boolean;
  /** `RP_EVENT_HANDLER_FQ_CLASS`: `module#ExportedClass`; the example handler when unset. */
  readonly handlerClass: string | undefined;
  /** `RP_REQUEST_TIMEOUT_S`: deadline of a request without `X-RestPipe-Timeout-Ms`. @default 30000 */
  readonly requestTimeoutMs: number;
  /** `RP_REQUEST_TIMEOUT_MAX_S`: the largest deadline a request may ask for. @default 300000 */
  readonly maxRequestTimeoutMs: number;
  /** `RP_CLIENT_HEARTBEAT_INTERVAL_S`: ping when the link was quiet this long. @default 5000 */
  readonly heartbeatIntervalMs: number;
  /** `RP_CLIENT_HEARTBEAT_TIMEOUT_S`: drop the link when the peer was silent this long. @default 10000 */
  readonly heartbeatTimeoutMs: number;
  /** `RP_MAX_FRAME_BYTES`: largest frame accepted from the peer. @default 1 MiB */
  readonly maxFrameBytes: number;
  /** `RP_MAX_BODY_BYTES`: largest body a handler that takes the body whole accepts (413 above); streaming handlers have no cap. @default 8 MiB */
  readonly maxBodyBytes: number;
  /** `RP_STREAM_CHUNK_BYTES`: bodies up to this size travel inside the request or reply frame; larger ones stream in chunks of this size. @default 64 KiB */
  readonly streamChunkBytes: number;
  /** `RP_STREAM_WINDOW_BYTES`: flow-control window per streamed body. @default 4 MiB */
  readonly streamWindowBytes: number;
  /** `RP_STREAM_CONNECTION_BUFFER_BYTES`: streams pause while a connection has this much unsent. @default 4 MiB */
  readonly streamConnectionBufferBytes: number;
  /** `RP_STATSD_HOST`, `RP_STATSD_PORT`, `RP_STATSD_PREFIX`; undefined when host or port is empty. */
  readonly statsd: StatsdConfig | undefined;
  /** `RP_DRAIN_GRACE_S`: on SIGTERM, how long requests in flight may finish. @default 10000 */
  readonly drainGraceMs: number;
}

/** Room in a frame for everything besides a chunk's data (headers, URL, ids). */
const FRAME_OVERHEAD_BYTES = 64 * 1024;

export function readCommonConfig(env: Env): CommonConfig {
  // DEBUG is shared with other tools (the `debug` package reads
  // `DEBUG=express:*`), so only 1/true/yes/on mean anything here; any other
  // value is left to them instead of stopping the node.
  const debug = TRUE_WORDS.includes((env.raw('DEBUG') ?? '').trim().toLowerCase());
  const heartbeatIntervalMs = env.secondsAsMs('RP_CLIENT_HEARTBEAT_INTERVAL_S', 5, 0.05, 3600);
  const heartbeatTimeoutMs = env.secondsAsMs('RP_CLIENT_HEARTBEAT_TIMEOUT_S', 10, 0.1, 7200);
  if (heartbeatTimeoutMs <= heartbeatIntervalMs) {
    throw new ConfigError(
      `${showSetting('RP_CLIENT_HEARTBEAT_TIMEOUT_S', String(heartbeatTimeoutMs / 1000))} must be longer than ${showSetting('RP_CLIENT_HEARTBEAT_INTERVAL_S', String(heartbeatIntervalMs / 1000))}`,
    );
  }
  const maxFrameBytes = env.int('RP_MAX_FRAME_BYTES', 1024 * 1024, 128 * 1024, 0x7fffffff);
  const maxBodyBytes = env.int('RP_MAX_BODY_BYTES', 8 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER);
  const streamChunkBytes = env.int('RP_STREAM_CHUNK_BYTES', 64 * 1024, 1024, 16 * 1024 * 1024);
  if (streamChunkBytes + FRAME_OVERHEAD_BYTES > maxFrameBytes) {
    throw new ConfigError(
      `${showSetting('RP_STREAM_CHUNK_BYTES', String(streamChunkBytes))} does not fit in a frame: ${showSetting('RP_MAX_FRAME_BYTES', String(maxFrameBytes))} must be at least ${FRAME_OVERHEAD_BYTES} bytes larger`,
    );
  }
  const streamWindowBytes = env.int('RP_STREAM_WINDOW_BYTES', 4 * 1024 * 1024, streamChunkBytes, 0x7fffffff);
  const streamConnectionBufferBytes = env.int('RP_STREAM_CONNECTION_BUFFER_BYTES', 4 * 1024 * 1024, streamChunkBytes, 0x7fffffff);
  const requestTimeoutMs = env.secondsAsMs('RP_REQUEST_TIMEOUT_S', 30, 0.001, 86400);
  const maxRequestTimeoutMs = env.secondsAsMs('RP_REQUEST_TIMEOUT_MAX_S', 300, 0.001, 86400);
  // An empty host or port disables statsd; a port that is set is checked
  // even then, so a typo never hides behind a disabled sink.
  const statsdHost = env.string('RP_STATSD_HOST', 'localhost').trim();
  const statsdPortSet = env.string('RP_STATSD_PORT', '8125').trim() !== '';
  const statsdPort = env.int('RP_STATSD_PORT', 8125, 1, 65535);
  const statsdPrefix = env.string('RP_STATSD_PREFIX', 'restpipe.');
  if (/[:|@#\s]/.test(statsdPrefix)) {
    throw new ConfigError(`${env.describe('RP_STATSD_PREFIX', statsdPrefix)} is not valid: a metric name may not hold ':', '|', '@', '#' or blanks`);
  }
  const statsd: StatsdConfig | undefined = statsdHost !== '' && statsdPortSet ? { host: statsdHost, port: statsdPort, prefix: statsdPrefix } : undefined;
  const logLevel = env.oneOf('RP_LOG_LEVEL', 'info', LOG_LEVELS);
  return {
    // DEBUG=1 raises the level to debug; it never lowers trace.
    logLevel: debug && logLevel !== 'trace' ? 'debug' : logLevel,
    debug,
    handlerClass: env.optional('RP_EVENT_HANDLER_FQ_CLASS'),
    requestTimeoutMs,
    maxRequestTimeoutMs: Math.max(maxRequestTimeoutMs, requestTimeoutMs),
    heartbeatIntervalMs,
    heartbeatTimeoutMs,
    maxFrameBytes,
    maxBodyBytes,
    streamChunkBytes,
    streamWindowBytes,
    streamConnectionBufferBytes,
    statsd,
    drainGraceMs: env.secondsAsMs('RP_DRAIN_GRACE_S', 10, 0, 3600),
  };
}

/** A TCP port number, 0 allowed (any free port). */
export function readPort(env: Env, name: string, fallback: number): number {
  return env.int(name, fallback, 0, 65535);
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
