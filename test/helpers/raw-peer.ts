/**
 * Hostile peers for tests: a raw TLS (or plain TCP) connection that writes
 * whatever bytes a test crafts and records what the server sends back, a raw
 * HTTP exchange that no client library normalizes, and a server whose log
 * lines and counters a test can read.
 */
import net from 'node:net';
import tls from 'node:tls';
import { FrameDecoder, PROTOCOL_VERSION, encodeFrame, type Frame, type FrameInit } from '@restpipe/proto';
import { RestPipeServer, loadServerConfig, type ServerEventHandler } from '@restpipe/server';
import type { TlsIdentity } from '@restpipe/shared';
import { pino } from 'pino';
import { testPki } from './identities.js';
import { CountingStats } from './counting-stats.js';
import { TEST_ENV, onClose, waitFor } from './pipe.js';

/** One pino line, parsed. */
export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** An in-memory pino destination. */
export class LogCapture {
  readonly lines: LogLine[] = [];
  write(line: string): void {
    this.lines.push(JSON.parse(line) as LogLine);
  }
  /** Lines at warn (40) or above. */
  warnings(): LogLine[] {
    return this.lines.filter((l) => l.level >= 40);
  }
}

export { CountingStats } from './counting-stats.js';

export interface LoggedServer {
  server: RestPipeServer;
  log: LogCapture;
  stats: CountingStats;
}

/** A real server (pipe and gateway on port 0) logging at warn into memory; closed at teardown. */
export async function startLoggedServer(
  setup: { env?: Record<string, string>; handler?: ServerEventHandler; identity?: TlsIdentity } = {},
): Promise<LoggedServer> {
  const pki = await testPki();
  const log = new LogCapture();
  const stats = new CountingStats();
  const config = await loadServerConfig({ ...TEST_ENV, ...setup.env });
  const server = new RestPipeServer({
    config,
    identity: setup.identity ?? pki.server,
    handler: setup.handler,
    log: pino({ level: 'warn' }, log),
    stats,
  });
  onClose(() => server.close(0));
  await server.start();
  return { server, log, stats };
}

/** A raw connection to the pipe port. */
export interface RawPeer {
  readonly socket: net.Socket;
  /** Frames the server sent (decoded leniently; a bad one stops the decoding). */
  readonly frames: Frame[];
  /** Bytes the server sent. */
  received: number;
  /** Set when the socket reported an error. */
  error: Error | undefined;
  readonly closed: Promise<void>;
  isClosed(): boolean;
  /** Writes raw bytes, or encodes a frame (without the size check) and writes it. */
  send(data: Uint8Array | FrameInit): void;
  /** Resolves when the server closed the connection; throws after `ms`. */
  waitClosed(ms?: number): Promise<void>;
}

function wrap(socket: net.Socket): RawPeer {
  let closed = false;
  const frames: Frame[] = [];
  const decoder = new FrameDecoder(64 * 1024 * 1024, (f) => frames.push(f));
  const peer: RawPeer = {
    socket,
    frames,
    received: 0,
    error: undefined,
    closed: new Promise<void>((resolve) => socket.once('close', () => resolve())),
    isClosed: () => closed,
    send(data) {
      if (closed || socket.destroyed) return;
      socket.write(data instanceof Uint8Array ? data : encodeFrame(data, Number.MAX_SAFE_INTEGER));
    },
    async waitClosed(ms = 5000) {
      await waitFor(() => closed, ms, 'the server to close the connection');
    },
  };
  socket.on('data', (chunk: Buffer) => {
    peer.received += chunk.length;
    try {
      decoder.push(chunk);
    } catch {
      // Not frames (e.g. an HTTP answer): keep the bytes count only.
    }
  });
  socket.on('error', (err) => (peer.error ??= err));
  socket.once('close', () => (closed = true));
  onClose(() => socket.destroy());
  return peer;
}

/**
 * Opens a TLS connection to the pipe with `identity` (a valid client by
 * default: the test PKI's `raw-peer`). Resolves once the handshake is done
 * (or failed, when `expectFailure`: then the peer is returned closed or closing).
 */
export async function rawTlsPeer(port: number, identity?: Partial<TlsIdentity>, opts: { expectFailure?: boolean } = {}): Promise<RawPeer> {
  const id = identity ?? (await (await testPki()).client('raw-peer'));
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    key: id.key,
    cert: id.cert,
    ca: id.ca ?? (await testPki()).ca.certPem,
    servername: 'localhost',
  });
  const peer = wrap(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('close', () =>
      opts.expectFailure ? resolve() : reject(new Error(`the TLS connection closed during the handshake: ${peer.error?.message ?? ''}`)),
    );
  });
  return peer;
}

/** A plain TCP connection (no TLS at all). */
export async function rawTcpPeer(port: number, host = '127.0.0.1'): Promise<RawPeer> {
  const socket = net.connect({ host, port });
  const peer = wrap(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  return peer;
}

/** The Hello a real node sends, with overrides. */
export function hello(overrides: Partial<NonNullable<FrameInit['hello']>> = {}): FrameInit {
  return {
    hello: {
      version: PROTOCOL_VERSION,
      capabilities: ['stream'],
      agent: 'raw-peer',
      maxFrameBytes: 1024 * 1024,
      initialWindowBytes: 1024 * 1024,
      ...overrides,
    },
  };
}

/** A protobuf varint. */
export function varint(value: number): Buffer {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}

/** `body` with its varint length prefix: a frame as the wire carries it, whatever the body holds. */
export function withPrefix(body: Uint8Array): Buffer {
  return Buffer.concat([varint(body.length), body]);
}

/** An HTTP answer read off a raw socket. */
export interface RawHttpAnswer {
  /** 0 when the connection closed without an answer. */
  status: number;
  headers: Record<string, string>;
  body: string;
  raw: string;
}

/**
 * Sends `head` (request line and headers, without the final blank line) and `body` on a
 * raw TCP socket to the gateway and reads the answer until the server closes
 * or a whole answer (by Content-Length) arrived. Nothing is normalized.
 */
export async function rawHttp(gatewayAddress: string, head: string, opts: { body?: string; timeoutMs?: number } = {}): Promise<RawHttpAnswer> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const url = new URL(gatewayAddress);
  const socket = net.connect({ host: url.hostname, port: Number(url.port) });
  onClose(() => socket.destroy());
  const parts: Buffer[] = [];
  const text = () => Buffer.concat(parts).toString('latin1');
  const complete = () => {
    const t = text();
    const end = t.indexOf('\r\n\r\n');
    if (end < 0) return false;
    const m = /\r\ncontent-length:\s*(\d+)/i.exec(t.slice(0, end));
    return m !== null && t.length - end - 4 >= Number(m[1]);
  };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms to ${head.slice(0, 80)}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    socket.on('data', (chunk: Buffer) => {
      parts.push(chunk);
      if (complete()) {
        socket.destroy();
        done();
      }
    });
    socket.on('error', () => undefined); // a reset after the server refused: the answer (if any) is in parts
    socket.once('close', done);
    socket.once('connect', () => socket.write(`${head}\r\n\r\n${opts.body ?? ''}`));
  });
  const raw = text();
  const end = raw.indexOf('\r\n\r\n');
  const headText = end < 0 ? raw : raw.slice(0, end);
  const [statusLine = '', ...headerLines] = headText.split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: status ? Number(status[1]) : 0, headers, body: end < 0 ? '' : raw.slice(end + 4), raw };
}
