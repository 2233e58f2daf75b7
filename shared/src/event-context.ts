/**
 * The context a handler method gets. Its signal, query and headers are
 * built on first use: most handlers never touch them, and an AbortController
 * per request is a measurable share of a small request's cost.
 */
import type { Request as WireRequest } from '@restpipe/proto';
import type { EventContext, PeerInfo } from './handler.js';

/** Parses a raw query string; a key given twice maps to an array of values. */
export function parseQuery(raw: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null);
  if (!raw) return out;
  for (const [key, value] of new URLSearchParams(raw)) {
    const prev = out[key];
    if (prev === undefined) out[key] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[key] = [prev, value];
  }
  return out;
}

export class HandlerContext implements EventContext {
  readonly verb: string;
  readonly noun: string;
  readonly rawQuery: string;
  readonly requestId: number;
  private controller: AbortController | undefined;
  private abortReason: Error | undefined;
  private parsedQuery: Record<string, string | string[]> | undefined;
  private headerMap: Record<string, string> | undefined;

  constructor(
    readonly peer: PeerInfo,
    private readonly req: WireRequest,
  ) {
    this.verb = req.verb;
    this.noun = req.noun;
    this.rawQuery = req.query;
    this.requestId = req.id;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortReason) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  get query(): Readonly<Record<string, string | string[]>> {
    this.parsedQuery ??= parseQuery(this.rawQuery);
    return this.parsedQuery;
  }

  get headers(): Readonly<Record<string, string>> {
    if (!this.headerMap) {
      const headers: Record<string, string> = Object.create(null);
      for (const h of this.req.headers) if (h.name) headers[h.name.toLowerCase()] = h.value ?? '';
      this.headerMap = headers;
    }
    return this.headerMap;
  }

  /** True once the request was abandoned. */
  get aborted(): boolean {
    return this.abortReason !== undefined;
  }

  /** Tells the handler to stop (its signal aborts with `reason`). */
  abort(reason: Error): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }
}
