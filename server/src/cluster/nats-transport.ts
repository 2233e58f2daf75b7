/**
 * `connect()` of nats.js with its Node transport guarded against one crash.
 *
 * When a NATS server closes a connection (it stops, restarts, or drops the
 * client) the socket's writable side ends as soon as the server's FIN is read,
 * a moment before the transport sees the socket close. nats.js 3.4 still
 * writes there (its flush of queued publishes runs in a microtask), and Node
 * answers a write after end by destroying the socket with
 * `ERR_STREAM_WRITE_AFTER_END`, reported in the next tick. If the connection
 * is closed in the same turn — a server shutting down, a directory
 * unsubscribing — the transport has removed the socket's listeners by then,
 * and that error has none: an uncaught exception that ends the process.
 *
 * The guard: the transport writes nothing to a socket that is no longer
 * writable. Whatever was queued is lost with the connection, as it would be
 * anyway; nats.js reconnects and resubscribes as before.
 *
 * The transport is chosen through nats.js's own `setTransportFactory`, which
 * is what the library's `connect()` does too; every connection of a RestPipe
 * server (and of its tests) is made here. The transport class and the
 * factory are imported from the package's `lib/` files, not its public
 * surface, so server/package.json pins `@nats-io/transport-node` exactly;
 * test/nats-transport.test.ts reproduces the crash and fails if an upgrade
 * brings it back.
 */
import type { NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';
import { NatsConnectionImpl, setTransportFactory } from '@nats-io/transport-node/lib/nats-base-client.js';
import { NodeTransport, nodeResolveHost } from '@nats-io/transport-node/lib/node_transport.js';

/** nats.js's Node transport that never writes to an ended or destroyed socket. */
export class GuardedNodeTransport extends NodeTransport {
  override _send(frame: Uint8Array): Promise<void> {
    if (this.socket !== undefined && !this.socket.writable) return Promise.resolve();
    return super._send(frame);
  }
}

/** Connects to NATS like nats.js's `connect()`, over `GuardedNodeTransport`. */
export function connectNats(opts: NodeConnectionOptions): Promise<NatsConnection> {
  setTransportFactory({ factory: () => new GuardedNodeTransport(), dnsResolveFn: nodeResolveHost });
  return NatsConnectionImpl.connect(opts);
}
