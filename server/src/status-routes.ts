/**
 * The server's own gateway routes: `/_restpipe/status` (health and
 * counters), `/_restpipe/clients` (who is connected) and
 * `/_restpipe/events` (connection events as Server-Sent Events). Nothing a
 * subscriber of the event stream does (stop reading, go away mid-write,
 * stay until shutdown) can throw into the server.
 */
import type { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { IdentityReload, Logger, ReloadTrigger } from '@restpipe/shared';
import type { FastifyInstance } from 'fastify';
import type { ClientRegistry } from './registry.js';

/** A client connected or disconnected, as `/_restpipe/events` sends it. */
export interface ClientConnectionEvent {
  type: 'connected' | 'disconnected';
  name: string;
  address: string | undefined;
  time: string;
  clients: number;
  /** In a cluster: the instance the client is (or was) connected to. */
  instance?: string;
}

/**
 * The server's events. `connection`: a client connected or disconnected.
 * `closing`: `close()` began. `drained`: every client was drained and its
 * `disconnected` event emitted (event streams end then). `identity`: a
 * reload ran (`changed`, the connections it closed, or the error that
 * kept the old identity) and what asked for it.
 */
export type ServerEvents = {
  connection: [ClientConnectionEvent];
  closing: [];
  drained: [];
  identity: [IdentityReload & { trigger: ReloadTrigger }];
};

/** What the routes read from the server. */
export interface StatusSource extends Pick<EventEmitter<ServerEvents>, 'on' | 'once' | 'off'> {
  readonly log: Logger;
  readonly registry: Pick<ClientRegistry, 'size'>;
  /** As `/_restpipe/status` answers; `pipe: 'listening'` answers 200, anything else 503. */
  status(): Record<string, unknown>;
  /** As `/_restpipe/clients` answers: `name`, `address`, `connectedSince`, …, `serial`, `certNotAfter` per client. */
  clients(): Array<Record<string, unknown>>;
}

/** `/_restpipe/status`, `/_restpipe/clients` and `/_restpipe/events` (Server-Sent Events). */
export function registerServerStatusRoutes(app: FastifyInstance, server: StatusSource): void {
  app.get('/_restpipe/status', async (_request, reply) => {
    const status = server.status();
    return reply.code(status.pipe === 'listening' ? 200 : 503).send(status);
  });
  app.get('/_restpipe/clients', async () => server.clients());
  app.get('/_restpipe/events', (_request, reply) => {
    reply.hijack();
    const stream = new EventStream(reply.raw, server.log);
    const snapshot = server.clients().map((client) =>
      formatEvent({
        type: 'connected',
        name: String(client.name),
        address: (client.address as string | null) ?? undefined,
        time: String(client.connectedSince),
        clients: server.registry.size,
        ...(typeof client.instance === 'string' ? { instance: client.instance } : {}),
      }),
    );
    stream.open(`: connected clients follow as "connected" events\n\n${snapshot.join('')}`);
    const send = (event: ClientConnectionEvent) => stream.write(formatEvent(event));
    const end = () => stream.end();
    // A comment line now and then keeps proxies from closing an idle stream.
    const keepAlive = setInterval(() => stream.write(': keep-alive\n\n'), 15_000);
    keepAlive.unref();
    server.on('connection', send);
    server.once('drained', end);
    stream.onStop(() => {
      clearInterval(keepAlive);
      server.off('connection', send);
      server.off('drained', end);
    });
  });
}

function formatEvent(event: ClientConnectionEvent): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

/**
 * How far (in bytes not yet taken by the socket) a subscriber may fall
 * behind live events before it is cut off: a subscriber that stops reading
 * must not grow the server's memory without bound.
 */
const EVENT_STREAM_MAX_BEHIND_BYTES = 4 * 1024 * 1024;

/**
 * One `/_restpipe/events` subscriber. Nothing it does can throw into the
 * server: writes after the end or after it went away are dropped, response
 * errors are logged at debug, and one that falls too far behind is cut off.
 */
class EventStream {
  private stopped = false;
  private allowanceBytes = EVENT_STREAM_MAX_BEHIND_BYTES;
  private readonly stopListeners: Array<() => void> = [];

  constructor(
    private readonly res: ServerResponse,
    private readonly log: Logger,
  ) {
    // A write to a socket the subscriber reset reports here; never unhandled.
    res.on('error', (err) => log.debug({ err }, 'an event stream failed'));
    res.once('close', () => this.stop());
  }

  /** Sends the head and the snapshot; the snapshot does not count as falling behind. */
  open(first: string): void {
    this.res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    this.allowanceBytes += Buffer.byteLength(first);
    this.res.write(first);
  }

  onStop(listener: () => void): void {
    if (this.stopped) listener();
    else this.stopListeners.push(listener);
  }

  write(text: string): void {
    if (this.stopped || this.gone) return;
    if (this.res.writableLength > this.allowanceBytes) {
      this.log.warn({ behindBytes: this.res.writableLength }, 'an event stream subscriber fell too far behind; closing its stream');
      this.stop();
      this.res.destroy();
      return;
    }
    this.res.write(text);
  }

  /** Ends the stream and its connection (the server stops: the connection must not linger idle). */
  end(): void {
    if (this.stopped) return;
    this.stop();
    if (this.gone) return;
    const socket = this.res.socket;
    this.res.end(() => socket?.end());
  }

  /** Ended or destroyed: a write now would fail (`writable` stays true on a response). */
  private get gone(): boolean {
    return this.res.writableEnded || this.res.destroyed;
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const listener of this.stopListeners.splice(0)) listener();
  }
}
