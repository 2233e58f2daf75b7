/**
 * Bodies of any size through the pipe: streamed in chunks with credit-based
 * flow control, binary-safe, bounded memory, slow readers isolated, and
 * cancellation that leaves nothing pending on either side.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClientEventHandler } from '@restpipe/client';
import { ServerEventHandler } from '@restpipe/server';
import type { EventContext, PostData } from '@restpipe/shared';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, httpClient, onClose, startPair, waitFor } from './helpers/pipe.js';
import { Agent } from 'undici';
import { patternSource, sha256Of } from './helpers/bytes.js';

afterEach(closeAll);

const MiB = 1024 * 1024;

/** Explicit stream settings, so the bounds the tests assert are these numbers, not the defaults. */
const WINDOW = 1 * MiB;
const CHUNK = 64 * 1024;
const CONNECTION_BUFFER = 1 * MiB;
const STREAM_ENV = {
  RP_STREAM_WINDOW_BYTES: String(WINDOW),
  RP_STREAM_CHUNK_BYTES: String(CHUNK),
  RP_STREAM_CONNECTION_BUFFER_BYTES: String(CONNECTION_BUFFER),
};

/** Room for the control frames (replies, credits, pings) that go out without waiting for the buffer. */
const CONTROL_SLACK = 16 * 1024;

/**
 * What the code bounds, whatever the allocator does: one stream never holds
 * more than its window unread, and a connection never has more unsent than
 * its buffer setting plus the one chunk that crossed it.
 */
function expectBoundedMemory(exchange: { memory: { peakStreamHeldBytes: number; peakUnsentBytes: number } } | undefined): void {
  expect(exchange).toBeDefined();
  const { peakStreamHeldBytes, peakUnsentBytes } = exchange!.memory;
  expect(peakStreamHeldBytes).toBeLessThanOrEqual(WINDOW);
  expect(peakUnsentBytes).toBeLessThanOrEqual(CONNECTION_BUFFER + CHUNK + CONTROL_SLACK);
}

class StreamServerHandler extends ServerEventHandler {
  static override readonly streamedBodies = ['put_upload', 'put_stalled_upload', 'post_echo_stream'];
  sources: Readable[] = [];
  signals: AbortSignal[] = [];

  async put_upload(_ctx: EventContext, post: PostData) {
    const { hex, bytes } = await sha256Of(post.stream as Readable);
    return { sha256: hex, bytes };
  }
  /** Reads nothing until the sender has filled the whole window, then reads it all. */
  async put_stalled_upload(_ctx: EventContext, post: PostData) {
    const stream = post.stream as Readable;
    await waitFor(() => stream.readableLength >= WINDOW, 20_000, 'the window to fill');
    // Give the sender every chance to overrun its credit: it may not.
    await sleep(50);
    const heldWhileStalled = stream.readableLength;
    const { hex, bytes } = await sha256Of(stream);
    return { sha256: hex, bytes, heldWhileStalled };
  }
  post_echo_stream(_ctx: EventContext, post: PostData) {
    return ['application/octet-stream', 0, post.stream];
  }
  post_whole(_ctx: EventContext, post: PostData) {
    return { bytes: post.body.length };
  }
  get_download(ctx: EventContext, _post: PostData, size: string, seed: string) {
    this.signals.push(ctx.signal);
    const source = patternSource(Number(size));
    this.sources.push(source.stream);
    (source.stream as Readable & { seed?: string }).seed = seed;
    return ['application/octet-stream', 0, source.stream];
  }
  get_blob(_ctx: EventContext, _post: PostData, size: string) {
    return ['application/octet-stream', 0, Buffer.alloc(Number(size), 7)];
  }
  get_time() {
    return { time_from_server: Date.now() / 1000 };
  }
  get_trickle(_ctx: EventContext, _post: PostData, pieces: string, gapMs: string) {
    return [
      'application/octet-stream',
      0,
      (async function* () {
        for (let i = 0; i < Number(pieces); i++) {
          await sleep(Number(gapMs));
          yield Buffer.alloc(100 * 1024, i);
        }
      })(),
    ];
  }
}

class StreamClientHandler extends ClientEventHandler {
  static override readonly streamedBodies = ['put_upload'];
  async put_upload(_ctx: EventContext, post: PostData) {
    const { hex, bytes } = await sha256Of(post.stream as Readable);
    return { sha256: hex, bytes };
  }
  get_download(_ctx: EventContext, _post: PostData, size: string) {
    return ['application/octet-stream', 0, patternSource(Number(size)).stream];
  }
}

function dedicatedAgent(): Agent {
  const agent = new Agent({ connections: 8, bodyTimeout: 60_000, headersTimeout: 60_000 });
  onClose(() => agent.close());
  return agent;
}

describe('large bodies', () => {
  it('uploads 100 MiB client → server with an equal sha256 and bounded memory', async () => {
    const { server, client } = await startPair({ server: { handler: new StreamServerHandler(), env: STREAM_ENV }, client: { env: STREAM_ENV } });
    const source = patternSource(100 * MiB);
    const res = await request(`${client.gatewayAddress}/server/upload`, { method: 'PUT', body: source.stream, dispatcher: dedicatedAgent() });
    const answer = (await res.body.json()) as { sha256: string; bytes: number };
    expect(res.statusCode).toBe(200);
    expect(answer).toEqual({ sha256: source.digest(), bytes: 100 * MiB });
    expectBoundedMemory(server.registry.get('agent-1'));
    expectBoundedMemory(client.exchange);
  });

  it('a reader that stalls holds exactly one window of its stream, never more', async () => {
    const { server, client } = await startPair({ server: { handler: new StreamServerHandler(), env: STREAM_ENV }, client: { env: STREAM_ENV } });
    const source = patternSource(8 * WINDOW);
    const res = await request(`${client.gatewayAddress}/server/stalled_upload`, { method: 'PUT', body: source.stream, dispatcher: dedicatedAgent() });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({ sha256: source.digest(), bytes: 8 * WINDOW, heldWhileStalled: WINDOW });
    expect(server.registry.get('agent-1')!.memory.peakStreamHeldBytes).toBe(WINDOW);
    expectBoundedMemory(client.exchange);
  });

  it('downloads 100 MiB server → client handler → server gateway with an equal sha256 and bounded memory', async () => {
    const { server, client } = await startPair({ server: { env: STREAM_ENV }, client: { handler: new StreamClientHandler(), env: STREAM_ENV } });
    const expected = patternSource(100 * MiB);
    const expectedHash = (await sha256Of(expected.stream)).hex;
    const res = await request(`${server.gatewayAddress}/client/agent-1/download//${100 * MiB}`, { dispatcher: dedicatedAgent() });
    expect(res.statusCode).toBe(200);
    expect(res.headers['transfer-encoding']).toBe('chunked');
    const got = await sha256Of(res.body);
    expect(got).toEqual({ hex: expectedHash, bytes: 100 * MiB });
    expectBoundedMemory(server.registry.get('agent-1'));
    expectBoundedMemory(client.exchange);
  });

  it('uploads 100 MiB server → client with an equal sha256', async () => {
    const { server } = await startPair({ client: { handler: new StreamClientHandler() } });
    const source = patternSource(100 * MiB);
    const res = await request(`${server.gatewayAddress}/client/agent-1/upload`, { method: 'PUT', body: source.stream, dispatcher: dedicatedAgent() });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({ sha256: source.digest(), bytes: 100 * MiB });
  });

  it('sends a large reply buffer with its Content-Length', async () => {
    const { client } = await startPair({ server: { handler: new StreamServerHandler() } });
    const res = await request(`${client.gatewayAddress}/server/blob//${3 * MiB + 5}`, { dispatcher: dedicatedAgent() });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-length']).toBe(String(3 * MiB + 5));
    const body = Buffer.from(await res.body.arrayBuffer());
    expect(body.length).toBe(3 * MiB + 5);
    expect(body.every((b) => b === 7)).toBe(true);
  });

  it('round-trips every byte value exactly (streamed echo)', async () => {
    const { client } = await startPair({ server: { handler: new StreamServerHandler() } });
    const payload = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(3 * MiB)]);
    const res = await request(`${client.gatewayAddress}/server/echo_stream`, {
      method: 'POST',
      body: payload,
      headers: { 'content-type': 'application/octet-stream' },
      dispatcher: dedicatedAgent(),
    });
    expect(res.statusCode).toBe(200);
    expect(Buffer.from(await res.body.arrayBuffer()).equals(payload)).toBe(true);
  });

  it('answers 413 when a streamed body exceeds RP_MAX_BODY_BYTES of a handler that takes the body whole', async () => {
    const { client } = await startPair({ server: { handler: new StreamServerHandler(), env: { RP_MAX_BODY_BYTES: String(MiB) } } });
    const http = httpClient();
    const small = await http('POST', `${client.gatewayAddress}/server/whole`, { body: Buffer.alloc(MiB - 10) });
    expect(small.json()).toEqual({ bytes: MiB - 10 });
    const big = await http('POST', `${client.gatewayAddress}/server/whole`, { body: Buffer.alloc(3 * MiB) });
    expect(big.status).toBe(413);
    expect(big.code).toBe(241);
  });
});

/** An upload that sends `pieces` of 100 KiB with `gapMs` between them. */
function trickle(pieces: number, gapMs: number): AsyncIterable<Buffer> {
  return (async function* () {
    for (let i = 0; i < pieces; i++) {
      yield Buffer.alloc(100 * 1024, i);
      await sleep(gapMs);
    }
  })();
}

describe('deadlines with streamed bodies', () => {
  it('a body still flowing is progress: uploads and downloads longer than the deadline finish', async () => {
    const { client } = await startPair({ server: { handler: new StreamServerHandler() } });
    const agent = dedicatedAgent();
    const headers = { 'x-restpipe-timeout-ms': '400' };
    const up = await request(`${client.gatewayAddress}/server/upload`, { method: 'PUT', body: Readable.from(trickle(10, 100)), headers, dispatcher: agent });
    expect(up.statusCode).toBe(200);
    expect(((await up.body.json()) as { bytes: number }).bytes).toBe(10 * 100 * 1024);
    const down = await request(`${client.gatewayAddress}/server/trickle//10/100`, { headers, dispatcher: agent });
    expect(down.statusCode).toBe(200);
    expect(Buffer.from(await down.body.arrayBuffer()).length).toBe(10 * 100 * 1024);
  });

  it('an upload that stalls for longer than the deadline answers 504', async () => {
    const { client } = await startPair({ server: { handler: new StreamServerHandler() } });
    const stalled = (async function* () {
      yield Buffer.alloc(100 * 1024);
      await sleep(1500);
      yield Buffer.alloc(100 * 1024);
    })();
    const res = await request(`${client.gatewayAddress}/server/upload`, {
      method: 'PUT',
      body: Readable.from(stalled),
      headers: { 'x-restpipe-timeout-ms': '300' },
      dispatcher: dedicatedAgent(),
    });
    expect(res.statusCode).toBe(504);
    expect(res.headers['x-event-return-code']).toBe('244');
    await res.body.dump();
  });
});

describe('flow control and cancellation', () => {
  it('a stalled reader on one request does not block a small request on the same pipe', async () => {
    const handler = new StreamServerHandler();
    const { client, server } = await startPair({ server: { handler } });
    const agent = dedicatedAgent();
    const stalled = await request(`${client.gatewayAddress}/server/download//${200 * MiB}/a`, { dispatcher: agent });
    expect(stalled.statusCode).toBe(200);
    // Never read `stalled.body`: its window fills and the sender pauses.
    await sleep(300);
    for (let i = 0; i < 20; i++) {
      const time = await request(`${client.gatewayAddress}/server/time`, { dispatcher: agent, headersTimeout: 5000, bodyTimeout: 5000 });
      expect(time.statusCode).toBe(200);
      await time.body.json();
    }
    expect(server.registry.get('agent-1')?.inFlight.streams).toBe(1);
    stalled.body.destroy();
    await waitFor(() => handler.sources[0]?.destroyed === true, 5000, 'the handler stream to be destroyed');
  });

  it('cancelling mid-stream frees everything on both sides', async () => {
    const handler = new StreamServerHandler();
    const { client, server } = await startPair({ server: { handler } });
    const res = await request(`${client.gatewayAddress}/server/download//${500 * MiB}/b`, { dispatcher: dedicatedAgent() });
    let read = 0;
    for await (const piece of res.body) {
      read += (piece as Buffer).length;
      if (read > 5 * MiB) break; // leaving the loop destroys the response body
    }
    await waitFor(() => handler.sources[0]?.destroyed === true, 5000, 'the server-side source to be destroyed');
    await waitFor(() => client.exchange?.inFlight.streams === 0 && client.exchange.inFlight.outgoing === 0, 5000, 'client streams to clear');
    await waitFor(
      () => {
        const f = server.registry.get('agent-1')?.inFlight;
        return f?.streams === 0 && f.incoming === 0;
      },
      5000,
      'server streams to clear',
    );
  });

  it('a pipe that drops mid-stream fails the body and leaves nothing pending', async () => {
    const handler = new StreamServerHandler();
    const { client, server } = await startPair({ server: { handler } });
    const res = await request(`${client.gatewayAddress}/server/download//${500 * MiB}/c`, { dispatcher: dedicatedAgent() });
    const reading = (async () => {
      for await (const _ of res.body) {
        // read until the stream breaks
      }
    })();
    await sleep(100);
    server.registry.get('agent-1')?.close();
    await expect(reading).rejects.toThrow();
    await waitFor(() => handler.sources[0]?.destroyed === true, 5000, 'the server-side source to be destroyed');
    expect(handler.signals[0]?.aborted).toBe(true);
  });
});
