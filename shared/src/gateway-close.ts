/**
 * Closing the gateway ends its connections that carry no request at once,
 * and each other one as soon as its last answer is out (an answer not
 * started yet says `Connection: close`).
 *
 * Node's `server.close()` ends only the keep-alive connections that are
 * idle at that moment. One that never carried a request (browsers open
 * spare connections) stays until the headers timeout (60 s, checked every
 * 30 s), and one whose answer goes out during the close stays for the
 * keep-alive timeout (72 s in Fastify): the node's `close(graceMs)` would
 * wait that long for a browser showing the dashboard. Every gateway does
 * this (`createGateway`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

/** Call before the gateway listens. */
export function endConnectionsOnClose(app: FastifyInstance): void {
  /** The answers in progress on each open connection. */
  const answering = new Map<Socket, Set<ServerResponse>>();
  let closing = false;
  const endIfIdle = (socket: Socket) => {
    if ((answering.get(socket)?.size ?? 0) > 0 || socket.destroyed) return;
    // What was written goes out, then the connection closes (the HTTP server
    // allows half-open connections: end() alone would wait on the peer's end).
    socket.end();
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', () => socket.destroy());
  };
  app.server.on('connection', (socket: Socket) => {
    answering.set(socket, new Set());
    socket.once('close', () => answering.delete(socket));
  });
  app.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    const answers = answering.get(socket);
    if (!answers) return;
    answers.add(response);
    response.once('close', () => {
      answers.delete(response);
      if (closing) endIfIdle(socket);
    });
  });
  app.addHook('preClose', (done) => {
    closing = true;
    for (const [socket, answers] of answering) {
      // An answer not started yet tells the caller not to send on this connection again.
      for (const response of answers) if (!response.headersSent) response.setHeader('connection', 'close');
      endIfIdle(socket);
    }
    done();
  });
}
