/** The structured logger (pino, as Fastify uses). */
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';
import type { LogFormat, LogLevel } from './settings.js';

export type { Logger };

/** Loaded only for `pretty`, so a node logging JSON never loads it. */
const require = createRequire(import.meta.url);

/**
 * A logger to stdout named after the node: pino's JSON lines, or with
 * `pretty` (`RP_LOG_FORMAT=pretty`) one readable line per entry, e.g.
 * `[14:03:07.123] INFO (restpipe-server): pipe listening for clients {"address":"0.0.0.0","port":1234}`,
 * coloured on a terminal. Both write synchronously, so nothing logged before
 * an exit is lost.
 */
export function createLogger(name: string, level: LogLevel, format: LogFormat = 'json'): Logger {
  if (format === 'json') return pino({ name, level });
  const pretty = require('pino-pretty') as typeof PinoPretty;
  return pino({ name, level }, pretty({ sync: true, singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
}
