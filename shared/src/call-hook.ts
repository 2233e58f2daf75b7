/** Runs a user hook so that whatever it does, throw or reject, never breaks the pipe. */
import type { Logger } from 'pino';

export function callHook(log: Logger, name: string, call: () => void | Promise<void>): void {
  try {
    const result = call();
    if (result && typeof (result as Promise<void>).catch === 'function') {
      (result as Promise<void>).catch((err: unknown) => log.error({ err, hook: name }, 'a connection hook threw'));
    }
  } catch (err) {
    log.error({ err, hook: name }, 'a connection hook threw');
  }
}
