/**
 * Hostile input (issue 5): crafted frames, protocol violations, broken or
 * wrong identities, junk on the TLS port, path tricks and oversized requests
 * at the gateway. Every case gets a clear error or a closed connection, is
 * logged once, and the node keeps serving a well-behaved client connected
 * alongside.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { createClientIdentity, createServerIdentity } from '@restpipe/certs-tool';
import type { ClientStatusEvent, RestPipeClient } from '@restpipe/client';
import { EventCode } from '@restpipe/shared';
import { encodeFrame, type FrameInit } from '@restpipe/proto';
import { afterEach, describe, expect, it } from 'vitest';
import { foreignPki, testPki } from './helpers/identities.js';
import { closeAll, httpClient, startClient, startServer, waitFor } from './helpers/pipe.js';
import { hello, rawHttp, rawTcpPeer, rawTlsPeer, startLoggedServer, varint, withPrefix, type LoggedServer, type RawPeer } from './helpers/raw-peer.js';

afterEach(closeAll);

const GOOD = 'good';
const RAW = 'raw-peer';
const DAY_MS = 24 * 60 * 60 * 1000;
const BAD_FRAME_LOG = 'closing the pipe: the peer sent a bad frame';
const REFUSED_TLS_LOG = 'refused a connection: TLS handshake failed';

interface Setup extends LoggedServer {
  good: RestPipeClient;
  http: ReturnType<typeof httpClient>;
}

/** A server logging into memory and a well-behaved client `good` connected to it. */
async function setup(env: Record<string, string> = {}): Promise<Setup> {
  const logged = await startLoggedServer({ env });
  const good = await startClient(logged.server, { name: GOOD });
  await waitFor(() => logged.server.registry.get(GOOD)?.ready === true, 5000, 'the good client');
  return { ...logged, good, http: httpClient() };
}

/** The good client still answers through the server gateway, and reaches the server through its own. */
async function expectStillServing(s: Setup): Promise<void> {
  const res = await s.http('GET', `${s.server.gatewayAddress}/client/${GOOD}/time`);
  expect(res.status).toBe(200);
  expect(res.code).toBe(0);
  expect(res.json()).toHaveProperty('time_from_client');
  const back = await s.http('GET', `${s.good.gatewayAddress}/server/time`);
  expect(back.status).toBe(200);
  expect(back.json()).toHaveProperty('time_from_server');
  expect(s.server.registry.get(GOOD)?.state).toBe('open');
  expect(s.good.state).toBe('connected');
}

function registryNames(s: Setup): string[] {
  return [...s.server.registry.entries()].map(([name]) => name).sort();
}

/** Sends `frames` on a fresh raw TLS connection of a valid client and expects the server to close it. */
async function expectClosedBy(s: Setup, frames: Array<FrameInit | Uint8Array>, why: RegExp): Promise<RawPeer> {
  const warnings = s.log.warnings().length;
  const peer = await rawTlsPeer(s.server.pipeAddress.port);
  await waitFor(() => s.server.registry.get(RAW) !== undefined, 5000, 'the raw peer registered');
  peer.send(Buffer.concat(frames.map((f) => (f instanceof Uint8Array ? f : encodeFrame(f, Number.MAX_SAFE_INTEGER)))));
  await peer.waitClosed();
  await waitFor(() => s.server.registry.get(RAW) === undefined, 5000, 'the raw peer removed');
  const logged = s.log.warnings().slice(warnings);
  expect(logged, 'exactly one warning for the bad connection').toHaveLength(1);
  expect(logged[0]?.msg).toBe(BAD_FRAME_LOG);
  expect(JSON.stringify(logged[0]?.err)).toMatch(why);
  expect(logged[0]?.peer).toBe(RAW);
  return peer;
}

describe('bad frames on an authenticated connection', () => {
  it('a length prefix over the maximum (2 GiB) closes the connection without allocating it', async () => {
    const s = await setup();
    const before = process.memoryUsage();
    const warnings = s.log.warnings().length;
    const peer = await rawTlsPeer(s.server.pipeAddress.port);
    await waitFor(() => s.server.registry.get(RAW) !== undefined, 5000, 'the raw peer registered');
    // The prefix alone (no body follows): the server must refuse on the prefix.
    peer.send(varint(2 ** 31));
    await peer.waitClosed();
    const after = process.memoryUsage();
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(64 * 1024 * 1024);
    expect(after.rss - before.rss).toBeLessThan(512 * 1024 * 1024);
    const logged = s.log.warnings().slice(warnings);
    expect(logged).toHaveLength(1);
    expect(logged[0]?.msg).toBe(BAD_FRAME_LOG);
    expect(JSON.stringify(logged[0]?.err)).toMatch(/RP_FRAME_TOO_LARGE|over the maximum/);
    expect(s.stats.count('frames.bad')).toBe(1);
    await waitFor(() => s.server.registry.get(RAW) === undefined, 5000, 'the raw peer removed');
    await expectStillServing(s);
  });

  it('a prefix over the maximum followed by a flood of body bytes is refused just the same', async () => {
    const s = await setup();
    const before = process.memoryUsage().arrayBuffers;
    const peer = await rawTlsPeer(s.server.pipeAddress.port);
    peer.send(Buffer.concat([varint(2 ** 31 - 1), Buffer.alloc(256 * 1024, 0x41)]));
    await peer.waitClosed();
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
    expect(s.log.warnings().filter((l) => l.msg === BAD_FRAME_LOG)).toHaveLength(1);
    await expectStillServing(s);
  });

  it('a length prefix that is not a valid varint closes the connection', async () => {
    const s = await setup();
    await expectClosedBy(s, [Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])], /RP_FRAME_MALFORMED|varint/);
    await expectStillServing(s);
  });

  it('a malformed protobuf body (valid length, garbage bytes) closes the connection', async () => {
    const s = await setup();
    // Field 1 (hello), length-delimited, declaring far more bytes than follow.
    await expectClosedBy(s, [withPrefix(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02, 0x03]))], /RP_FRAME_MALFORMED/);
    // Wire type 7 does not exist.
    await expectClosedBy(s, [withPrefix(Buffer.from([0x0f, 0xde, 0xad, 0xbe, 0xef]))], /RP_FRAME_MALFORMED/);
    expect(s.stats.count('frames.bad')).toBe(2);
    await expectStillServing(s);
  });

  it('a malformed body after a valid Hello closes the connection too', async () => {
    const s = await setup();
    await expectClosedBy(s, [hello(), withPrefix(Buffer.from([0x12, 0x7f, 0x08]))], /RP_FRAME_MALFORMED/);
    await expectStillServing(s);
  });

  it('a frame with no known kind (only field 15) closes the connection', async () => {
    const s = await setup();
    await expectClosedBy(s, [withPrefix(Buffer.from([0x78, 0x01]))], /RP_FRAME_UNKNOWN|no known kind/);
    await expectClosedBy(s, [hello(), withPrefix(Buffer.from([0x78, 0x01]))], /RP_FRAME_UNKNOWN|no known kind/);
    // A zero-length frame carries no kind either.
    await expectClosedBy(s, [hello(), Buffer.from([0x00])], /RP_FRAME_UNKNOWN|no known kind/);
    await expectStillServing(s);
  });

  it('a Request before Hello closes the connection', async () => {
    const s = await setup();
    await expectClosedBy(s, [{ request: { id: 1, verb: 'get', noun: 'time' } }], /expected hello/);
    await expectStillServing(s);
  });

  it('a second Hello closes the connection', async () => {
    const s = await setup();
    await expectClosedBy(s, [hello(), hello()], /second hello/);
    await expectStillServing(s);
  });

  it('a Hello with another protocol version closes the connection', async () => {
    const s = await setup();
    await expectClosedBy(s, [hello({ version: 2 })], /protocol version 2/);
    await expectClosedBy(s, [hello({ version: 0 })], /protocol version 0/);
    await expectStillServing(s);
  });

  it('a request id of the wrong parity (even, from a client) closes the connection', async () => {
    const s = await setup();
    await expectClosedBy(s, [hello(), { request: { id: 2, verb: 'get', noun: 'time' } }], /wrong parity/);
    await expectClosedBy(s, [hello(), { request: { id: 0, verb: 'get', noun: 'time' } }], /wrong parity/);
    await expectStillServing(s);
  });

  it('a duplicate in-flight request id closes the connection', async () => {
    const s = await setup();
    // Request 1 streams its body and stays in flight until the body ends.
    await expectClosedBy(
      s,
      [hello(), { request: { id: 1, verb: 'put', noun: 'time', streaming: true, contentLength: -1 } }, { request: { id: 1, verb: 'get', noun: 'time' } }],
      /already in flight/,
    );
    await expectStillServing(s);
  });

  it('a Chunk beyond the granted credit closes the connection (flow-control violation)', async () => {
    const window = 64 * 1024;
    const s = await setup({ RP_STREAM_WINDOW_BYTES: String(window) });
    await expectClosedBy(
      s,
      [
        hello(),
        { request: { id: 1, verb: 'put', noun: 'time', streaming: true, contentLength: -1 } },
        { chunk: { id: 1, data: Buffer.alloc(window + 1, 0x5a) } },
      ],
      /credit/,
    );
    await expectStillServing(s);
  });

  it('a Reply for an unknown id is ignored and counted; the connection stays up', async () => {
    const s = await setup();
    const warnings = s.log.warnings().length;
    const peer = await rawTlsPeer(s.server.pipeAddress.port);
    peer.send(Buffer.concat([encodeFrame(hello()), encodeFrame({ reply: { id: 999, code: 0, body: Buffer.from('{}') } }), encodeFrame({ ping: { seq: 42 } })]));
    // The Pong comes after the Reply was handled.
    await waitFor(() => peer.frames.some((f) => f.kind === 'pong' && f.pong?.seq === 42), 5000, 'the pong');
    expect(peer.isClosed()).toBe(false);
    expect(s.server.registry.get(RAW)?.state).toBe('open');
    expect(s.stats.count('replies.unmatched')).toBe(1);
    expect(s.log.warnings().slice(warnings)).toHaveLength(0);
    // The raw peer is a working client: the server can still reach it by name.
    expect(s.server.registry.get(RAW)?.ready).toBe(true);
    await expectStillServing(s);
  });

  it('a Chunk, Credit or Cancel for an unknown id is ignored; the connection stays up', async () => {
    const s = await setup();
    const peer = await rawTlsPeer(s.server.pipeAddress.port);
    peer.send(
      Buffer.concat([
        encodeFrame(hello()),
        encodeFrame({ chunk: { id: 77, data: Buffer.alloc(100), end: false } }),
        encodeFrame({ credit: { id: 78, bytes: 0xffffffff } }),
        encodeFrame({ cancel: { id: 79, reason: 'nothing' } }),
        encodeFrame({ cancel: { id: 80, reason: 'nothing' } }),
        encodeFrame({ ping: { seq: 7 } }),
      ]),
    );
    await waitFor(() => peer.frames.some((f) => f.kind === 'pong' && f.pong?.seq === 7), 5000, 'the pong');
    expect(peer.isClosed()).toBe(false);
    expect(s.stats.count('chunks.unmatched')).toBe(1);
    expect(s.log.warnings()).toHaveLength(0);
    await expectStillServing(s);
  });

  it('a peer that completes TLS and never says Hello is dropped at the heartbeat timeout', async () => {
    const s = await setup({ RP_CLIENT_HEARTBEAT_INTERVAL_S: '0.2', RP_CLIENT_HEARTBEAT_TIMEOUT_S: '0.6' });
    const peer = await rawTlsPeer(s.server.pipeAddress.port);
    await peer.waitClosed(5000);
    expect(s.log.warnings().filter((l) => l.peer === RAW)).toHaveLength(1);
    await expectStillServing(s);
  });
});

describe('the server tells the peer why before closing', () => {
  it('sends GoAway with code 240 and the reason before closing on a bad frame', async () => {
    const s = await setup();
    const peer = await expectClosedBy(s, [{ request: { id: 1, verb: 'get', noun: 'time' } }], /expected hello/);
    const goaway = peer.frames.find((f) => f.kind === 'goaway');
    expect(goaway?.goaway?.code).toBe(EventCode.BAD_REQUEST);
    expect(goaway?.goaway?.reason).toMatch(/expected hello/);
  });
});

describe('junk on the TLS port', () => {
  it('garbage bytes on plain TCP: closed, logged once, the server keeps serving', async () => {
    const s = await setup();
    const peer = await rawTcpPeer(s.server.pipeAddress.port);
    peer.send(Buffer.from('\x00\xff\x13\x37 this is not TLS at all \x01\x02\x03'.repeat(20), 'latin1'));
    await peer.waitClosed();
    await waitFor(() => s.log.warnings().length >= 1, 2000, 'the warning');
    await sleep(50);
    expect(s.log.warnings()).toHaveLength(1);
    expect(s.log.warnings()[0]?.msg).toBe(REFUSED_TLS_LOG);
    expect(registryNames(s)).toEqual([GOOD]);
    await expectStillServing(s);
  });

  it('a plain HTTP request on the TLS port: closed, logged once, the server keeps serving', async () => {
    const s = await setup();
    const peer = await rawTcpPeer(s.server.pipeAddress.port);
    peer.send(Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
    await peer.waitClosed();
    await waitFor(() => s.log.warnings().length >= 1, 2000, 'the warning');
    await sleep(50);
    expect(s.log.warnings()).toHaveLength(1);
    expect(s.log.warnings()[0]?.msg).toBe(REFUSED_TLS_LOG);
    // Whatever came back is not an HTTP answer (at most a TLS alert).
    expect(peer.received).toBeLessThan(64);
    expect(registryNames(s)).toEqual([GOOD]);
    await expectStillServing(s);
  });
});

describe('handshake timeout on the TLS port', () => {
  it('a TCP connection that never starts TLS is dropped after RP_SERVER_HANDSHAKE_TIMEOUT_S', async () => {
    const s = await setup({ RP_SERVER_HANDSHAKE_TIMEOUT_S: '0.3' });
    const started = Date.now();
    const peer = await rawTcpPeer(s.server.pipeAddress.port);
    await peer.waitClosed(5000);
    expect(Date.now() - started).toBeLessThan(3000);
    await waitFor(() => s.log.warnings().length >= 1, 2000, 'the warning');
    expect(s.log.warnings()).toHaveLength(1);
    expect(registryNames(s)).toEqual([GOOD]);
    await expectStillServing(s);
  });

  it('a TLS ClientHello that stalls halfway is dropped after RP_SERVER_HANDSHAKE_TIMEOUT_S', async () => {
    const s = await setup({ RP_SERVER_HANDSHAKE_TIMEOUT_S: '0.3' });
    const peer = await rawTcpPeer(s.server.pipeAddress.port);
    // The first bytes of a TLS record carrying a ClientHello, and then nothing.
    peer.send(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]));
    await peer.waitClosed(5000);
    await waitFor(() => s.log.warnings().length >= 1, 2000, 'the warning');
    expect(s.log.warnings()).toHaveLength(1);
    expect(registryNames(s)).toEqual([GOOD]);
    await expectStillServing(s);
  });
});

describe('refused identities', () => {
  /** Connects with `identity`, expects the handshake refused, logged once, the registry unchanged. */
  async function expectRefused(s: Setup, identity: { key?: string | Buffer; cert?: string | Buffer; ca?: string | Buffer }): Promise<RawPeer> {
    const warnings = s.log.warnings().length;
    const peer = await rawTlsPeer(s.server.pipeAddress.port, identity, { expectFailure: true });
    await peer.waitClosed();
    await waitFor(() => s.log.warnings().length > warnings, 2000, 'the warning');
    await sleep(50);
    const logged = s.log.warnings().slice(warnings);
    expect(logged).toHaveLength(1);
    // Not one frame reached the refused peer: not even the server's Hello.
    expect(peer.frames).toHaveLength(0);
    expect(registryNames(s)).toEqual([GOOD]);
    expect(s.stats.count('connections.added')).toBe(1);
    return peer;
  }

  it('TLS without a client certificate is refused', async () => {
    const s = await setup();
    const pki = await testPki();
    const peer = await expectRefused(s, { ca: pki.ca.certPem });
    expect(peer.error?.message ?? 'closed').toMatch(/certificate|closed|socket hang up|ECONNRESET/i);
    await expectStillServing(s);
  });

  it('a client certificate from another CA is refused', async () => {
    const s = await setup();
    const pki = await testPki();
    const other = await (await foreignPki()).client('intruder');
    await expectRefused(s, { ...other, ca: pki.ca.certPem });
    await expectStillServing(s);
  });

  it('an expired client certificate is refused', async () => {
    const s = await setup();
    const pki = await testPki();
    const expired = await createClientIdentity(pki.ca, { commonName: 'expired', validFrom: new Date(Date.now() - 10 * DAY_MS), days: 1, keyBits: 2048 });
    await expectRefused(s, { key: expired.keyPem, cert: expired.certPem, ca: pki.ca.certPem });
    await expectStillServing(s);
  });

  it('a client certificate that is not valid yet is refused', async () => {
    const s = await setup();
    const pki = await testPki();
    const future = await createClientIdentity(pki.ca, { commonName: 'future', validFrom: new Date(Date.now() + 2 * DAY_MS), days: 30, keyBits: 2048 });
    await expectRefused(s, { key: future.keyPem, cert: future.certPem, ca: pki.ca.certPem });
    await expectStillServing(s);
  });

  it('a server certificate (serverAuth only) presented as a client identity is refused', async () => {
    const s = await setup();
    const pki = await testPki();
    const impostor = await createServerIdentity(pki.ca, { commonName: 'impostor', dnsNames: ['impostor.example'], keyBits: 2048 });
    await expectRefused(s, { key: impostor.keyPem, cert: impostor.certPem, ca: pki.ca.certPem });
    expect(s.server.registry.get('impostor')).toBeUndefined();
    await expectStillServing(s);
  });

  it('the real client refuses a server presenting a client certificate (clientAuth only)', async () => {
    const pki = await testPki();
    // CN localhost, so only the missing serverAuth usage can make the client refuse it.
    const wrong = await createClientIdentity(pki.ca, { commonName: 'localhost', keyBits: 2048 });
    const server = await startServer({ identity: { key: wrong.keyPem, cert: wrong.certPem, ca: pki.ca.certPem } });
    const events: ClientStatusEvent[] = [];
    const client = await startClient(server, { name: 'victim', waitConnected: false });
    client.on('status', (e) => events.push(e));
    await waitFor(() => events.some((e) => e.type === 'connect_failed'), 5000, 'a refused server');
    const failed = events.find((e) => e.type === 'connect_failed') as Extract<ClientStatusEvent, { type: 'connect_failed' }>;
    expect(failed.error.message).toMatch(/purpose|server authentication/i);
    expect(events.some((e) => e.type === 'connected')).toBe(false);
    expect(client.state).not.toBe('connected');
    expect(server.registry.size).toBe(0);
  });

  it('the real client refuses a server whose certificate comes from another CA', async () => {
    const other = await foreignPki();
    const pki = await testPki();
    const server = await startServer({ identity: { ...other.server, ca: pki.ca.certPem } });
    const events: ClientStatusEvent[] = [];
    const client = await startClient(server, { name: 'victim', waitConnected: false });
    client.on('status', (e) => events.push(e));
    await waitFor(() => events.some((e) => e.type === 'connect_failed'), 5000, 'a refused server');
    expect(events.some((e) => e.type === 'connected')).toBe(false);
    expect(server.registry.size).toBe(0);
  });
});

describe('handler-name tricks at the gateway (raw HTTP, nothing normalized)', () => {
  const NOUN_TRICKS = [
    '..%2F..%2Fetc',
    '..%2F..%2Fetc%2Fpasswd',
    'constructor',
    '__proto__',
    'toString',
    'hasOwnProperty',
    'a/../time',
    '../time',
    './time',
    'time/.',
    'time/..',
    '%2e%2e/time',
    '%2E%2E%2Ftime',
    'time%2F..',
    'time%2Futc',
    'time%252Futc',
    '..%252F..%252Fetc',
    '%74ime',
    'time%00',
    'time%',
    '%zz',
    'time;x',
    'time\\..',
    'get_time',
    'TIME',
    '',
  ];

  /** 404 with `notFoundCode` (255: no handler; 242: no such client), or 400/240 for encoding the router or the gateway refuses. */
  function expectRefusedAnswer(res: { status: number; headers: Record<string, string> }, what: string, notFoundCode: number = EventCode.NO_HANDLER): void {
    expect([400, 404], what).toContain(res.status);
    const code = Number(res.headers['x-event-return-code']);
    expect(code, what).toBe(res.status === 404 ? notFoundCode : EventCode.BAD_REQUEST);
  }

  it('the server gateway answers 404/255 (or 400/240) to every trick, never 200, and keeps serving', async () => {
    const s = await setup();
    for (const noun of NOUN_TRICKS) {
      const res = await rawHttp(s.server.gatewayAddress!, `GET /client/${GOOD}/${noun} HTTP/1.1\r\nHost: localhost\r\nConnection: close`);
      expectRefusedAnswer(res, noun);
    }
    await expectStillServing(s);
  });

  it('the client gateway answers 404/255 (or 400/240) to every trick, never 200, and keeps serving', async () => {
    const s = await setup();
    for (const noun of NOUN_TRICKS) {
      const res = await rawHttp(s.good.gatewayAddress!, `GET /server/${noun} HTTP/1.1\r\nHost: localhost\r\nConnection: close`);
      expectRefusedAnswer(res, noun);
    }
    await expectStillServing(s);
  });

  it('client-name tricks at the server gateway reach no client', async () => {
    const s = await setup();
    const names = ['..%2Fgood', `${GOOD}%2F..%2F${GOOD}`, '__proto__', 'constructor', 'toString', '%2e%2e', '%zz', `${GOOD}%00`, `${GOOD}%252F`];
    for (const name of names) {
      const res = await rawHttp(s.server.gatewayAddress!, `GET /client/${name}/time HTTP/1.1\r\nHost: localhost\r\nConnection: close`);
      expectRefusedAnswer(res, name, EventCode.UNKNOWN_CLIENT);
    }
    await expectStillServing(s);
  });

  it('other verbs with tricks answer the same', async () => {
    const s = await setup();
    for (const verb of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      for (const noun of ['constructor', '__proto__', '..%2Ftime', 'time%2F..']) {
        const res = await rawHttp(
          s.good.gatewayAddress!,
          `${verb} /server/${noun} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nContent-Type: application/json\r\nConnection: close`,
          { body: '{}' },
        );
        expectRefusedAnswer(res, `${verb} ${noun}`);
      }
    }
    await expectStillServing(s);
  });
});

describe('methods the gateway does not route', () => {
  it.each(['OPTIONS', 'HEAD', 'TRACE', 'PROPFIND'])('%s answers without calling a handler', async (method) => {
    const s = await setup();
    const res = await rawHttp(s.good.gatewayAddress!, `${method} /server/time HTTP/1.1\r\nHost: localhost\r\nConnection: close`);
    expect([400, 404, 405, 501]).toContain(res.status);
    expect(res.body).not.toMatch(/time_from_server/);
    await expectStillServing(s);
  });
});

describe('absolute-form request targets at the gateway', () => {
  it('the handler called is the one the routed path names, never one smuggled in the host part', async () => {
    const s = await setup();
    // Routed as /server/nothing_here (no such handler); the noun must not come from "Xtime".
    const res = await rawHttp(s.good.gatewayAddress!, 'GET http://Xtime//server/nothing_here HTTP/1.1\r\nHost: localhost\r\nConnection: close');
    expect(res.status).not.toBe(200);
    expect(res.body).not.toMatch(/time_from_server/);
    await expectStillServing(s);
  });
});

describe('answers the HTTP parser gives carry the event code too', () => {
  it('431 for an oversized header and 400 for a broken request line carry X-Event-Return-Code 240 and an error body', async () => {
    const s = await setup();
    const big = await rawHttp(
      s.server.gatewayAddress!,
      `GET /client/${GOOD}/time HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\nConnection: close`,
    );
    expect(big.status).toBe(431);
    expect(big.headers['x-event-return-code']).toBe(String(EventCode.BAD_REQUEST));
    expect(JSON.parse(big.body)).toMatchObject({ error: { code: 'RP_BAD_REQUEST' } });
    const broken = await rawHttp(s.server.gatewayAddress!, 'GET /client/good/time HTTP/9.9 extra\r\nHost: localhost');
    expect(broken.status).toBe(400);
    expect(broken.headers['x-event-return-code']).toBe(String(EventCode.BAD_REQUEST));
    expect(JSON.parse(broken.body)).toMatchObject({ error: { code: 'RP_BAD_REQUEST' } });
    await expectStillServing(s);
  });
});

describe('oversized requests at the gateway', () => {
  it('a 64 KiB header is refused (431/400 or closed) and the next request is served', async () => {
    const s = await setup();
    const res = await rawHttp(
      s.server.gatewayAddress!,
      `GET /client/${GOOD}/time HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\nConnection: close`,
    );
    expect([0, 400, 431]).toContain(res.status);
    await expectStillServing(s);
  });

  it('a 100 KiB URL is refused (414/431/400 or closed) and the next request is served', async () => {
    const s = await setup();
    const res = await rawHttp(s.server.gatewayAddress!, `GET /client/${GOOD}/${'a'.repeat(100 * 1024)} HTTP/1.1\r\nHost: localhost\r\nConnection: close`);
    expect([0, 400, 414, 431]).toContain(res.status);
    const onClient = await rawHttp(s.good.gatewayAddress!, `GET /server/time//${'b'.repeat(100 * 1024)} HTTP/1.1\r\nHost: localhost\r\nConnection: close`);
    expect([0, 400, 414, 431]).toContain(onClient.status);
    await expectStillServing(s);
  });

  it('many headers adding up past the limit are refused and the next request is served', async () => {
    const s = await setup();
    const headers = Array.from({ length: 2000 }, (_, i) => `X-H${i}: ${'v'.repeat(20)}`).join('\r\n');
    const res = await rawHttp(s.server.gatewayAddress!, `GET /client/${GOOD}/time HTTP/1.1\r\nHost: localhost\r\n${headers}\r\nConnection: close`);
    expect([0, 400, 431]).toContain(res.status);
    await expectStillServing(s);
  });

  it('a long but acceptable noun gets an ordinary 404/255', async () => {
    const s = await setup();
    const res = await rawHttp(s.server.gatewayAddress!, `GET /client/${GOOD}/${'n'.repeat(4000)} HTTP/1.1\r\nHost: localhost\r\nConnection: close`);
    expect([res.status, Number(res.headers['x-event-return-code'])]).toEqual([404, EventCode.NO_HANDLER]);
    await expectStillServing(s);
  });
});
