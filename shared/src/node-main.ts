/**
 * What the `restpipe-server` and `restpipe-client` executables share: a
 * setting error is one line on stderr and exit code 2 (nothing listens yet);
 * any other start failure is one line and exit code 1 (the stack too with
 * `DEBUG=1`); SIGTERM or SIGINT drains the node (GoAway, requests in flight
 * finish within the grace period) and exits 0. `runNodeCli` is the whole
 * entry: help, settings, handler and hooks classes, statsd, start and stop.
 */
import type { CommonConfig } from './config.js';
import { ConfigError } from './errors.js';
import type { EventHandler } from './handler.js';
import { loadClass } from './handler-loader.js';
import { createLogger, type Logger } from './logger.js';
import { nullStats, type Stats } from './stats.js';
import { createStatsd } from './statsd.js';

export interface RunningNode {
  close(): Promise<void>;
}

/** Exit code of a setting error (`RP_CONFIG`). */
export const EXIT_CONFIG = 2;
/** Exit code of any other failure to start or stop. */
export const EXIT_FAILURE = 1;

/** Messages may quote a module's error; stderr gets exactly one line. */
function oneLine(message: string): string {
  return message.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

function debugOn(): boolean {
  return ['1', 'true', 'yes', 'on'].includes((process.env['DEBUG'] ?? '').trim().toLowerCase());
}

/** Starts a node with `start`, and stops it on SIGTERM/SIGINT. */
export async function runNodeMain(program: string, start: () => Promise<RunningNode>): Promise<void> {
  let node: RunningNode;
  try {
    node = await start();
  } catch (err) {
    if (debugOn() && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    if (err instanceof ConfigError) {
      process.stderr.write(`${program}: ${err.code}: ${oneLine(err.message)}\n`);
      process.exit(EXIT_CONFIG);
    }
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`${program}: could not start: ${oneLine(message)}\n`);
    process.exit(EXIT_FAILURE);
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
}

/** What a node's executable needs to know about its node. */
export interface NodeCliSpec<C extends CommonConfig & { readonly hooksClass: string | undefined }, H extends EventHandler, K extends object> {
  /** `restpipe-server` or `restpipe-client`: the logger's name and the prefix of stderr lines. */
  program: string;
  /** One line for `--help`, e.g. `Runs the RestPipe server node`. */
  summary: string;
  /** Resolves the settings (throws `ConfigError`). */
  loadConfig(): Promise<C>;
  /** `RP_EVENT_HANDLER_FQ_CLASS` must extend `base`; `example` runs when it is unset. */
  handler: { base: abstract new () => H; example: new () => H };
  /** The hooks class the setting `variable` names must extend `base`, which is also the default. */
  hooks: { base: new () => K; variable: string };
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

/**
 * Runs a node's executable: `--help`, then the settings, the handler and
 * hooks classes and statsd, then `spec.start`; on SIGTERM/SIGINT the node
 * drains, metrics are flushed, and the process exits 0 (see `runNodeMain`).
 */
export async function runNodeCli<C extends CommonConfig & { readonly hooksClass: string | undefined }, H extends EventHandler, K extends object>(
  spec: NodeCliSpec<C, H, K>,
): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(`usage: ${spec.program}\n\n${spec.summary}; configure it with RP_ environment variables (see the README).\n`);
    process.exit(0);
  }
  await runNodeMain(spec.program, async () => {
    const config = await spec.loadConfig();
    const log = createLogger(spec.program, config.logLevel, config.logFormat);
    const Handler = config.handlerClass ? await loadClass(config.handlerClass, spec.handler.base, 'RP_EVENT_HANDLER_FQ_CLASS') : spec.handler.example;
    const Hooks = config.hooksClass ? await loadClass(config.hooksClass, spec.hooks.base, spec.hooks.variable) : spec.hooks.base;
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
    };
  });
}
