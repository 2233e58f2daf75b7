// Preloaded into the RestPipe node processes (node --expose-gc --import probe.js
// server/dist/cli.js) when they run with an IPC channel. Idle until asked:
//   mem      → gc twice, then process.memoryUsage()
//   clients  → the connected-client count the bench hooks keep
//   cpu      → process.cpuUsage() (µs of user and system time since start)
//   loop     → the longest event-loop delay since the last ask (ms; the first ask starts
//              the measurement) and the process's open descriptors
//   profile-start / profile-stop → V8 CPU profile via node:inspector
// It does not touch RestPipe's code.
import { readdirSync } from 'node:fs';
import inspector from 'node:inspector';
import { monitorEventLoopDelay } from 'node:perf_hooks';

globalThis.__restpipeBench ??= { clients: 0, added: 0, removed: 0 };

if (process.send) {
  let session;
  // Started by the first `loop` ask, so that nodes never asked carry no extra timer.
  let loopDelay;
  const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
  const commands = {
    async mem() {
      if (globalThis.gc) {
        globalThis.gc();
        await new Promise((r) => setImmediate(r));
        globalThis.gc();
      }
      return { ...process.memoryUsage(), maxRSS: process.resourceUsage().maxRSS * 1024 };
    },
    clients() {
      return { ...globalThis.__restpipeBench };
    },
    cpu() {
      return process.cpuUsage();
    },
    loop() {
      if (!loopDelay) {
        loopDelay = monitorEventLoopDelay({ resolution: 10 });
        loopDelay.enable();
      }
      const maxMs = loopDelay.max / 1e6;
      loopDelay.reset();
      return { maxMs, fds: readdirSync('/proc/self/fd').length };
    },
    async 'profile-start'(m) {
      session = new inspector.Session();
      session.connect();
      await post('Profiler.enable');
      await post('Profiler.setSamplingInterval', { interval: m.intervalUs ?? 200 });
      await post('Profiler.start');
      return true;
    },
    async 'profile-stop'() {
      const { profile } = await post('Profiler.stop');
      session.disconnect();
      session = undefined;
      return profile;
    },
  };
  process.on('message', async (m) => {
    if (!m || typeof m.cmd !== 'string') return;
    try {
      const fn = commands[m.cmd];
      if (!fn) throw new Error(`unknown probe command ${m.cmd}`);
      process.send({ id: m.id, result: await fn(m) });
    } catch (err) {
      process.send({ id: m.id, error: String(err?.stack ?? err) });
    }
  });
  // Listening for messages refs the channel; unref it so the probe never keeps a node alive.
  process.channel?.unref();
}
