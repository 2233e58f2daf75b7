/**
 * What the `restpipe-server` and `restpipe-client` executables share: a
 * setting error or an unusable identity is one line on stderr and exit code
 * 2 (nothing listens yet); any other start failure is one line and exit code
 * 1 (the stack too with `DEBUG=1`); SIGTERM or SIGINT drains the node
 * (GoAway, requests in flight finish within the grace period) and exits 0;
 * SIGHUP reloads the node's identity (`RunningNode.reload`). `runNodeCli`
 * is the whole entry: `--help`, `--version`, `--check-config`,
 * then settings, handler and hooks classes, identity, statsd, start and stop.
 */
import { readFileSync } from 'node:fs';
import type { CommonConfig } from './config.js';
import { RestPipeError } from './errors.js';
import type { GatewayAddress } from './gateway.js';
import type { EventHandler } from './handler.js';
import { loadClass } from './handler-loader.js';
import { type CheckedIdentity, checkIdentityFiles, type IdentityCheck } from './identity-check.js';
import { createLogger, type Logger } from './logger.js';
import { formatSettingsHelp, type NodeName } from './settings.js';
import { nullStats, type Stats } from './stats.js';
import { createStatsd } from './statsd.js';

export interface RunningNode {
  close(): Promise<void>;
  /** SIGHUP: re-read the identity; never throws (a bad identity is logged and the old one kept). */
  reload?(): void;
}

/** Exit code of a setting error (`RP_CONFIG`), an unusable identity (`RP_IDENTITY_FILES`) or a bad command line. */
export const EXIT_CONFIG = 2;
/** Exit code of any other failure to start or stop. */
export const EXIT_FAILURE = 1;

/** The errors that are the deployment's to fix: exit 2, and restarting cannot help. */
const DEPLOYMENT_ERRORS: ReadonlySet<string> = new Set(['RP_CONFIG', 'RP_IDENTITY_FILES']);

/** Messages may quote a module's error; stderr gets exactly one line. */
function oneLine(message: string): string {
  return message.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

function debugOn(): boolean {
  return ['1', 'true', 'yes', 'on'].includes((process.env['DEBUG'] ?? '').trim().toLowerCase());
}

/**
 * Writes the one line of a failure to start (or to check, `doing`) and
 * exits: `<program>: <code>: <message>` and 2 for a deployment error,
 * `<program>: could not <doing>: <message>` and 1 for anything else.
 */
function exitFailed(program: string, err: unknown, doing: string): never {
  if (debugOn() && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  if (err instanceof RestPipeError && DEPLOYMENT_ERRORS.has(err.code)) {
    process.stderr.write(`${program}: ${err.code}: ${oneLine(err.message)}\n`);
    process.exit(EXIT_CONFIG);
  }
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`${program}: could not ${doing}: ${oneLine(message)}\n`);
  process.exit(EXIT_FAILURE);
}

/** Starts a node with `start`, and stops it on SIGTERM/SIGINT. */
export async function runNodeMain(program: string, start: () => Promise<RunningNode>): Promise<void> {
  let node: RunningNode;
  try {
    node = await start();
  } catch (err) {
    exitFailed(program, err, 'start');
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`${program}: ${signal} again, exiting now\n`);
      process.exit(EXIT_FAILURE);
    }
    stopping = true;
    node.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`${program}: error while stopping: ${oneLine(String(err))}\n`);
        process.exit(EXIT_FAILURE);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const { reload } = node;
  if (reload) process.on('SIGHUP', () => reload.call(node));
}

/** The settings `runNodeCli` reads itself: the common ones, the hooks class, the identity folder, the gateway. */
export type NodeCliConfig = CommonConfig & {
  readonly hooksClass: string | undefined;
  readonly certPath: string;
  readonly gateway: GatewayAddress;
};

/** What a node's executable needs to know about its node. */
export interface NodeCliSpec<C extends NodeCliConfig, H extends EventHandler, K extends object> {
  /** `restpipe-server` or `restpipe-client`: the logger's name and the prefix of stderr lines. */
  program: string;
  /** Which node: the settings `--help` lists. */
  node: NodeName;
  /** One line for `--help`, e.g. `Runs the RestPipe server node`. */
  summary: string;
  /** The package's own package.json, whose version `--version` prints: `new URL('../package.json', import.meta.url)`. */
  packageJson: URL;
  /** Resolves the settings (throws `ConfigError`). */
  loadConfig(): Promise<C>;
  /** `RP_EVENT_HANDLER_FQ_CLASS` must extend `base`; `example` runs when it is unset. */
  handler: { base: abstract new () => H; example: new () => H };
  /** The hooks class the setting `variable` names must extend `base`, which is also the default. */
  hooks: { base: new () => K; variable: string };
  /** What the identity in `config.certPath` must be. */
  identity: IdentityCheck;
  /** The node's own part of `--check-config`'s line, e.g. `pipe 0.0.0.0:1234`. */
  describe(config: C): string;
  /** The node's own checks of settings that go together and files they name (throws `ConfigError`). */
  checkSettings?(config: C): void;
  /** Makes and starts the node from the resolved parts. */
  start(parts: NodeParts<C, H, K>): Promise<RunningNode>;
}

/** The parts `runNodeCli` resolves from the environment before starting the node. */
export interface NodeParts<C, H, K> {
  config: C;
  log: Logger;
  stats: Stats;
  handler: H;
  hooks: K;
}

/** What a start resolves and checks before anything listens; all `--check-config` does. */
interface Checked<C, H, K> {
  config: C;
  Handler: new () => H;
  Hooks: new () => K;
  identity: CheckedIdentity;
}

/**
 * The settings, the handler and hooks classes (imported and checked, not
 * constructed) and the identity files: everything a deployment can get
 * wrong, found without listening or dialing.
 */
async function checkNode<C extends NodeCliConfig, H extends EventHandler, K extends object>(spec: NodeCliSpec<C, H, K>): Promise<Checked<C, H, K>> {
  const config = await spec.loadConfig();
  spec.checkSettings?.(config);
  const Handler = config.handlerClass ? await loadClass(config.handlerClass, spec.handler.base, 'RP_EVENT_HANDLER_FQ_CLASS') : spec.handler.example;
  const Hooks = config.hooksClass ? await loadClass(config.hooksClass, spec.hooks.base, spec.hooks.variable) : spec.hooks.base;
  const identity = checkIdentityFiles(config.certPath, spec.identity);
  return { config, Handler, Hooks, identity };
}

function gatewayText(gateway: GatewayAddress): string {
  return 'path' in gateway ? `unix:${gateway.path}` : `${gateway.host}:${gateway.port}`;
}

/** `--check-config`'s line: `<program>: configuration ok (pipe …, gateway …, identity CN=…, expires …, …)`. */
function okLine<C extends NodeCliConfig, H extends EventHandler, K extends object>(spec: NodeCliSpec<C, H, K>, checked: Checked<C, H, K>): string {
  const { config, identity } = checked;
  const parts = [
    spec.describe(config),
    `gateway ${gatewayText(config.gateway)}`,
    `identity ${identity.subject}`,
    `expires ${identity.validTo.toISOString().replace('.000Z', 'Z')}`,
    ...(identity.crl ? [`CRL ${spec.identity.crlFile}`] : []),
    `handler ${checked.Handler.name}${config.handlerClass ? '' : ' (the example)'}`,
    ...(config.hooksClass ? [`hooks ${checked.Hooks.name}`] : []),
    `statsd ${config.statsd ? `${config.statsd.host}:${config.statsd.port}` : 'off'}`,
  ];
  return `${spec.program}: configuration ok (${parts.join(', ')})`;
}

function helpText<C extends NodeCliConfig, H extends EventHandler, K extends object>(spec: NodeCliSpec<C, H, K>): string {
  return `usage: ${spec.program}
       ${spec.program} --check-config | --version | --help

${spec.summary}. Every setting comes from an RP_ environment
variable (or the user config module); a bad one stops the node with exit
code 2 before anything listens. SIGTERM or SIGINT drains it and exits 0.

  --check-config  check the settings, the handler and hooks classes and the
                  identity in ${spec.identity.variable} (the key matches the
                  certificate, valid now, ${spec.identity.usage}, signed by the CA)
                  as a start would, without listening; print one line and
                  exit 0, or the error and exit 2
  --version, -V   print the version and exit
  --help, -h      print this help and exit

Settings, with their defaults (README, "Options"):
${formatSettingsHelp(spec.node)}`;
}

/** The package's version, read at run time from its own package.json. */
function packageVersion(packageJson: URL): string {
  const { version } = JSON.parse(readFileSync(packageJson, 'utf8')) as { version?: unknown };
  if (typeof version !== 'string') throw new Error(`${packageJson.pathname} has no version`);
  return version;
}

type Mode = 'run' | 'help' | 'version' | 'check';

const FLAGS: Readonly<Record<string, Mode>> = { '--help': 'help', '-h': 'help', '--version': 'version', '-V': 'version', '--check-config': 'check' };

/**
 * The mode the arguments ask for: `--help` wins, then `--version`, then
 * `--check-config`. Anything else is refused: a mistyped `--check-config`
 * must not start a second node.
 */
function modeOf(program: string, args: readonly string[]): Mode {
  const modes = new Set<Mode>();
  for (const arg of args) {
    const mode = FLAGS[arg];
    if (mode === undefined) {
      process.stderr.write(`${program}: unknown argument ${JSON.stringify(arg)}: the options are --check-config, --version and --help\n`);
      process.exit(EXIT_CONFIG);
    }
    modes.add(mode);
  }
  return (['help', 'version', 'check'] as const).find((m) => modes.has(m)) ?? 'run';
}

/**
 * Runs a node's executable: `--help`, `--version` or `--check-config`, or
 * else the settings, the handler and hooks classes, the identity and statsd,
 * then `spec.start`; on SIGTERM/SIGINT the node drains, metrics are flushed,
 * and the process exits 0 (see `runNodeMain`).
 */
export async function runNodeCli<C extends NodeCliConfig, H extends EventHandler, K extends object>(spec: NodeCliSpec<C, H, K>): Promise<void> {
  const mode = modeOf(spec.program, process.argv.slice(2));
  if (mode === 'help') {
    process.stdout.write(helpText(spec));
    process.exit(0);
  }
  if (mode === 'version') {
    let version: string;
    try {
      version = packageVersion(spec.packageJson);
    } catch (err) {
      exitFailed(spec.program, err, 'read the version');
    }
    process.stdout.write(`${spec.program} ${version}\n`);
    process.exit(0);
  }
  if (mode === 'check') {
    let checked: Checked<C, H, K>;
    try {
      checked = await checkNode(spec);
    } catch (err) {
      exitFailed(spec.program, err, 'check the configuration');
    }
    process.stdout.write(`${okLine(spec, checked)}\n`);
    process.exit(0);
  }
  await runNodeMain(spec.program, async () => {
    const { config, Handler, Hooks } = await checkNode(spec);
    const log = createLogger(spec.program, config.logLevel, config.logFormat);
    const stats = config.statsd ? await createStatsd(config.statsd, log) : nullStats;
    if (!config.statsd) log.info('statsd is off (RP_STATSD_HOST or RP_STATSD_PORT is empty)');
    else if (stats !== nullStats) log.info({ host: config.statsd.host, port: config.statsd.port, prefix: config.statsd.prefix }, 'sending metrics to statsd');
    const node = await spec.start({ config, log, stats, handler: new Handler(), hooks: new Hooks() });
    return {
      close: async () => {
        log.info('stopping: draining requests in flight');
        await node.close();
        await stats.close();
      },
      reload: () => node.reload?.(),
    };
  });
}
