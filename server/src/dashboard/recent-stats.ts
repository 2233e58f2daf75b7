/**
 * The dashboard's memory of the last few minutes: gateway answers in
 * fixed-width time buckets (count by event code, latency histogram) and
 * counters per client. Memory is bounded whatever the traffic: a fixed ring
 * of buckets, a fixed-size histogram per bucket, at most `maxClients`
 * clients with at most `recentErrorsPerClient` errors each.
 */

/** One gateway answer, as the dashboard records it. */
export interface GatewayAnswer {
  /** The client the request was for; undefined for a fan-out. */
  client: string | undefined;
  /** The noun as the URL had it (`time`, `files/etc`), or undefined for a fan-out. */
  noun: string | undefined;
  verb: string;
  /** The `X-Event-Return-Code` of the answer. */
  code: number;
  /** The HTTP status of the answer. */
  status: number;
  /** From the HTTP request to the answer's start, in milliseconds. */
  ms: number;
}

export interface RecentStatsOptions {
  /** @default 10_000 */
  bucketMs?: number;
  /** How many buckets the window holds. @default 90 (15 minutes of 10 s) */
  buckets?: number;
  /** Clients with counters; the one idle longest is dropped beyond this. @default 1000 */
  maxClients?: number;
  /** @default 10 */
  recentErrorsPerClient?: number;
  /** The clock, in ms since the epoch. @default Date.now */
  now?: () => number;
}

/** One bucket of the window, as `/_restpipe/ui/data` sends it. */
export interface BucketView {
  /** Start of the bucket, ms since the epoch. */
  t: number;
  requests: number;
  /** Answers with an HTTP status of 400 or more. */
  errors: number;
  /** Answers by event code. */
  codes: Record<string, number>;
  /** Answers with an HTTP status of 400 or more, by event code. */
  errorCodes: Record<string, number>;
  /** null when the bucket has no answer. */
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface RecentError {
  time: string;
  verb: string;
  noun: string;
  code: number;
  status: number;
}

export interface ClientCountersView {
  requests: number;
  errors: number;
  codes: Record<string, number>;
  lastAnswerAt: string;
  /** Newest first. */
  recentErrors: RecentError[];
}

/**
 * Latency histogram: bucket `i` holds samples up to `MIN_MS * 2^(i / STEPS)`,
 * so a percentile read from it is at most 2^(1/8) - 1 ≈ 9 % above the true
 * value. 240 buckets reach from 10 µs to about 3 hours; larger samples land
 * in the last one.
 */
const MIN_MS = 0.01;
const STEPS = 8;
const HISTOGRAM_SIZE = 240;

function histogramIndex(ms: number): number {
  if (!(ms > MIN_MS)) return 0;
  return Math.min(HISTOGRAM_SIZE - 1, Math.ceil(Math.log2(ms / MIN_MS) * STEPS));
}

function histogramUpperBound(index: number): number {
  return MIN_MS * 2 ** (index / STEPS);
}

/** The `q` quantile (0..1) of a histogram holding `count` samples, rounded to 3 decimals. */
function quantile(histogram: Uint32Array, count: number, q: number): number | null {
  if (count === 0) return null;
  const rank = Math.max(1, Math.ceil(q * count));
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    seen += histogram[i] as number;
    if (seen >= rank) return Math.round(histogramUpperBound(i) * 1000) / 1000;
  }
  return Math.round(histogramUpperBound(histogram.length - 1) * 1000) / 1000;
}

interface Bucket {
  /** Bucket number (start / bucketMs); -1 when never used. */
  index: number;
  requests: number;
  errors: number;
  codes: Map<number, number>;
  errorCodes: Map<number, number>;
  histogram: Uint32Array;
}

interface ClientCounters {
  requests: number;
  errors: number;
  codes: Map<number, number>;
  lastAnswerAt: number;
  recentErrors: RecentError[];
}

export class RecentStats {
  readonly bucketMs: number;
  readonly bucketCount: number;
  private readonly maxClients: number;
  private readonly recentErrorsPerClient: number;
  private readonly now: () => number;
  private readonly ring: Bucket[];
  /** In order of last answer, oldest first (a Map keeps insertion order). */
  private readonly clients = new Map<string, ClientCounters>();

  constructor(opts: RecentStatsOptions = {}) {
    this.bucketMs = opts.bucketMs ?? 10_000;
    this.bucketCount = opts.buckets ?? 90;
    this.maxClients = opts.maxClients ?? 1000;
    this.recentErrorsPerClient = opts.recentErrorsPerClient ?? 10;
    this.now = opts.now ?? Date.now;
    this.ring = Array.from({ length: this.bucketCount }, () => ({
      index: -1,
      requests: 0,
      errors: 0,
      codes: new Map(),
      errorCodes: new Map(),
      histogram: new Uint32Array(HISTOGRAM_SIZE),
    }));
  }

  /** Records one gateway answer. */
  record(answer: GatewayAnswer): void {
    const now = this.now();
    const bucket = this.bucketAt(Math.floor(now / this.bucketMs));
    const isError = answer.status >= 400;
    bucket.requests++;
    bucket.codes.set(answer.code, (bucket.codes.get(answer.code) ?? 0) + 1);
    if (isError) {
      bucket.errors++;
      bucket.errorCodes.set(answer.code, (bucket.errorCodes.get(answer.code) ?? 0) + 1);
    }
    const h = histogramIndex(answer.ms);
    bucket.histogram[h] = (bucket.histogram[h] as number) + 1;
    if (answer.client !== undefined) this.recordClient(answer.client, answer, isError, now);
  }

  private recordClient(name: string, answer: GatewayAnswer, isError: boolean, now: number): void {
    let counters = this.clients.get(name);
    if (counters) {
      this.clients.delete(name); // re-inserted below: the Map stays ordered by last answer
    } else {
      counters = { requests: 0, errors: 0, codes: new Map(), lastAnswerAt: now, recentErrors: [] };
      if (this.clients.size >= this.maxClients) {
        const oldest = this.clients.keys().next().value;
        if (oldest !== undefined) this.clients.delete(oldest);
      }
    }
    this.clients.set(name, counters);
    counters.requests++;
    counters.lastAnswerAt = now;
    counters.codes.set(answer.code, (counters.codes.get(answer.code) ?? 0) + 1);
    if (isError) {
      counters.errors++;
      counters.recentErrors.unshift({
        time: new Date(now).toISOString(),
        verb: answer.verb,
        noun: answer.noun ?? '',
        code: answer.code,
        status: answer.status,
      });
      if (counters.recentErrors.length > this.recentErrorsPerClient) counters.recentErrors.length = this.recentErrorsPerClient;
    }
  }

  /** The bucket for bucket number `index`, emptied if it held an older one. */
  private bucketAt(index: number): Bucket {
    const bucket = this.ring[index % this.bucketCount] as Bucket;
    if (bucket.index !== index) {
      bucket.index = index;
      bucket.requests = 0;
      bucket.errors = 0;
      bucket.codes.clear();
      bucket.errorCodes.clear();
      bucket.histogram.fill(0);
    }
    return bucket;
  }

  /** Every bucket of the window, oldest first, the current one last; empty ones included. */
  series(): BucketView[] {
    const current = Math.floor(this.now() / this.bucketMs);
    const out: BucketView[] = [];
    for (let index = current - this.bucketCount + 1; index <= current; index++) {
      const bucket = this.ring[((index % this.bucketCount) + this.bucketCount) % this.bucketCount] as Bucket;
      const live = bucket.index === index;
      out.push({
        t: index * this.bucketMs,
        requests: live ? bucket.requests : 0,
        errors: live ? bucket.errors : 0,
        codes: live ? codesObject(bucket.codes) : {},
        errorCodes: live ? codesObject(bucket.errorCodes) : {},
        p50Ms: live ? quantile(bucket.histogram, bucket.requests, 0.5) : null,
        p99Ms: live ? quantile(bucket.histogram, bucket.requests, 0.99) : null,
      });
    }
    return out;
  }

  /** The whole window in one: answers, errors, by code, p50/p99. */
  totals(): Omit<BucketView, 't'> {
    const current = Math.floor(this.now() / this.bucketMs);
    const histogram = new Uint32Array(HISTOGRAM_SIZE);
    const codes = new Map<number, number>();
    const errorCodes = new Map<number, number>();
    let requests = 0;
    let errors = 0;
    for (const bucket of this.ring) {
      if (bucket.index < 0 || bucket.index <= current - this.bucketCount || bucket.index > current) continue;
      requests += bucket.requests;
      errors += bucket.errors;
      for (const [code, n] of bucket.codes) codes.set(code, (codes.get(code) ?? 0) + n);
      for (const [code, n] of bucket.errorCodes) errorCodes.set(code, (errorCodes.get(code) ?? 0) + n);
      for (let i = 0; i < HISTOGRAM_SIZE; i++) histogram[i] = (histogram[i] as number) + (bucket.histogram[i] as number);
    }
    return {
      requests,
      errors,
      codes: codesObject(codes),
      errorCodes: codesObject(errorCodes),
      p50Ms: quantile(histogram, requests, 0.5),
      p99Ms: quantile(histogram, requests, 0.99),
    };
  }

  /** Counters of every client that had an answer since start (at most `maxClients`), by name. */
  clientCounters(): Record<string, ClientCountersView> {
    const out: Record<string, ClientCountersView> = {};
    for (const name of [...this.clients.keys()].sort()) {
      const c = this.clients.get(name) as ClientCounters;
      out[name] = {
        requests: c.requests,
        errors: c.errors,
        codes: codesObject(c.codes),
        lastAnswerAt: new Date(c.lastAnswerAt).toISOString(),
        recentErrors: c.recentErrors.map((e) => ({ ...e })),
      };
    }
    return out;
  }
}

function codesObject(codes: Map<number, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const code of [...codes.keys()].sort((a, b) => a - b)) out[String(code)] = codes.get(code) as number;
  return out;
}
