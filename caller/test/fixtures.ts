/**
 * Handler classes and helpers shared by the caller's tests: both sides of a
 * real pipe (test/helpers/pipe.ts), a caller closed at teardown, byte
 * patterns for large transfers.
 */
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCaller, type Caller, type CallerOptions, type GatewayLocation } from '@restpipe/caller';
import { ClientEventHandler } from '@restpipe/client';
import { ServerEventHandler } from '@restpipe/server';
import type { EventContext, PostData } from '@restpipe/shared';
import { pattern, sha256Of } from '../../test/helpers/bytes.js';
import { onClose } from '../../test/helpers/pipe.js';

export const MiB = 1024 * 1024;

/** A caller closed at teardown. */
export function callerFor(gateway: GatewayLocation | undefined, opts?: CallerOptions): Caller {
  if (gateway === undefined) throw new Error('the node has no gateway address');
  const caller = createCaller(gateway, opts);
  onClose(() => caller.close());
  return caller;
}

/** The byte patterns of the pipe's own streaming tests (test/helpers/bytes.ts). */
export { pattern, sha256Of };

function describePost(ctx: EventContext, post: PostData) {
  return {
    verb: ctx.verb,
    mimetype: post.mimetype,
    kind: Buffer.isBuffer(post.data) || post.data instanceof Uint8Array ? 'bytes' : typeof post.data,
    data: Buffer.isBuffer(post.data) || post.data instanceof Uint8Array ? null : post.data,
    hex: Buffer.from(post.body).toString('hex'),
    custom: ctx.headers['x-custom'] ?? null,
  };
}

export class TestServerHandler extends ServerEventHandler {
  static override readonly streamedBodies = ['put_upload'];
  signals: AbortSignal[] = [];
  notes: unknown[] = [];
  gate: Promise<void> = Promise.resolve();
  /** Bytes `get_big` has produced so far. */
  bigProduced = 0;

  get_time() {
    return { time_from_server: Date.now() / 1000 };
  }
  get_echo(ctx: EventContext, _post: PostData, ...args: string[]) {
    return {
      peer: ctx.peer.name,
      args,
      query: ctx.query,
      rawQuery: ctx.rawQuery,
      custom: ctx.headers['x-custom'] ?? null,
      timeout: ctx.headers['x-restpipe-timeout-ms'] ?? null,
    };
  }
  post_echo(ctx: EventContext, post: PostData) {
    return describePost(ctx, post);
  }
  put_echo(ctx: EventContext, post: PostData) {
    return describePost(ctx, post);
  }
  patch_echo(ctx: EventContext, post: PostData) {
    return describePost(ctx, post);
  }
  delete_echo(ctx: EventContext, post: PostData) {
    return describePost(ctx, post);
  }
  async put_upload(_ctx: EventContext, post: PostData) {
    return sha256Of(post.stream as Readable);
  }
  get_text() {
    return ['text/plain; charset=utf-8', 0, 'héllo wörld'];
  }
  get_bin() {
    return ['application/octet-stream', 0, Buffer.from([0, 1, 2, 254, 255])];
  }
  get_empty_json() {
    return ['application/json', 0, Buffer.alloc(0)];
  }
  get_not_json() {
    return ['application/json', 0, Buffer.from('{nope')];
  }
  get_app_code() {
    return ['text/plain', 7, 'seven'];
  }
  get_fail() {
    throw new TypeError('the disk is on fire');
  }
  get_big(_ctx: EventContext, _post: PostData, mib: string) {
    return ['application/octet-stream', 0, pattern(Number(mib) * MiB, (n) => (this.bigProduced = n))];
  }
  get_big_fail() {
    throw new RangeError('no such file');
  }
  async get_slow(ctx: EventContext) {
    this.signals.push(ctx.signal);
    await sleep(10_000, undefined, { signal: ctx.signal }).catch(() => undefined);
    return { slow: true };
  }
  async post_note(_ctx: EventContext, post: PostData) {
    await this.gate;
    this.notes.push(post.data);
    return { noted: true };
  }
}

export class TestClientHandler extends ClientEventHandler {
  notes: unknown[] = [];
  constructor(readonly label = 'client') {
    super();
  }
  get_time() {
    return { time_from_client: Date.now() / 1000 };
  }
  get_cat(_ctx: EventContext, _post: PostData, ...parts: string[]) {
    return { result_from_client: parts.join('') };
  }
  get_whoami(ctx: EventContext) {
    return { label: this.label, query: ctx.query };
  }
  get_maybe_fail() {
    if (this.label === 'gamma') throw new Error(`${this.label} fails`);
    return ['text/plain', 0, `${this.label} ok`];
  }
  get_bin() {
    return ['application/octet-stream', 0, Buffer.from(this.label)];
  }
  post_echo(ctx: EventContext, post: PostData) {
    return { label: this.label, ...describePost(ctx, post) };
  }
  post_note(_ctx: EventContext, post: PostData) {
    this.notes.push(post.data);
    return { noted: true };
  }
}
