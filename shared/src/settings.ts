/**
 * Every setting, once, as data: the variable, its type, default, bounds,
 * which nodes read it, the config field it fills and a one-line doc. The
 * parser (`readSettings` in config.ts), the config types (`SettingFields`),
 * the README's Options table (a test compares them row by row) and the help
 * text (`settingsHelp`) all read this table, so adding a setting is one line
 * here plus its README row.
 *
 * A `field` with a dot (`gateway.port`) is one part of an object field that
 * config.ts assembles (`gateway`, `statsd`); a setting without a field (the
 * user config module) is read before the others and lands nowhere.
 */

/** The two kinds of node. */
export type NodeName = 'server' | 'client';

/** Which nodes read a setting. */
export type SettingNodes = NodeName | 'both';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `json`: pino's JSON lines, for the journal and log collectors; `pretty`: readable lines (pino-pretty), for a terminal. */
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Values `DEBUG` takes as on; any other value is left to other tools (the debug package reads `DEBUG=express:*`). */
export const TRUE_WORDS: readonly string[] = ['1', 'true', 'yes', 'on'];

interface SettingBase {
  /** The environment variable (and the export name in a user config module). */
  readonly name: string;
  readonly nodes: SettingNodes;
  /** Where the value lands in the resolved config; absent for the user config module. */
  readonly field?: string;
  /** One line for the README's "meaning" column and the help text (Markdown backticks allowed). */
  readonly doc: string;
  /** What the README and help show as the default when the value alone would not say it. */
  readonly defaultDoc?: string;
  /**
   * What an empty value means: `default` (unset; the default for every
   * setting), `keep` (the empty text itself) or `disables` (a blank value
   * turns off the object field this setting is a part of).
   */
  readonly empty?: 'default' | 'keep' | 'disables';
}

/** A whole number (`int`, `bytes`) or seconds with decimals (`seconds`, held in the config in ms). */
export interface NumberSetting extends SettingBase {
  readonly type: 'int' | 'bytes' | 'seconds';
  /** In the variable's unit: seconds for `seconds`. */
  readonly default: number;
  /** The smallest value, or the name of an earlier whole-number setting of the same nodes whose value is the smallest. */
  readonly min: number | string;
  readonly max: number;
}

/** Text: `string` as given; `host`, `path`, `class` (`module#Class`) and `module` trimmed. */
export interface TextSetting extends SettingBase {
  readonly type: 'string' | 'host' | 'path' | 'class' | 'module';
  readonly default?: string;
  /** The default is the value of this earlier setting of the same nodes. */
  readonly defaultFrom?: string;
  /** Why a value is refused, or undefined when it is fine. */
  readonly check?: (value: string) => string | undefined;
}

export interface EnumSetting extends SettingBase {
  readonly type: 'enum';
  readonly default: string;
  /** The allowed values, lower case; a value is matched case-insensitively. */
  readonly values: readonly string[];
}

/** On for `TRUE_WORDS`, off for anything else (no value is an error). */
export interface FlagSetting extends SettingBase {
  readonly type: 'flag';
}

export type Setting = NumberSetting | TextSetting | EnumSetting | FlagSetting;

const FRAME_MAX_BYTES = 0x7fffffff;

/** In README order; a setting whose bound or default names another comes after it. */
// biome-ignore format: one line per setting
export const SETTINGS = [
  { name: 'RP_SERVER_BIND_INTERFACE', nodes: 'server', field: 'bindInterface', type: 'host', default: '0.0.0.0', doc: 'address the pipe listens on' },
  { name: 'RP_SERVER_BIND_PORT', nodes: 'server', field: 'bindPort', type: 'int', default: 1234, min: 0, max: 65535, doc: "the pipe's TLS port" },
  { name: 'RP_SERVER_CERT_PATH', nodes: 'server', field: 'certPath', type: 'path', default: '/etc/restpipe/server', doc: 'folder with `restpipe.server.key.pem`, `restpipe.server.crt.pem`, `ca.crt.pem` and, to revoke clients, `crl.pem`; re-read on SIGHUP and when it changes' },
  { name: 'RP_SERVER_GATEWAY_HOST', nodes: 'server', field: 'gateway.host', type: 'host', default: '127.0.0.1', doc: 'gateway address' },
  { name: 'RP_SERVER_GATEWAY_PORT', nodes: 'server', field: 'gateway.port', type: 'int', default: 8002, min: 0, max: 65535, doc: 'gateway port' },
  { name: 'RP_SERVER_GATEWAY_SOCKET', nodes: 'server', field: 'gateway.path', type: 'path', doc: 'gateway on this unix socket path instead of host:port' },
  { name: 'RP_SERVER_USER_CONFIG_MODULE', nodes: 'server', type: 'module', doc: 'module of setting overrides (see above)' },
  { name: 'RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS', nodes: 'server', field: 'hooksClass', type: 'class', doc: 'hooks class, `module#Class`, extending `ServerConnectionStateEvents`' },
  { name: 'RP_SERVER_IDLE_HOOK_INTERVAL_S', nodes: 'server', field: 'idleHookIntervalMs', type: 'seconds', default: 60, min: 0.01, max: 86400, doc: 'how often the `idle` hook fires while no client is connected' },
  { name: 'RP_SERVER_HANDSHAKE_TIMEOUT_S', nodes: 'server', field: 'handshakeTimeoutMs', type: 'seconds', default: 10, min: 0.1, max: 600, doc: 'a TLS handshake not done by then is dropped' },
  { name: 'RP_SERVER_HANDSHAKES_MAX', nodes: 'server', field: 'handshakesMax', type: 'int', default: 256, min: 1, max: 100000, doc: 'TLS handshakes in progress at once; more connections wait, unread, the newest started first (a reconnect storm then finishes its handshakes instead of timing them all out)' },
  { name: 'RP_SERVER_HANDSHAKE_QUEUE_S', nodes: 'server', field: 'handshakeQueueMs', type: 'seconds', default: 15, min: 0.1, max: 600, doc: "a connection waiting this long for its handshake to start is closed (its client retries after its backoff); keep it a few seconds under the clients' RP_CLIENT_HANDSHAKE_TIMEOUT_S" },
  { name: 'RP_SERVER_ACCEPT_HANDLES', nodes: 'server', field: 'acceptHandles', type: 'int', default: 64, min: 1, max: 1024, doc: 'handles on the pipe\'s listening socket, each accepting one connection per event-loop turn (the extra ones come from a short-lived helper process at start; 1 starts none)' },
  { name: 'RP_SERVER_NATS_URL', nodes: 'server', field: 'natsUrl', type: 'string', check: natsUrlProblem, doc: 'NATS servers of a cluster of server instances, comma-separated (`nats://host:4222`, `tls://…`); empty: a single instance' },
  { name: 'RP_SERVER_CLUSTER_NAME', nodes: 'server', field: 'clusterName', type: 'string', default: 'restpipe', check: subjectTokenProblem, doc: "the cluster's NATS subject namespace: instances with the same name and NATS servers form one cluster" },
  { name: 'RP_SERVER_INSTANCE_NAME', nodes: 'server', field: 'instanceName', type: 'string', defaultDoc: '`<hostname>:<pipe port>`', check: instanceNameProblem, doc: "this instance's name in the cluster (unique per instance)" },
  { name: 'RP_SERVER_NATS_CA', nodes: 'server', field: 'natsCa', type: 'path', doc: 'CA bundle (PEM) that the NATS servers\' certificates must chain to; setting it requires TLS' },
  { name: 'RP_SERVER_NATS_CERT', nodes: 'server', field: 'natsCert', type: 'path', doc: 'client certificate (PEM) for NATS servers that verify clients; with `RP_SERVER_NATS_KEY`' },
  { name: 'RP_SERVER_NATS_KEY', nodes: 'server', field: 'natsKey', type: 'path', doc: 'key (PEM) of `RP_SERVER_NATS_CERT`' },
  { name: 'RP_SERVER_NATS_USER', nodes: 'server', field: 'natsUser', type: 'string', doc: 'NATS user name; with `RP_SERVER_NATS_PASSWORD`' },
  { name: 'RP_SERVER_NATS_PASSWORD', nodes: 'server', field: 'natsPassword', type: 'string', doc: 'password of `RP_SERVER_NATS_USER`' },
  { name: 'RP_SERVER_NATS_CREDS', nodes: 'server', field: 'natsCreds', type: 'path', doc: 'NATS credentials file (a user JWT and its nkey seed) instead of user and password' },
  { name: 'RP_CLIENT_TARGET_HOSTNAME', nodes: 'client', field: 'targetHostname', type: 'string', default: 'localhost', check: targetListProblem, doc: 'the server to dial, or the instances of a cluster, comma-separated: each `host` or `host:port` (a bare host uses `RP_CLIENT_TARGET_PORT`); the client shuffles them and moves to the next on failure or GoAway' },
  { name: 'RP_CLIENT_TARGET_PORT', nodes: 'client', field: 'targetPort', type: 'int', default: 1234, min: 1, max: 65535, doc: "the server's pipe port" },
  { name: 'RP_CLIENT_TARGET_SERVERNAME', nodes: 'client', field: 'targetServername', type: 'host', defaultDoc: "each target's host", doc: "the name the server's certificate must carry (DNS or IP SAN); when set, every target's certificate must carry it" },
  { name: 'RP_CLIENT_CERT_PATH', nodes: 'client', field: 'certPath', type: 'path', default: '/etc/restpipe/client', doc: 'folder with `restpipe.client.key.pem`, `restpipe.client.crt.pem`, `ca.crt.pem` and optionally `crl.pem`; re-read on SIGHUP' },
  { name: 'RP_CLIENT_GATEWAY_HOST', nodes: 'client', field: 'gateway.host', type: 'host', default: '127.0.0.1', doc: 'gateway address' },
  { name: 'RP_CLIENT_GATEWAY_PORT', nodes: 'client', field: 'gateway.port', type: 'int', default: 8001, min: 0, max: 65535, doc: 'gateway port' },
  { name: 'RP_CLIENT_GATEWAY_SOCKET', nodes: 'client', field: 'gateway.path', type: 'path', doc: 'gateway on this unix socket path instead of host:port' },
  { name: 'RP_CLIENT_USER_CONFIG_MODULE', nodes: 'client', type: 'module', doc: 'module of setting overrides (see above)' },
  { name: 'RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS', nodes: 'client', field: 'hooksClass', type: 'class', doc: 'hooks class, `module#Class`, extending `ClientConnectionStateEvents`' },
  { name: 'RP_CLIENT_RECONNECT_INITIAL_S', nodes: 'client', field: 'reconnectInitialMs', type: 'seconds', default: 0.5, min: 0.001, max: 60, doc: 'ceiling of the first reconnect wait (full jitter: the wait is random below it)' },
  { name: 'RP_CLIENT_RECONNECT_MAX_S', nodes: 'client', field: 'reconnectMaxMs', type: 'seconds', default: 30, min: 0.01, max: 3600, doc: 'ceiling of any reconnect wait' },
  { name: 'RP_CLIENT_RECONNECT_STABLE_S', nodes: 'client', field: 'reconnectStableMs', type: 'seconds', default: 10, min: 0, max: 3600, doc: 'a pipe up this long resets the backoff' },
  { name: 'RP_CLIENT_CONNECT_TIMEOUT_S', nodes: 'client', field: 'connectTimeoutMs', type: 'seconds', default: 10, min: 0.1, max: 600, doc: "an attempt's TCP connect may take this long (a host that does not answer is left for the next target)" },
  { name: 'RP_CLIENT_HANDSHAKE_TIMEOUT_S', nodes: 'client', field: 'connectHandshakeTimeoutMs', type: 'seconds', default: 20, min: 0.1, max: 600, doc: "once TCP is connected, the TLS handshake and the server's hello may take this long (longer than the server's RP_SERVER_HANDSHAKE_QUEUE_S, so a storm's waiting connections are not given up)" },
  { name: 'RP_CLIENT_CONNECT_WAIT_S', nodes: 'client', field: 'connectWaitMs', type: 'seconds', default: 20, min: 0, max: 3600, doc: 'while the pipe is down, the gateway waits this long for it, then answers 503' },
  { name: 'RP_CLIENT_HEARTBEAT_INTERVAL_S', nodes: 'both', field: 'heartbeatIntervalMs', type: 'seconds', default: 5, min: 0.05, max: 3600, doc: 'ping the peer when nothing came from it for this long' },
  { name: 'RP_CLIENT_HEARTBEAT_TIMEOUT_S', nodes: 'both', field: 'heartbeatTimeoutMs', type: 'seconds', default: 10, min: 0.1, max: 7200, doc: 'drop the link when nothing came from the peer for this long' },
  { name: 'RP_EVENT_HANDLER_FQ_CLASS', nodes: 'both', field: 'handlerClass', type: 'class', defaultDoc: 'the example handler', doc: 'handler class, `module#Class` (e.g. `./handlers.js#FileHandlers`, `my-pkg/handlers#FileHandlers`)' },
  { name: 'RP_REQUEST_TIMEOUT_S', nodes: 'both', field: 'requestTimeoutMs', type: 'seconds', default: 30, min: 0.001, max: 86400, doc: 'deadline of a request without `X-RestPipe-Timeout-Ms`' },
  { name: 'RP_REQUEST_TIMEOUT_MAX_S', nodes: 'both', field: 'maxRequestTimeoutMs', type: 'seconds', default: 300, min: 0.001, max: 86400, doc: 'the largest deadline a request may ask for' },
  { name: 'RP_MAX_BODY_BYTES', nodes: 'both', field: 'maxBodyBytes', type: 'bytes', default: 8 * 1024 * 1024, min: 0, max: Number.MAX_SAFE_INTEGER, doc: 'largest request body a handler that takes the body whole accepts (413 above); enforced by the receiving node; streaming handlers have no cap' },
  { name: 'RP_MAX_FRAME_BYTES', nodes: 'both', field: 'maxFrameBytes', type: 'bytes', default: 1024 * 1024, min: 128 * 1024, max: FRAME_MAX_BYTES, doc: 'largest frame accepted from the peer; a larger length prefix closes the connection before anything is allocated' },
  { name: 'RP_STREAM_CHUNK_BYTES', nodes: 'both', field: 'streamChunkBytes', type: 'bytes', default: 64 * 1024, min: 1024, max: 16 * 1024 * 1024, doc: 'bodies up to this size travel inside the request or reply frame; larger ones stream in chunks of this size' },
  { name: 'RP_STREAM_WINDOW_BYTES', nodes: 'both', field: 'streamWindowBytes', type: 'bytes', default: 4 * 1024 * 1024, min: 'RP_STREAM_CHUNK_BYTES', max: FRAME_MAX_BYTES, doc: 'flow-control window per streamed body: the most a sender has in flight for one request before the reader grants more' },
  { name: 'RP_STREAM_CONNECTION_BUFFER_BYTES', nodes: 'both', field: 'streamConnectionBufferBytes', type: 'bytes', default: 4 * 1024 * 1024, min: 'RP_STREAM_CHUNK_BYTES', max: FRAME_MAX_BYTES, doc: 'streams pause while a connection has this much unsent data' },
  { name: 'RP_MAX_IN_FLIGHT', nodes: 'both', field: 'maxInFlight', type: 'int', default: 10000, min: 1, max: 1_000_000, doc: 'most requests in flight per pipe and direction; beyond it the gateway answers 503 with Retry-After at once' },
  { name: 'RP_TLS_MIN_VERSION', nodes: 'both', field: 'tlsMinVersion', type: 'enum', default: 'tlsv1.3', values: ['tlsv1.3', 'tlsv1.2'], defaultDoc: '`TLSv1.3`', doc: '`TLSv1.3`: TLS 1.3 only; `TLSv1.2`: TLS 1.2 too, with ECDHE and AEAD ciphers only (AES-GCM, ChaCha20-Poly1305)' },
  { name: 'RP_CERT_EXPIRY_WARN_DAYS', nodes: 'both', field: 'certExpiryWarnDays', type: 'int', default: 30, min: 0, max: 3650, doc: "warn at start and daily when the node's certificate or a CA it trusts expires within this many days" },
  { name: 'RP_DRAIN_GRACE_S', nodes: 'both', field: 'drainGraceMs', type: 'seconds', default: 10, min: 0, max: 3600, doc: 'on SIGTERM, how long requests in flight may finish' },
  { name: 'RP_STATSD_HOST', nodes: 'both', field: 'statsd.host', type: 'host', default: 'localhost', empty: 'disables', doc: 'statsd host; empty disables statsd' },
  { name: 'RP_STATSD_PORT', nodes: 'both', field: 'statsd.port', type: 'int', default: 8125, min: 1, max: 65535, empty: 'disables', doc: 'statsd port; empty disables statsd' },
  { name: 'RP_STATSD_PREFIX', nodes: 'both', field: 'statsd.prefix', type: 'string', default: 'restpipe.', empty: 'keep', check: metricPrefixProblem, doc: 'prefix of every metric name' },
  { name: 'RP_PROMETHEUS', nodes: 'both', field: 'prometheus', type: 'enum', default: '1', values: ['1', '0'], doc: '`1`: the gateway answers Prometheus scrapes at `GET /_restpipe/metrics`; `0`: it does not (404)' },
  { name: 'RP_LOG_LEVEL', nodes: 'both', field: 'logLevel', type: 'enum', default: 'info', values: LOG_LEVELS, doc: '`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`' },
  { name: 'RP_LOG_FORMAT', nodes: 'both', field: 'logFormat', type: 'enum', default: 'json', values: LOG_FORMATS, doc: '`json` (one JSON object a line) or `pretty` (readable lines for a terminal, through pino-pretty)' },
  { name: 'DEBUG', nodes: 'both', field: 'debug', type: 'flag', doc: "`1` (or `true`/`yes`/`on`): logs at level `debug` (connections, state changes, frames); other values (such as the debug package's `express:*`) are ignored" },
] as const satisfies readonly Setting[];

/** A NATS subject token: no dots, wildcards or blanks. */
function subjectTokenProblem(value: string): string | undefined {
  return /^[A-Za-z0-9_-]{1,64}$/.test(value) ? undefined : 'letters, digits, `_` and `-` only (1 to 64 of them)';
}

/** An instance name travels in NATS subjects (escaped) and logs: printable, no blanks, bounded. */
function instanceNameProblem(value: string): string | undefined {
  return /^[\x21-\x7e]{1,128}$/.test(value) ? undefined : 'printable characters without blanks (1 to 128 of them)';
}

/** `nats://host:port`, `tls://host:port` or `host:port`, comma-separated. */
function natsUrlProblem(value: string): string | undefined {
  for (const part of value.split(',').map((p) => p.trim())) {
    if (!/^(?:(?:nats|tls):\/\/)?(?:[^\s/@]+@)?[A-Za-z0-9.-]+(?::\d{1,5})?$|^(?:(?:nats|tls):\/\/)?\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/.test(part)) {
      return `"${part}" is not a NATS server address (nats://host:port or tls://host:port)`;
    }
  }
  return undefined;
}

/** `host` or `host:port` (IPv6 in brackets), comma-separated, at least one. */
function targetListProblem(value: string): string | undefined {
  const parts = value.split(',').map((p) => p.trim());
  for (const part of parts) {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:,[\]]+))(?::(\d{1,5}))?$/.exec(part);
    if (!m) return `"${part}" is not a host or host:port`;
    if (m[3] !== undefined && (Number(m[3]) < 1 || Number(m[3]) > 65535)) return `"${part}": the port must be from 1 to 65535`;
  }
  return undefined;
}

/** statsd's line protocol splits on these, so a name holding one would corrupt every metric. */
function metricPrefixProblem(prefix: string): string | undefined {
  return /[:|@#\s]/.test(prefix) ? "a metric name may not hold ':', '|', '@', '#' or blanks" : undefined;
}

type TableEntry = (typeof SETTINGS)[number];

/** The names of all settings. */
export type SettingName = TableEntry['name'];

/** The type a setting's value has in the config. */
type ValueOf<S> = S extends { type: 'flag' }
  ? boolean
  : S extends { type: 'enum'; values: readonly (infer V)[] }
    ? V
    : S extends { empty: 'disables' }
      ? (S extends { type: 'int' | 'bytes' | 'seconds' } ? number : string) | undefined
      : S extends { type: 'int' | 'bytes' | 'seconds' }
        ? number
        : S extends { default: string } | { defaultFrom: string }
          ? string
          : string | undefined;

/** The values `readSettings` returns for the settings read by exactly `N`, keyed by field (parts keep their dotted names). */
export type SettingValues<N extends SettingNodes> = {
  readonly [S in Extract<TableEntry, { nodes: N }> as S extends { field: infer F extends string } ? F : never]: ValueOf<S>;
};

/** The config fields filled straight from a setting of `N` (not parts of an object field). */
export type SettingFields<N extends SettingNodes> = {
  readonly [K in keyof SettingValues<N> as K extends `${string}.${string}` ? never : K]: SettingValues<N>[K];
};

/** The settings read by exactly `nodes` (`both` gives the shared ones), in table order. */
export function settingsOf(nodes: SettingNodes): readonly Setting[] {
  return (SETTINGS as readonly Setting[]).filter((s) => s.nodes === nodes);
}

/** The setting named `name`; undefined when there is none. */
export function findSetting(name: string): Setting | undefined {
  return (SETTINGS as readonly Setting[]).find((s) => s.name === name);
}

/** What the README's default column shows (Markdown): `` `1234` ``, `–` for none, or the `defaultDoc` text. */
export function defaultCell(s: Setting): string {
  if (s.defaultDoc !== undefined) return s.defaultDoc;
  if (s.type === 'flag' || s.default === undefined) return '–';
  return `\`${s.default}\``;
}

/** What a value must be, as the error for a bad one says it ("a whole number from 0 to 65535"). */
export function acceptedValues(s: Setting): string {
  switch (s.type) {
    case 'int':
    case 'bytes':
      return `a whole number from ${s.min} to ${s.max}`;
    case 'seconds':
      return `seconds from ${s.min} to ${s.max}`;
    case 'enum':
      return `one of ${s.values.join(', ')}`;
    case 'flag':
      return `${TRUE_WORDS.join(', ')} for on; anything else is off`;
    case 'host':
      return 'a host name or address';
    case 'path':
      return 'a path';
    case 'class':
      return '`module#Class`';
    case 'module':
      return 'a path or a package specifier';
    case 'string':
      return 'text';
  }
}

/** One setting as help text shows it: plain text, no Markdown. */
export interface SettingHelp {
  readonly name: string;
  /** As in the README's default column, without backticks ('–' for none). */
  readonly default: string;
  readonly accepts: string;
  readonly meaning: string;
}

const plain = (markdown: string) => markdown.replaceAll('`', '');

/** The settings a node reads (its own, then the shared ones), for `--help`. */
export function settingsHelp(node: NodeName): SettingHelp[] {
  return [...settingsOf(node), ...settingsOf('both')].map((s) => ({
    name: s.name,
    default: plain(defaultCell(s)),
    accepts: plain(acceptedValues(s)),
    meaning: plain(s.doc),
  }));
}

/** `settingsHelp` as lines for a terminal: the variable, then its default and meaning indented below it. */
export function formatSettingsHelp(node: NodeName): string {
  return settingsHelp(node)
    .map((h) => `  ${h.name}  (default: ${h.default}; ${h.accepts})\n      ${h.meaning}\n`)
    .join('');
}
