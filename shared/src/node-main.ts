/**
 * What the `restpipe-server` and `restpipe-client` executables share: a
 * setting error is one line on stderr and exit code 2 (nothing listens yet);
 * any other start failure is one line and exit code 1 (the stack too with
 * `DEBUG=1`); SIGTERM or SIGINT drains the node (GoAway, requests in flight
 * finish within the grace period) and exits 0.
 */
import { ConfigError } from './errors.js';

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
