/**
 * More handles on the pipe's listening socket, so that a busy server
 * accepts more than one connection per event-loop iteration.
 *
 * Why: libuv (1.45 and later: Node 20, 22 and 24) accepts ONE connection
 * per listening handle each time round the event loop. An idle server goes
 * round thousands of times a second, but in a reconnect storm each round
 * does milliseconds of TLS work, so the server accepts only a few hundred
 * connections a second: the kernel's listen queue stays full, the
 * clients' connections wait there unaccepted (their SYNs and ClientHellos
 * dropped and sent again by TCP seconds later), and they time out while
 * the server itself has little to do. With `count` more handles on the same
 * socket, each round accepts up to `count + 1`.
 *
 * How: a handle sent over an IPC channel arrives as a new file descriptor
 * for the same socket (what `child.send(message, handle)` does for the
 * cluster module). A short-lived helper process hands the listener's
 * handle back `count` times, never listening on it itself; each copy
 * becomes a `net.Server` whose connections go to `onConnection` unread,
 * like the listener's own. The helper exits once done. Any failure leaves
 * the server with its one handle (returned empty, logged).
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import type { Logger } from '@restpipe/shared';

/** The helper: sends every handle it gets straight back (a raw handle: it never listens), and exits when the parent lets go. */
const ECHO = "process.on('message', (m, h) => { if (h) process.send(m, h, () => h.close()); }); process.on('disconnect', () => process.exit(0));";

/** How long the helper may take in all, ms. */
const HELPER_TIMEOUT_MS = 10_000;

export interface AcceptHandlesOptions {
  /** How many more handles. */
  readonly count: number;
  /** Gets every connection accepted on an extra handle (paused, unread). */
  readonly onConnection: (socket: net.Socket) => void;
  /** The listen queue length (each copy listens again with it: on a listening socket listen(2) only sets that). */
  readonly backlog: number;
  readonly log: Logger;
  /** Aborting (the server closing) ends the helper and closes the handles that came. */
  readonly signal?: AbortSignal;
}

export interface AcceptHandles {
  /** The handles that came back, as soon as the last did (none once aborted). */
  readonly ready: Promise<net.Server[]>;
  /** Settles once the helper process is gone and the channel closed (no handle can arrive any more). */
  readonly gone: Promise<void>;
}

/**
 * Extra handles on `listener`'s socket. May be called before the listener
 * listens: the helper starts at once (a process start is the slow part)
 * and gets the handle when the listener is up. Never rejects.
 */
export function extraAcceptHandles(listener: net.Server, opts: AcceptHandlesOptions): AcceptHandles {
  const servers: net.Server[] = [];
  if (opts.count <= 0 || opts.signal?.aborted) return { ready: Promise.resolve(servers), gone: Promise.resolve() };
  let gone: () => void = () => {};
  const goneP = new Promise<void>((resolve) => {
    gone = resolve;
  });
  const ready = new Promise<net.Server[]>((resolve) => {
    let settled = false;
    const child = spawn(process.execPath, ['-e', ECHO], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'], serialization: 'json' });
    const finish = (problem?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Killed, not disconnected: a handle still on its way in is acknowledged by Node over the
      // channel, and acknowledging on a channel this side closed trips an assertion inside Node.
      child.kill();
      if (problem)
        opts.log.warn(
          { wanted: opts.count, got: servers.length, err: problem },
          'could not add accept handles to the pipe listener; it accepts one connection per event-loop turn',
        );
      resolve(servers);
    };
    child.once('close', () => gone());
    const onAbort = () => finish();
    opts.signal?.addEventListener('abort', onAbort);
    const timer = setTimeout(() => finish('the helper process took too long'), HELPER_TIMEOUT_MS);
    timer.unref();
    child.on('error', (err) => finish(err.message));
    child.on('exit', () => finish(servers.length === opts.count ? undefined : 'the helper process exited'));
    child.on('message', (_message, handle) => {
      if (!handle) return;
      if (settled) {
        (handle as unknown as { close?: () => void }).close?.();
        return;
      }
      const server = net.createServer({ pauseOnConnect: true }, opts.onConnection);
      server.on('error', (err) => opts.log.warn({ err: err.message }, 'an extra accept handle of the pipe listener failed'));
      server.listen(handle as unknown as net.Server, opts.backlog);
      servers.push(server);
      if (servers.length === opts.count) finish();
      else sendOne();
    });
    // One handle at a time, the next once the last came back: Node queues a message sent while an
    // earlier handle awaits its acknowledgement, and a queue left behind when the helper goes trips
    // an assertion inside Node.
    const sendOne = () => {
      if (settled) return;
      // The raw handle (Node's `_handle`), not the server: a server would listen, and accept, in the helper too.
      const raw = (listener as unknown as { _handle?: net.Server })._handle;
      if (!raw) {
        finish('the listener has no handle');
        return;
      }
      child.send({ copy: servers.length }, raw);
    };
    if (listener.listening) sendOne();
    else {
      // A listener that cannot listen reports that itself; the helper just goes. Each listener
      // is removed by the other, so no error of the listener's later life is caught here.
      const failed = () => {
        listener.off('listening', listened);
        finish();
      };
      const listened = () => {
        listener.off('error', failed);
        sendOne();
      };
      listener.once('listening', listened);
      listener.once('error', failed);
    }
  });
  return { ready, gone: goneP };
}
