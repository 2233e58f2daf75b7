/**
 * Builds the gateway path of a call: `<prefix>/<noun>[//<arg>/<arg>…][?query]`
 * with every argument, client name and query part percent-encoded, so that
 * any string arrives at the handler exactly as given.
 */
import { CallerUsageError } from './errors.js';

/** A noun: letters, digits and `_`, with `/` between segments (README "The HTTP interface"). */
const NOUN = /^[A-Za-z0-9_]+(?:\/[A-Za-z0-9_]+)*$/;

/** Query parameters; an array repeats the key, `undefined` leaves it out. */
export type QueryParams = Record<string, string | number | boolean | ReadonlyArray<string | number | boolean> | undefined>;

/** Throws `CallerUsageError` unless `noun` is well formed. */
export function checkNoun(noun: string): void {
  if (typeof noun !== 'string' || !NOUN.test(noun)) {
    throw new CallerUsageError(`"${String(noun)}" is not a valid noun: use letters, digits and "_", with "/" between segments`);
  }
}

/** `/client/<name>`, the name percent-encoded. */
export function clientPrefix(name: string): string {
  if (typeof name !== 'string' || name === '') throw new CallerUsageError('a client name must be a non-empty string');
  return `/client/${encodeURIComponent(name)}`;
}

/**
 * `/clients/<selector>`. Each comma-separated part is percent-encoded on its
 * own, keeping `,` and the glob `*` literal (`?` is encoded, as it would
 * start the query); an array is a list of exact names.
 */
export function clientsPrefix(selector: string | readonly string[]): string {
  const parts = typeof selector === 'string' ? selector.split(',') : [...selector];
  if (parts.length === 0 || parts.every((p) => typeof p !== 'string' || p.trim() === '')) {
    throw new CallerUsageError('a client selector must name at least one client or pattern');
  }
  return `/clients/${parts.map((p) => encodeURIComponent(p)).join(',')}`;
}

/** The selector as written in a target description (`clients/<selector>`). */
export function selectorText(selector: string | readonly string[]): string {
  return typeof selector === 'string' ? selector : selector.join(',');
}

/** The path and query of one call, below `prefix`. */
export function eventPath(prefix: string, noun: string, args: readonly string[] | undefined, query: QueryParams | undefined): string {
  checkNoun(noun);
  let path = `${prefix}/${noun}`;
  if (args && args.length > 0) {
    path += `//${args.map((a) => encodeURIComponent(String(a))).join('/')}`;
  }
  const qs = queryString(query);
  return qs ? `${path}?${qs}` : path;
}

/** `k=1&k=2&s=t%20u`: keys and values percent-encoded (space as `%20`). */
export function queryString(query: QueryParams | undefined): string {
  if (!query) return '';
  const pairs: string[] = [];
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) continue;
    const values = Array.isArray(value) ? value : [value as string | number | boolean];
    for (const v of values) pairs.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(v))}`);
  }
  return pairs.join('&');
}
