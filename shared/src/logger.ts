/** The structured logger (pino, as Fastify uses). */
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

/** A JSON logger to stdout named after the node. */
export function createLogger(name: string, level: LogLevel): Logger {
  return pino({ name, level });
}
