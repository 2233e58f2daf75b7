#!/usr/bin/env node
// The load generator, in its own process so it never shares an event loop
// with the nodes under test. Driven over IPC by bench/run.js:
//   closed  {url, connections, seconds, warmupSeconds} → autocannon, closed loop
//   rate    {url, rate, seconds, warmupSeconds, connections} → open loop at a fixed rate (undici)
//   transfer {url, method, requestBytes, count}    → sequential uploads/downloads (undici)
// Latencies are taken per response with microsecond resolution (autocannon's
// own histogram keeps whole milliseconds).
import autocannon from 'autocannon';
import { Agent, Pool, request } from 'undici';
import { percentile } from './util.js';

const commands = {
  async closed({ url, connections, seconds, warmupSeconds = 1 }) {
    const lat = [];
    let ok = 0;
    let other = 0;
    let measuring = false;
    const instance = autocannon({ url, connections, pipelining: 1, duration: seconds + warmupSeconds, timeout: 10 });
    const warm = setTimeout(() => {
      measuring = true;
      startedAt = performance.now();
    }, warmupSeconds * 1000);
    let startedAt = 0;
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (!measuring) return;
      if (statusCode >= 200 && statusCode < 300) {
        ok++;
        lat.push(responseTime);
      } else other++;
    });
    const result = await instance;
    clearTimeout(warm);
    const elapsed = (performance.now() - startedAt) / 1000;
    lat.sort((a, b) => a - b);
    return {
      rps: ok / Math.min(elapsed, seconds),
      ok,
      non2xx: other,
      errors: result.errors,
      timeouts: result.timeouts,
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      p999: percentile(lat, 99.9),
    };
  },

  async rate({ url, rate, seconds, warmupSeconds = 1, connections = 32 }) {
    const u = new URL(url);
    const pool = new Pool(u.origin, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
    const path = u.pathname + u.search;
    const intervalNs = 1e9 / rate;
    const total = Math.round(rate * (seconds + warmupSeconds));
    const warmCount = Math.round(rate * warmupSeconds);
    const fromSend = [];
    const fromSchedule = [];
    let errors = 0;
    let non2xx = 0;
    const start = process.hrtime.bigint();
    let sent = 0;
    let done = 0;
    await new Promise((resolve) => {
      const fire = (i, scheduled) => {
        const t0 = process.hrtime.bigint();
        pool
          .request({ path, method: 'GET' })
          .then(async (res) => {
            await res.body.dump();
            const t1 = process.hrtime.bigint();
            if (i >= warmCount) {
              if (res.statusCode >= 200 && res.statusCode < 300) {
                fromSend.push(Number(t1 - t0) / 1e6);
                fromSchedule.push(Number(t1 - scheduled) / 1e6);
              } else non2xx++;
            }
          })
          .catch(() => {
            if (i >= warmCount) errors++;
          })
          .finally(() => {
            if (++done === total) resolve();
          });
      };
      const tick = () => {
        const now = process.hrtime.bigint();
        while (sent < total) {
          const due = start + BigInt(Math.round(sent * intervalNs));
          if (due > now) break;
          fire(sent, due);
          sent++;
        }
        if (sent < total) setTimeout(tick, 1);
      };
      tick();
    });
    await pool.close();
    fromSend.sort((a, b) => a - b);
    fromSchedule.sort((a, b) => a - b);
    const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    return {
      achievedRps: total / elapsed,
      samples: fromSend.length,
      non2xx,
      errors,
      p50: percentile(fromSend, 50),
      p99: percentile(fromSend, 99),
      p999: percentile(fromSend, 99.9),
      sched_p50: percentile(fromSchedule, 50),
      sched_p99: percentile(fromSchedule, 99),
    };
  },

  async transfer({ url, method, requestBytes, count }) {
    const dispatcher = new Agent({ keepAliveTimeout: 60_000, bodyTimeout: 600_000, headersTimeout: 600_000 });
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    let moved = 0;
    const statuses = {};
    const started = performance.now();
    for (let i = 0; i < count; i++) {
      let body;
      const headers = { 'x-restpipe-timeout-ms': '300000' };
      if (method === 'POST') {
        headers['content-type'] = 'application/octet-stream';
        headers['content-length'] = String(requestBytes);
        body = (async function* () {
          let left = requestBytes;
          while (left > 0) {
            const n = Math.min(left, chunk.length);
            yield n === chunk.length ? chunk : chunk.subarray(0, n);
            left -= n;
          }
        })();
      }
      const res = await request(url, { method, body, headers, dispatcher });
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      let got = 0;
      for await (const c of res.body) got += c.length;
      moved += method === 'POST' ? (res.statusCode === 200 ? requestBytes : 0) : got;
    }
    const seconds = (performance.now() - started) / 1000;
    await dispatcher.close();
    return { bytes: moved, seconds, statuses };
  },
};

process.on('message', async (m) => {
  try {
    const fn = commands[m.cmd];
    if (!fn) throw new Error(`unknown loader command ${m.cmd}`);
    process.send({ id: m.id, result: await fn(m) });
  } catch (err) {
    process.send({ id: m.id, error: String(err?.stack ?? err) });
  }
});
process.on('disconnect', () => process.exit(0));
