// RestPipe handlers for the bench: the example handlers (`time`, `cat`) plus a
// byte sink (`POST sink`, body streamed) and a blob source (`GET blob?bytes=N`,
// reply streamed) for the transfer tests. With BENCH_BUFFERED=1 (builds
// before streamed bodies) the blob is one Buffer.
//   RP_EVENT_HANDLER_FQ_CLASS=<abs>/bench/lib/handlers.js#BenchServerHandler
import { ServerExampleHandler } from '@restpipe/server';
import { ClientExampleHandler } from '@restpipe/client';
import { blob, blobStream, countBody } from './blob.js';

const buffered = process.env.BENCH_BUFFERED === '1';
const body = (ctx) => {
  const n = Number(ctx.query.bytes ?? 0);
  return buffered ? blob(n) : blobStream(n);
};

export class BenchServerHandler extends ServerExampleHandler {
  static streamedBodies = ['post_sink'];
  async post_sink(_ctx, post) {
    return { bytes: await countBody(post) };
  }
  get_blob(ctx) {
    return ['application/octet-stream', 0, body(ctx)];
  }
}

export class BenchClientHandler extends ClientExampleHandler {
  static streamedBodies = ['post_sink'];
  async post_sink(_ctx, post) {
    return { bytes: await countBody(post) };
  }
  get_blob(ctx) {
    return ['application/octet-stream', 0, body(ctx)];
  }
}
