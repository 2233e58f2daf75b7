/**
 * What the `restpipe-server` and `restpipe-client` executables share: a
 * setting error is one line on stderr and exit code 2; SIGTERM or SIGINT
 * drains the node (GoAway, requests in flight finish within the grace
 * period) and exits 0.
 */
import { ConfigError } from './errors.js';

export interface RunningNode {
  close(): Promise<void>;
}

/** Starts a node with `start`, and stops it on SIGTERM/SIGINT. */
export async function runNodeMain(program: string, start: () => Promise<RunningNode>): Promise<void> {
  let node: RunningNode;
  try {
    node = await start();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${program}: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`${program}: could not start: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`${program}: ${signal} again, exiting now\n`);
      process.exit(1);
    }
    stopping = true;
    node.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`${program}: error while stopping: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
