/**
 * Parses the part of a gateway URL after the route prefix into an event's
 * noun, arguments and query: `cat//hello%20/world?x=1` →
 * noun `cat`, args `["hello ", "world"]`, query `x=1`.
 *
 * The noun is taken as written (never percent-decoded), so an encoded slash
 * or dot cannot change which handler is called; arguments are decoded.
 */
import { BadRequestError } from './errors.js';

export interface EventPath {
  noun: string;
  args: string[];
  query: string;
}

/** Splits `rest` (the raw path after the prefix, with its query) into noun, args and query. */
export function parseEventPath(rest: string): EventPath {
  const q = rest.indexOf('?');
  const path = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? '' : rest.slice(q + 1);
  const split = path.indexOf('//');
  let noun = split < 0 ? path : path.slice(0, split);
  if (noun.endsWith('/')) noun = noun.slice(0, -1);
  const args: string[] = [];
  if (split >= 0) {
    const argPart = path.slice(split + 2);
    if (argPart.length > 0) {
      for (const raw of argPart.split('/')) {
        try {
          args.push(decodeURIComponent(raw));
        } catch (err) {
          throw new BadRequestError(`argument "${raw}" is not valid percent-encoding`, { cause: err });
        }
      }
    }
  }
  return { noun, args, query };
}

/** Splits the raw client-name segment off `/client/<name>/<rest>`; the name is percent-decoded. */
export function splitClientName(afterPrefix: string): { name: string; rest: string } {
  const slash = afterPrefix.indexOf('/');
  const q = afterPrefix.indexOf('?');
  const end = slash < 0 || (q >= 0 && q < slash) ? (q < 0 ? afterPrefix.length : q) : slash;
  const rawName = afterPrefix.slice(0, end);
  let name: string;
  try {
    name = decodeURIComponent(rawName);
  } catch (err) {
    throw new BadRequestError(`client name "${rawName}" is not valid percent-encoding`, { cause: err });
  }
  const rest = afterPrefix.slice(end).replace(/^\//, '');
  return { name, rest };
}
