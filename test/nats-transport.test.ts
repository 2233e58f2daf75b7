/**
 * The guarded NATS transport (server/src/cluster/nats-transport.ts), against
 * a real nats-server: a server that goes away while a publish is queued, with
 * the connection closed in the same turn, ends the connection quietly instead
 * of leaving Node an error with no listener (an uncaught exception).
 */
import type { Socket } from 'node:net';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterEach, expect, it } from 'vitest';
import { connectNats } from '../server/src/cluster/nats-transport.js';
import { startNatsServer } from './helpers/nats.js';
import { closeAll, onClose } from './helpers/pipe.js';

afterEach(closeAll);

/** The socket under a connection (nats.js internals: the protocol's transport). */
function transportSocket(nc: NatsConnection): Socket {
  return (nc as unknown as { protocol: { transport: { socket: Socket } } }).protocol.transport.socket;
}

it("writes nothing to the socket after the server's FIN, when a publish and a close share the turn", async () => {
  const nats = await startNatsServer();
  const nc = await connectNats({ servers: nats.url, reconnect: false });
  onClose(() => nc.close());
  // A status watcher, as NatsLink keeps: close() then waits on it, after the queued publish's flush.
  const watching = (async () => {
    for await (const _ of nc.status()) {
      // only keeps the iterator open
    }
  })();
  // A round trip first: the server has read all the client sent, so its death closes with a FIN, not a reset.
  await nc.flush();
  const socket = transportSocket(nc);
  const atEnd = new Promise<{ writableEnded: boolean; destroyed: boolean }>((resolve) => {
    // Closed with no 'end' (a reset): the state below fails the assertion rather than the test waiting.
    socket.once('close', () => resolve({ writableEnded: socket.writableEnded, destroyed: true }));
    socket.once('end', () => {
      // Node ends the writable side in a tick queued after this 'end'; the tick after it is the window.
      process.nextTick(() =>
        process.nextTick(() => {
          const state = { writableEnded: socket.writableEnded, destroyed: socket.destroyed };
          nc.publish('rp-test.after-fin', 'late');
          void nc.close();
          resolve(state);
        }),
      );
    });
  });
  await nats.kill();
  // The window was hit: the writable side had ended and the socket was not yet destroyed.
  expect(await atEnd).toEqual({ writableEnded: true, destroyed: false });
  await nc.closed();
  await watching;
  // Before the guard the flush wrote here and Node destroyed the socket with ERR_STREAM_WRITE_AFTER_END.
  expect(socket.errored).toBeNull();
  expect(socket.destroyed).toBe(true);
});
