// Summarizes a V8 .cpuprofile: self time by function, by area (RestPipe's own
// code, Fastify, protobufjs, pino, Node's TLS/net/http internals, GC, idle),
// and inclusive time of RestPipe's functions.
import { relative } from 'node:path';

export function categorize(url, functionName, root) {
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(program)') return 'V8/native (program)';
  if (!url) return 'native/builtin';
  if (
    url.includes('/node_modules/fastify') ||
    url.includes('/node_modules/find-my-way') ||
    url.includes('/node_modules/light-my-request') ||
    url.includes('/node_modules/avvio') ||
    url.includes('/node_modules/fast-json-stringify') ||
    url.includes('/node_modules/@fastify/')
  )
    return 'fastify';
  if (url.includes('/node_modules/protobufjs') || url.includes('/node_modules/@protobufjs')) return 'protobufjs';
  if (url.includes('/node_modules/pino') || url.includes('/node_modules/thread-stream') || url.includes('/node_modules/sonic-boom')) return 'pino';
  if (url.includes('/node_modules/')) return `npm: ${/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1]}`;
  if (url.includes('/proto/generated/')) return 'restpipe: generated protobuf';
  if (url.startsWith('node:internal/tls') || url.startsWith('node:tls') || url.includes('_tls_')) return 'node: tls';
  if (url.startsWith('node:internal/http') || url.startsWith('node:_http') || url.startsWith('node:http')) return 'node: http';
  if (url.startsWith('node:internal/stream') || url.startsWith('node:stream')) return 'node: streams';
  if (url.startsWith('node:net') || url.startsWith('node:internal/net') || url.includes('stream_base_commons')) return 'node: net';
  if (url.startsWith('node:internal/abort') || url.startsWith('node:internal/event_target')) return 'node: AbortController/EventTarget';
  if (url.startsWith('node:internal/timers') || url.startsWith('node:timers')) return 'node: timers';
  if (url.startsWith('node:')) return 'node: other';
  if (root && url.includes(root)) {
    const rel = relative(root, url.replace(/^file:\/\//, ''));
    return `restpipe: ${rel.split('/')[0]}`;
  }
  return 'other';
}

function shortUrl(url, root) {
  if (!url) return '';
  let u = url.replace(/^file:\/\//, '');
  if (root && u.startsWith(root)) u = relative(root, u);
  u = u.replace(/^.*node_modules\//, '');
  return u;
}

/** @returns {{ totalMs, busyMs, areas: [name, ms][], self: [...], inclusive: [...] }} */
export function summarizeProfile(profile, root, { top = 20 } = {}) {
  const byId = new Map();
  const parent = new Map();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const selfUs = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    const dt = profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  const key = (n) => {
    const cf = n.callFrame;
    return `${cf.functionName || '(anonymous)'}\u0000${cf.url}\u0000${cf.lineNumber + 1}`;
  };
  let totalUs = 0;
  let idleUs = 0;
  const areas = new Map();
  const self = new Map();
  const incl = new Map();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    const cf = n.callFrame;
    totalUs += us;
    const area = categorize(cf.url, cf.functionName, root);
    if (area === 'idle') idleUs += us;
    areas.set(area, (areas.get(area) ?? 0) + us);
    const k = key(n);
    self.set(k, (self.get(k) ?? 0) + us);
    // inclusive: every distinct function on the stack gets the sample once
    const seen = new Set();
    for (let p = id; p !== undefined; p = parent.get(p)) {
      const pn = byId.get(p);
      const pk = key(pn);
      if (seen.has(pk)) continue;
      seen.add(pk);
      incl.set(pk, (incl.get(pk) ?? 0) + us);
    }
  }
  const busyUs = totalUs - idleUs;
  const fmt = ([k, us]) => {
    const [fn, url, line] = k.split('\u0000');
    return {
      fn,
      where: url ? `${shortUrl(url, root)}:${line}` : '',
      area: categorize(url, fn, root),
      ms: us / 1000,
      pctBusy: busyUs ? (100 * us) / busyUs : 0,
    };
  };
  const skip = new Set(['(idle)', '(root)', '(program)', '(garbage collector)']);
  return {
    totalMs: totalUs / 1000,
    busyMs: busyUs / 1000,
    areas: [...areas]
      .filter(([a]) => a !== 'idle')
      .sort((a, b) => b[1] - a[1])
      .map(([a, us]) => ({ area: a, ms: us / 1000, pctBusy: busyUs ? (100 * us) / busyUs : 0 })),
    self: [...self]
      .filter(([k]) => !skip.has(k.split('\u0000')[0]))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(fmt),
    inclusive: [...incl]
      .filter(([k]) => {
        const url = k.split('\u0000')[1];
        return root && url.includes(root) && !url.includes('node_modules') && !url.includes('/bench/');
      })
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(fmt),
  };
}
