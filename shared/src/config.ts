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
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from './errors.js';

export type EnvSource = Readonly<Record<string, string | undefined>>;

/** Reads typed values from an environment, naming the variable in every error. */
export class Env {
  constructor(private readonly source: EnvSource) {}

  /** The raw value; undefined when unset. */
  raw(name: string): string | undefined {
    return this.source[name];
  }

  string(name: string, fallback: string): string {
    const value = this.source[name];
    return value === undefined ? fallback : value;
  }

  /** A string that is unset when empty. */
  optional(name: string): string | undefined {
    const value = this.source[name];
    return value === undefined || value === '' ? undefined : value;
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const value = this.source[name];
    if (value === undefined || value === '') return fallback;
    const n = Number(value.trim());
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new ConfigError(`${name}="${value}" is not valid: expected a whole number from ${min} to ${max}`);
    }
    return n;
  }

  /** Seconds (decimals allowed), returned in milliseconds. */
  secondsAsMs(name: string, fallbackSeconds: number, minSeconds: number, maxSeconds: number): number {
    const value = this.source[name];
    if (value === undefined || value === '') return Math.round(fallbackSeconds * 1000);
    const n = Number(value.trim());
    if (!Number.isFinite(n) || n < minSeconds || n > maxSeconds) {
      throw new ConfigError(`${name}="${value}" is not valid: expected seconds from ${minSeconds} to ${maxSeconds}`);
    }
    return Math.round(n * 1000);
  }

  bool(name: string, fallback: boolean): boolean {
    const value = this.source[name];
    if (value === undefined || value === '') return fallback;
    const v = value.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    throw new ConfigError(`${name}="${value}" is not valid: expected 1/0, true/false, yes/no or on/off`);
  }

  oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    const value = this.source[name];
    if (value === undefined || value === '') return fallback;
    if (!(allowed as readonly string[]).includes(value)) {
      throw new ConfigError(`${name}="${value}" is not valid: expected one of ${allowed.join(', ')}`);
    }
    return value as T;
  }
}

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
  /** `RP_STREAM_WINDOW_BYTES`: flow-control window per streamed body. @default 1 MiB */
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
  const debug = env.bool('DEBUG', false);
  const heartbeatIntervalMs = env.secondsAsMs('RP_CLIENT_HEARTBEAT_INTERVAL_S', 5, 0.05, 3600);
  const heartbeatTimeoutMs = env.secondsAsMs('RP_CLIENT_HEARTBEAT_TIMEOUT_S', 10, 0.1, 7200);
  if (heartbeatTimeoutMs <= heartbeatIntervalMs) {
    throw new ConfigError(
      `RP_CLIENT_HEARTBEAT_TIMEOUT_S="${heartbeatTimeoutMs / 1000}" must be longer than RP_CLIENT_HEARTBEAT_INTERVAL_S="${heartbeatIntervalMs / 1000}"`,
    );
  }
  const maxFrameBytes = env.int('RP_MAX_FRAME_BYTES', 1024 * 1024, 128 * 1024, 0x7fffffff);
  const maxBodyBytes = env.int('RP_MAX_BODY_BYTES', 8 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER);
  const streamChunkBytes = env.int('RP_STREAM_CHUNK_BYTES', 64 * 1024, 1024, 16 * 1024 * 1024);
  if (streamChunkBytes + FRAME_OVERHEAD_BYTES > maxFrameBytes) {
    throw new ConfigError(
      `RP_STREAM_CHUNK_BYTES="${streamChunkBytes}" does not fit in a frame: RP_MAX_FRAME_BYTES="${maxFrameBytes}" must be at least ${FRAME_OVERHEAD_BYTES} bytes larger`,
    );
  }
  const streamWindowBytes = env.int('RP_STREAM_WINDOW_BYTES', 1024 * 1024, streamChunkBytes, 0x7fffffff);
  const streamConnectionBufferBytes = env.int('RP_STREAM_CONNECTION_BUFFER_BYTES', 4 * 1024 * 1024, streamChunkBytes, 0x7fffffff);
  const requestTimeoutMs = env.secondsAsMs('RP_REQUEST_TIMEOUT_S', 30, 0.001, 86400);
  const maxRequestTimeoutMs = env.secondsAsMs('RP_REQUEST_TIMEOUT_MAX_S', 300, 0.001, 86400);
  const statsdHost = env.string('RP_STATSD_HOST', 'localhost').trim();
  const statsdPortRaw = env.string('RP_STATSD_PORT', '8125').trim();
  let statsd: StatsdConfig | undefined;
  if (statsdHost !== '' && statsdPortRaw !== '') {
    statsd = { host: statsdHost, port: env.int('RP_STATSD_PORT', 8125, 1, 65535), prefix: env.string('RP_STATSD_PREFIX', 'restpipe.') };
  }
  return {
    logLevel: debug ? 'debug' : env.oneOf('RP_LOG_LEVEL', 'info', LOG_LEVELS),
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

/**
 * Loads the user config module named by `variable` (a path or a package
 * specifier) and layers the environment over its exports.
 */
export async function layeredEnv(source: EnvSource, variable: string): Promise<EnvSource> {
  const spec = source[variable];
  if (spec === undefined || spec === '') return source;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(toImportSpecifier(spec))) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`${variable}="${spec}" could not be loaded: ${(err as Error).message}`, { cause: err });
  }
  const values: Record<string, unknown> = { ...(isRecord(mod.default) ? mod.default : {}), ...mod };
  const layer: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(values)) {
    if (key === 'default' || value === undefined || value === null) continue;
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      throw new ConfigError(`${variable}="${spec}" exports ${key} as ${typeof value}; expected a string, number or boolean`);
    }
    layer[key] = String(value);
  }
  return { ...layer, ...source };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

/** A path (relative to the working directory) becomes a file URL; a package specifier stays. */
export function toImportSpecifier(spec: string): string {
  if (spec.startsWith('.') || isAbsolute(spec)) return pathToFileURL(resolvePath(spec)).href;
  return spec;
}

/** Deep-freezes a resolved config. */
export function freezeConfig<T extends object>(config: T): Readonly<T> {
  for (const value of Object.values(config)) {
    if (value && typeof value === 'object' && !Object.isFrozen(value)) freezeConfig(value as object);
  }
  return Object.freeze(config);
}
