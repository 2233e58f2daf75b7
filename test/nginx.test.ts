/**
 * Production deployment, for real (issue 7). The repo's nginx sites
 * (deploy/nginx/) run in a real nginx in front of a server and a client that
 * the production start scripts (scripts/start-*-prod.sh) start from
 * environment files, with their gateways on unix sockets; requests go through
 * nginx in both directions. Also checked: the directives the sites must keep in
 * step with the pipe's settings, the start scripts, the environment examples
 * (deploy/env/) and the systemd units (deploy/systemd/).
 *
 * The nginx part needs /usr/sbin/nginx (Debian's package; .ci/run installs it).
 * Without it that part is skipped with a message, except when CI is set: then
 * it fails.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { Env, readCommonConfig } from '@restpipe/shared';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NGINX_BIN,
  REPO_ROOT,
  eventually,
  freePort,
  installIdentities,
  minimalEnv,
  renderSite,
  spawnChild,
  startNginx,
  tempDir,
  writeEnvFile,
  type Child,
} from './helpers/nginx.js';
import { closeAll, onClose } from './helpers/pipe.js';

// Everything this file starts (nginx, nodes, temp folders) is torn down here,
// also when a test or the setup fails half-way.
afterAll(closeAll, 30_000);

const MiB = 1024 * 1024;
/** The pipe's defaults, which the nginx sites and the systemd units must agree with. */
const DEFAULTS = readCommonConfig(new Env({}));
/** Fastify's keep-alive timeout on the gateway (ms): nginx must drop idle upstream connections first. */
const GATEWAY_KEEPALIVE_MS = 72_000;

const SITES = [
  {
    role: 'server',
    file: 'restpipe-server.conf',
    socket: '/run/restpipe/server-gateway.sock',
    variable: 'RP_SERVER_GATEWAY_SOCKET',
    env: 'server.env.example',
    unit: 'restpipe-server.service',
  },
  {
    role: 'client',
    file: 'restpipe-client.conf',
    socket: '/run/restpipe/client-gateway.sock',
    variable: 'RP_CLIENT_GATEWAY_SOCKET',
    env: 'client.env.example',
    unit: 'restpipe-client.service',
  },
] as const;
const LISTEN = 'listen 127.0.0.1:80;';

const read = (path: string) => readFileSync(join(REPO_ROOT, path), 'utf8');
const withoutComments = (text: string) => text.replace(/#.*$/gm, '');
/** Values of every `name value;` directive in an nginx config. */
function directives(text: string, name: string): string[] {
  return [...withoutComments(text).matchAll(new RegExp(`^\\s*${name}\\s+([^;]*);`, 'gm'))].map((m) => (m[1] ?? '').trim());
}
/** The value of a directive that must occur exactly once. */
function single(text: string, name: string): string {
  const values = directives(text, name);
  if (values.length !== 1) throw new Error(`expected one ${name} directive, found ${values.length}`);
  return values[0] as string;
}
/** nginx time (`310s`, `5m`, `300`) in seconds. */
function nginxSeconds(value: string): number {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(value);
  if (!m) throw new Error(`not an nginx time: ${value}`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] ?? 's']!;
}
/** nginx size (`0`, `8m`, `512k`, `8388608`) in bytes. */
function nginxBytes(value: string): number {
  const m = /^(\d+)([kKmMgG])?$/.exec(value);
  if (!m) throw new Error(`not an nginx size: ${value}`);
  return Number(m[1]) * (m[2] ? 1024 ** ('kmg'.indexOf(m[2].toLowerCase()) + 1) : 1);
}

describe('deploy/nginx sites keep in step with the pipe', () => {
  for (const site of SITES) {
    it(`${site.file}: upstream socket, keep-alive, streaming, timeouts, headers, favicon, local only`, () => {
      const text = read(`deploy/nginx/${site.file}`);
      const upstream = /^upstream\s+\S+\s*\{([^}]*)\}/m.exec(withoutComments(text))?.[1] ?? '';
      expect(single(upstream, 'server')).toBe(`unix:${site.socket} fail_timeout=0`);
      expect(directives(text, 'listen')).toEqual(['127.0.0.1:80']);
      // Keep-alive to the gateway (HTTP/1.1, no "Connection: close"), idle connections
      // dropped by nginx before the gateway drops them.
      expect(Number(single(upstream, 'keepalive'))).toBeGreaterThan(0);
      expect(nginxSeconds(single(upstream, 'keepalive_timeout')) * 1000).toBeLessThan(GATEWAY_KEEPALIVE_MS);
      expect(directives(text, 'proxy_http_version')).toEqual(['1.1']);
      const headers = directives(text, 'proxy_set_header');
      expect(headers).toContain('Connection ""');
      // Host as the caller sent it ($http_host), or nginx's $host when an HTTP/1.0 caller sent none.
      expect(headers).toContain(`Host $restpipe_${site.role}_host`);
      expect(withoutComments(text)).toMatch(
        new RegExp(`map \\$http_host \\$restpipe_${site.role}_host \\{\\s*""\\s+\\$host;\\s*default\\s+\\$http_host;\\s*\\}`),
      );
      expect(headers).toContain('X-Forwarded-For $proxy_add_x_forwarded_for');
      expect(directives(text, 'proxy_redirect')).toEqual(['off']);
      // Bodies stream; nginx's body limit never undercuts RP_MAX_BODY_BYTES.
      expect(directives(text, 'proxy_request_buffering')).toEqual(['off']);
      expect(directives(text, 'proxy_buffering')).toEqual(['off']);
      const maxBody = nginxBytes(single(text, 'client_max_body_size'));
      expect(maxBody === 0 || maxBody >= DEFAULTS.maxBodyBytes, `client_max_body_size ${maxBody} must be 0 or >= ${DEFAULTS.maxBodyBytes}`).toBe(true);
      // The gateway answers a slow request (504, code 244) before nginx gives up on it.
      for (const timeout of ['proxy_read_timeout', 'proxy_send_timeout']) {
        expect(nginxSeconds(single(text, timeout)), timeout).toBeGreaterThan(DEFAULTS.maxRequestTimeoutMs / 1000);
      }
      expect(withoutComments(text)).toMatch(/location\s*=\s*\/favicon\.ico\s*\{[^}]*return\s+404;[^}]*\}/);
      expect(directives(text, 'allow')).toEqual(['127.0.0.1', '::1']);
      expect(directives(text, 'deny')).toEqual(['all']);
    });
  }

  it('the environment examples put the gateways on the sockets the sites proxy to', () => {
    for (const site of SITES) {
      expect(read(`deploy/env/${site.env}`)).toMatch(new RegExp(`^${site.variable}=${site.socket}$`, 'm'));
    }
  });
});

// ---------------------------------------------------------------------------
// Through a real nginx.

const haveNginx = existsSync(NGINX_BIN);
const onCi = Boolean(process.env.CI) && process.env.CI !== 'false';
if (!haveNginx && !onCi) {
  console.warn(`test/nginx.test.ts: SKIPPING the nginx tests: ${NGINX_BIN} not found (install Debian's nginx package: apt-get install nginx)`);
}

describe.runIf(!haveNginx && onCi)('nginx on CI', () => {
  it('is installed', () => {
    throw new Error(`${NGINX_BIN} not found, and CI is set: the nginx tests must run in CI (.ci/run installs Debian's nginx package)`);
  });
});

const CLIENT_NAME = 'branch-nginx';
/**
 * Bodies POSTed through nginx and the pipe and echoed back, compared by sha256.
 * They are generated and hashed as streams, never held whole; bodies above
 * RP_MAX_BODY_BYTES go to the streaming echo handler (post_stream_echo).
 */
const BODY_SIZES = [4 * MiB];

/** The handlers both nodes run (RP_EVENT_HANDLER_FQ_CLASS): the examples plus what the tests need. */
function handlerModule(dir: string): { server: string; client: string } {
  const methods = `
  static streamedBodies = ['put_hash'];
  async put_hash(_ctx, post) {
    const hash = (await import('node:crypto')).createHash('sha256');
    let bytes = 0;
    for await (const chunk of post.stream) { hash.update(chunk); bytes += chunk.length; }
    return { sha256: hash.digest('hex'), bytes };
  }
  get_zeros(_ctx, _post, size) {
    const total = Number(size);
    const piece = Buffer.alloc(256 * 1024);
    return ['application/octet-stream', 0, (async function* () {
      for (let left = total; left > 0; left -= piece.length) yield left >= piece.length ? piece : piece.subarray(0, left);
    })()];
  }
  get_forwarded(ctx) {
    const h = ctx.headers;
    return { xff: h['x-forwarded-for'] ?? null, host: h.host ?? null, realIp: h['x-real-ip'] ?? null, proto: h['x-forwarded-proto'] ?? null };
  }
  post_echo(_ctx, post) {
    return ['application/octet-stream', 0, post.body];
  }
  get_fail() {
    throw new RangeError('failed on purpose');
  }
  async get_slow(ctx) {
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, 10_000);
      ctx.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
    });
    return { slow: true };
  }`;
  const path = join(dir, 'handlers.mjs');
  writeFileSync(
    path,
    `// Written by test/nginx.test.ts.
import { ServerExampleHandler } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, 'server/dist/index.js')).href)};
import { ClientExampleHandler } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, 'client/dist/index.js')).href)};
export class NginxTestServerHandler extends ServerExampleHandler {${methods}
}
export class NginxTestClientHandler extends ClientExampleHandler {${methods}
}
`,
  );
  return { server: `${path}#NginxTestServerHandler`, client: `${path}#NginxTestClientHandler` };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** X-Event-Return-Code, or undefined when the answer has none (nginx answered itself). */
  code: string | undefined;
  json<T = Record<string, unknown>>(): T;
}

describe.skipIf(!haveNginx)(`through a real nginx${haveNginx ? '' : ` (skipped: no ${NGINX_BIN})`}`, () => {
  let serverSite: string; // http://127.0.0.1:<port> of restpipe-server.conf
  let clientSite: string; // http://127.0.0.1:<port> of restpipe-client.conf
  let serverSitePort: number;
  let clientSitePort: number;
  let server: Child;
  let client: Child;
  let agent: Agent;
  const logs = () => `--- restpipe-server\n${server?.output() ?? ''}\n--- restpipe-client\n${client?.output() ?? ''}`;

  async function call(method: string, url: string, opts: { headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
    const res = await request(url, { method: method as 'GET', headers: opts.headers, body: opts.body, dispatcher: agent });
    const text = await res.body.text();
    const code = res.headers['x-event-return-code'];
    return { status: res.statusCode, headers: res.headers, text, code: typeof code === 'string' ? code : undefined, json: () => JSON.parse(text) };
  }

  beforeAll(async () => {
    const dir = tempDir('restpipe-nginx-');
    [serverSitePort, clientSitePort] = await Promise.all([freePort(), freePort()]);
    const pipePort = await freePort();
    serverSite = `http://127.0.0.1:${serverSitePort}`;
    clientSite = `http://127.0.0.1:${clientSitePort}`;
    agent = new Agent({ connections: 8 });
    onClose(() => agent.close());

    const [ids, handlers] = await Promise.all([installIdentities(dir, CLIENT_NAME), handlerModule(dir)]);
    const run = join(dir, 'run/restpipe'); // stands for /run/restpipe (the units' RuntimeDirectory)
    mkdirSync(run, { recursive: true });
    const serverSocket = join(run, 'server-gateway.sock');
    const clientSocket = join(run, 'client-gateway.sock');

    // The repo's sites with the socket paths and the listen directive rewritten.
    await startNginx(
      join(dir, 'nginx'),
      {
        'restpipe-server.conf': renderSite('restpipe-server.conf', {
          [`unix:${SITES[0].socket}`]: `unix:${serverSocket}`,
          [LISTEN]: `listen 127.0.0.1:${serverSitePort};`,
        }),
        'restpipe-client.conf': renderSite('restpipe-client.conf', {
          [`unix:${SITES[1].socket}`]: `unix:${clientSocket}`,
          [LISTEN]: `listen 127.0.0.1:${clientSitePort};`,
        }),
      },
      serverSitePort,
    );

    // The nodes as production runs them: the start scripts, an environment file
    // each, a bare environment (the scripts find node on PATH).
    const common = { RP_LOG_LEVEL: 'info', RP_STATSD_HOST: '', RP_DRAIN_GRACE_S: '2' };
    const serverEnv = writeEnvFile(join(dir, 'etc/restpipe/server.env'), {
      ...common,
      RP_SERVER_BIND_INTERFACE: '127.0.0.1',
      RP_SERVER_BIND_PORT: String(pipePort),
      RP_SERVER_CERT_PATH: ids.serverCertPath,
      RP_SERVER_GATEWAY_SOCKET: serverSocket,
      RP_EVENT_HANDLER_FQ_CLASS: handlers.server,
    });
    const clientEnv = writeEnvFile(join(dir, 'etc/restpipe/client.env'), {
      ...common,
      RP_CLIENT_TARGET_HOSTNAME: 'localhost',
      RP_CLIENT_TARGET_PORT: String(pipePort),
      RP_CLIENT_CERT_PATH: ids.clientCertPath,
      RP_CLIENT_GATEWAY_SOCKET: clientSocket,
      RP_CLIENT_RECONNECT_INITIAL_S: '0.2',
      RP_CLIENT_RECONNECT_MAX_S: '1',
      RP_EVENT_HANDLER_FQ_CLASS: handlers.client,
    });
    server = spawnChild('restpipe-server', join(REPO_ROOT, 'scripts/start-server-prod.sh'), [serverEnv], { env: minimalEnv(), cwd: dir });
    await eventually(
      async () => existsSync(serverSocket),
      10_000,
      () => `the server's gateway socket did not appear\n${logs()}`,
    );
    client = spawnChild('restpipe-client', join(REPO_ROOT, 'scripts/start-client-prod.sh'), [clientEnv], { env: minimalEnv(), cwd: dir });

    // Up when both directions answer through nginx.
    await eventually(
      async () => (await call('GET', `${clientSite}/server/time`)).status === 200,
      15_000,
      () => `client → server did not answer through nginx\n${logs()}`,
    );
    await eventually(
      async () => (await call('GET', `${serverSite}/client/${CLIENT_NAME}/time`)).status === 200,
      15_000,
      () => `server → client did not answer through nginx\n${logs()}`,
    );
  }, 60_000);

  it('client → server: the example time and cat answer through nginx', async () => {
    const before = Date.now() / 1000;
    const time = await call('GET', `${clientSite}/server/time`);
    expect(time.status).toBe(200);
    expect(time.code).toBe('0');
    expect(time.headers['content-type']).toMatch(/^application\/json/);
    const t = time.json<{ time_from_server: number }>().time_from_server;
    expect(t).toBeGreaterThan(before - 5);
    expect(t).toBeLessThan(Date.now() / 1000 + 5);
    const cat = await call('GET', `${clientSite}/server/cat//hello%20/world`);
    expect([cat.status, cat.code]).toEqual([200, '0']);
    expect(cat.json()).toEqual({ result_from_server: 'hello world' });
  }, 15_000);

  it('server → client: the example time and cat answer through nginx', async () => {
    const time = await call('GET', `${serverSite}/client/${CLIENT_NAME}/time`);
    expect([time.status, time.code]).toEqual([200, '0']);
    expect(time.json()).toHaveProperty('time_from_client');
    const cat = await call('GET', `${serverSite}/client/${CLIENT_NAME}/cat//hello%20/world`);
    expect([cat.status, cat.code]).toEqual([200, '0']);
    expect(cat.json()).toEqual({ result_from_client: 'hello world' });
  }, 15_000);

  it('error answers pass through nginx with their status, X-Event-Return-Code and body', async () => {
    const unknown = await call('GET', `${serverSite}/client/nobody-by-that-name/time`);
    expect([unknown.status, unknown.code]).toEqual([404, '242']);
    expect(unknown.json()).toMatchObject({ error: { code: 'RP_UNKNOWN_CLIENT' } });

    const missing = await call('GET', `${clientSite}/server/no_such_handler`);
    expect([missing.status, missing.code]).toEqual([404, '255']);

    for (const url of [`${clientSite}/server/fail`, `${serverSite}/client/${CLIENT_NAME}/fail`]) {
      const threw = await call('GET', url);
      expect([threw.status, threw.code], url).toEqual([500, '251']);
      expect(threw.json()).toMatchObject({ exception: { message: 'failed on purpose', class: 'RangeError' } });
    }

    // Outside /server/: still the gateway's answer (location / proxies everything).
    const noRoute = await call('GET', `${clientSite}/elsewhere`);
    expect([noRoute.status, noRoute.code]).toEqual([404, '255']);
    expect(noRoute.json()).toMatchObject({ error: { code: 'RP_NO_ROUTE' } });
  }, 15_000);

  it('nginx answers /favicon.ico itself: 404 without X-Event-Return-Code', async () => {
    for (const site of [serverSite, clientSite]) {
      const res = await call('GET', `${site}/favicon.ico`);
      expect(res.status).toBe(404);
      expect(res.code).toBeUndefined();
      expect(res.headers.server).toBe('nginx'); // server_tokens off: no version
    }
  }, 15_000);

  it('X-Forwarded-For, Host, X-Real-IP and X-Forwarded-Proto reach the handler, both directions', async () => {
    const cases = [
      { url: `${clientSite}/server/forwarded`, port: clientSitePort },
      { url: `${serverSite}/client/${CLIENT_NAME}/forwarded`, port: serverSitePort },
    ];
    for (const { url, port } of cases) {
      const direct = await call('GET', url);
      expect([direct.status, direct.code]).toEqual([200, '0']);
      expect(direct.json()).toEqual({ xff: '127.0.0.1', host: `127.0.0.1:${port}`, realIp: '127.0.0.1', proto: 'http' });
      // A caller that is itself behind a proxy: nginx appends the address it saw.
      const proxied = await call('GET', url, { headers: { 'X-Forwarded-For': '203.0.113.9' } });
      expect(proxied.json()).toMatchObject({ xff: '203.0.113.9, 127.0.0.1' });
    }
  }, 15_000);

  it('an HTTP/1.0 request without a Host header still reaches the handler', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(clientSitePort, '127.0.0.1', () => socket.write('GET /server/forwarded HTTP/1.0\r\n\r\n')); // no half-close: nginx would take it as the caller leaving
      const chunks: Buffer[] = [];
      socket.on('data', (c) => chunks.push(c));
      socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      socket.on('error', reject);
      socket.setTimeout(10_000, () => socket.destroy(new Error('no answer within 10 s')));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer).toMatch(/^x-event-return-code: 0\r$/im);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ host: 'rpclient.local' });
  }, 15_000);

  it('the gateway, not nginx, ends a request at its deadline: 504 with code 244', async () => {
    const started = Date.now();
    const res = await call('GET', `${clientSite}/server/slow`, { headers: { 'X-RestPipe-Timeout-Ms': '300' } });
    expect([res.status, res.code]).toEqual([504, '244']);
    expect(res.json()).toMatchObject({ error: { code: 'RP_DEADLINE_EXCEEDED' } });
    expect(Date.now() - started).toBeLessThan(5_000);
  }, 15_000);

  /** POSTs `size` random bytes to `url` as a stream and hashes both ways as they pass. */
  async function echo(url: string, size: number, framing: 'content-length' | 'chunked') {
    const sent = createHash('sha256');
    const received = createHash('sha256');
    const res = await request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', ...(framing === 'content-length' ? { 'content-length': String(size) } : {}) },
      body: Readable.from(randomStream(size, sent)),
      dispatcher: agent,
    });
    let bytes = 0;
    for await (const chunk of res.body) {
      received.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
    return { status: res.statusCode, code: res.headers['x-event-return-code'], bytes, sent: sent.digest('hex'), received: received.digest('hex') };
  }

  for (const size of BODY_SIZES) {
    for (const framing of ['content-length', 'chunked'] as const) {
      it(`a ${size / MiB} MiB POST body (${framing}) round-trips through nginx and the pipe, both directions, same sha256`, async () => {
        for (const url of [`${clientSite}/server/echo`, `${serverSite}/client/${CLIENT_NAME}/echo`]) {
          const res = await echo(url, size, framing);
          expect({ status: res.status, code: res.code, bytes: res.bytes }, `${url}\n${logs()}`).toEqual({ status: 200, code: '0', bytes: size });
          expect(res.received).toBe(res.sent);
        }
      }, 30_000);
    }
  }

  it('64 MiB streams through nginx and the pipe each way: an upload to a streaming handler, a download from one', async () => {
    const size = 64 * MiB;
    for (const base of [`${clientSite}/server`, `${serverSite}/client/${CLIENT_NAME}`]) {
      const sent = createHash('sha256');
      const up = await request(`${base}/hash`, { method: 'PUT', body: Readable.from(randomStream(size, sent)), dispatcher: agent });
      expect(up.statusCode, `${base}\n${logs()}`).toBe(200);
      expect(await up.body.json()).toEqual({ sha256: sent.digest('hex'), bytes: size });
      const down = await request(`${base}/zeros//${size}`, { dispatcher: agent });
      expect(down.statusCode).toBe(200);
      let bytes = 0;
      let nonZero = 0;
      for await (const chunk of down.body) {
        bytes += (chunk as Buffer).length;
        for (const b of chunk as Buffer) nonZero |= b;
      }
      expect({ bytes, nonZero }).toEqual({ bytes: size, nonZero: 0 });
    }
  }, 60_000);

  it("a body over RP_MAX_BODY_BYTES gets the gateway's 413 with code 241, not nginx's", async () => {
    const res = await echo(`${clientSite}/server/echo`, DEFAULTS.maxBodyBytes + 1, 'content-length');
    expect([res.status, res.code]).toEqual([413, '241']);
  }, 30_000);

  // Last: it stops the nodes.
  it('SIGTERM stops each node with exit code 0 (the script execs node); then nginx answers 502 without X-Event-Return-Code', async () => {
    expect(await client.stop('SIGTERM', 10_000), logs()).toEqual({ code: 0, signal: null });
    expect(await server.stop('SIGTERM', 10_000), logs()).toEqual({ code: 0, signal: null });
    for (const url of [`${clientSite}/server/time`, `${serverSite}/client/${CLIENT_NAME}/time`]) {
      const res = await call('GET', url);
      expect(res.status, url).toBe(502);
      expect(res.code).toBeUndefined();
    }
  }, 30_000);
});

function randomStream(size: number, hash: Hash): AsyncIterable<Buffer> {
  return (async function* () {
    for (let left = size; left > 0; ) {
      const chunk = randomBytes(Math.min(left, 64 * 1024));
      hash.update(chunk);
      left -= chunk.length;
      yield chunk;
    }
  })();
}

// ---------------------------------------------------------------------------
// Start scripts, environment files, systemd units: no nginx needed.

const SCRIPTS = ['start-server-dev.sh', 'start-client-dev.sh', 'start-server-prod.sh', 'start-client-prod.sh'];
const script = (name: string) => join(REPO_ROOT, 'scripts', name);

/** A stand-in for node (RP_NODE) that prints the environment it was started with. */
function envPrinter(dir: string): string {
  const path = join(dir, 'print-env');
  writeFileSync(path, '#!/bin/sh\nexec env\n');
  chmodSync(path, 0o755);
  return path;
}
function parseEnv(stdout: string): Record<string, string> {
  return Object.fromEntries(
    stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

describe('start scripts', () => {
  it.each(SCRIPTS)('%s is valid bash, executable, with set -euo pipefail', (name) => {
    const check = spawnSync('bash', ['-n', script(name)], { encoding: 'utf8' });
    expect(check.status, check.stderr).toBe(0);
    expect(read(`scripts/${name}`)).toMatch(/^#!\/usr\/bin\/env bash\n/);
    expect(read(`scripts/${name}`)).toMatch(/^set -euo pipefail$/m);
    const mode = spawnSync('test', ['-x', script(name)]);
    expect(mode.status, `${name} must be executable`).toBe(0);
  });

  it.each([
    ['start-server-prod.sh', '/etc/restpipe/server.env', 'server.env.example'],
    ['start-client-prod.sh', '/etc/restpipe/client.env', 'client.env.example'],
  ])('%s fails with exit code 2 and a clear message when its environment file is missing', (name, defaultFile, example) => {
    const dir = tempDir('restpipe-scripts-');
    const missing = join(dir, 'nowhere.env');
    const res = spawnSync(script(name), [missing], { env: minimalEnv(), encoding: 'utf8', timeout: 10_000 });
    expect(res.status).toBe(2);
    expect(res.stderr).toContain(`${name}: environment file ${missing} not found`);
    expect(res.stderr).toContain(`deploy/env/${example}`);
    if (!existsSync(defaultFile)) {
      const byDefault = spawnSync(script(name), [], { env: minimalEnv(), encoding: 'utf8', timeout: 10_000 });
      expect(byDefault.status).toBe(2);
      expect(byDefault.stderr).toContain(`environment file ${defaultFile} not found`);
    }
  });

  it('a prod script reads NAME=value lines like systemd; the environment wins over the file', () => {
    const dir = tempDir('restpipe-scripts-');
    const file = join(dir, 'server.env');
    writeFileSync(
      file,
      [
        '# a comment',
        '',
        'RP_A=plain',
        'RP_B="two words"',
        "RP_C='single'",
        '  RP_D=indented   ',
        'RP_E=',
        'RP_F=from the file',
        'RP_G=crlf\r',
        'RP_H=a=b#c',
        'RP_A=later wins',
      ].join('\n'),
    );
    const res = spawnSync(script('start-server-prod.sh'), [file], {
      env: minimalEnv({ RP_NODE: envPrinter(dir), RP_F: 'from the environment' }),
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(res.status, res.stderr).toBe(0);
    expect(parseEnv(res.stdout)).toMatchObject({
      RP_A: 'later wins',
      RP_B: 'two words',
      RP_C: 'single',
      RP_D: 'indented',
      RP_E: '',
      RP_F: 'from the environment',
      RP_G: 'crlf',
      RP_H: 'a=b#c',
    });
  });

  it('a prod script refuses a malformed environment file, naming the line', () => {
    const dir = tempDir('restpipe-scripts-');
    const file = join(dir, 'client.env');
    writeFileSync(file, 'RP_LOG_LEVEL=info\nexport RP_X=1\n');
    const res = spawnSync(script('start-client-prod.sh'), [file], { env: minimalEnv(), encoding: 'utf8', timeout: 10_000 });
    expect(res.status).toBe(2);
    expect(res.stderr).toContain(`${file}:2: expected NAME=value`);
  });

  it('a bad setting in the environment file reaches restpipe-server, which exits 2 naming it', () => {
    const dir = tempDir('restpipe-scripts-');
    const file = writeEnvFile(join(dir, 'server.env'), { RP_SERVER_BIND_PORT: 'not-a-port', RP_STATSD_HOST: '' });
    const res = spawnSync(script('start-server-prod.sh'), [file], { env: minimalEnv(), encoding: 'utf8', timeout: 15_000 });
    expect(res.status, res.stderr).toBe(2);
    expect(res.stderr).toContain('RP_SERVER_BIND_PORT');
  });

  it.each(SITES.map((s) => s.env))('deploy/env/%s is read by its prod script as written, and names only documented variables', (example) => {
    const dir = tempDir('restpipe-scripts-');
    const text = read(`deploy/env/${example}`);
    const set = Object.fromEntries([...text.matchAll(/^([A-Z_]+)=(.*)$/gm)].map((m) => [m[1], m[2]]));
    const res = spawnSync(script(example.startsWith('server') ? 'start-server-prod.sh' : 'start-client-prod.sh'), [join(REPO_ROOT, 'deploy/env', example)], {
      env: minimalEnv({ RP_NODE: envPrinter(dir) }),
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(res.status, res.stderr).toBe(0);
    const seen = parseEnv(res.stdout);
    for (const [name, value] of Object.entries(set)) expect(seen[name], name).toBe(value);
    const readme = read('README.md');
    for (const [, name] of text.matchAll(/^#?((?:RP_[A-Z_]+|DEBUG))=/gm)) {
      expect(readme, `${name} is not in the README's options table`).toContain(`| \`${name}\` |`);
    }
  });
});

describe('deploy/systemd units', () => {
  for (const site of SITES) {
    it(`${site.unit} runs the installed executable with its environment file, restarts, and outlasts the drain`, () => {
      const unit = read(`deploy/systemd/${site.unit}`);
      const value = (key: string) => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]);
      const role = site.unit.includes('server') ? 'server' : 'client';
      expect(value('EnvironmentFile')).toEqual([`/etc/restpipe/${role}.env`]);
      expect(value('ExecStart')).toEqual([`/opt/restpipe/node_modules/.bin/restpipe-${role}`]);
      expect(value('User')).toEqual(['restpipe']);
      expect(value('Restart')).toEqual(['always']);
      expect(value('KillSignal')).toEqual(['SIGTERM']);
      expect(Number(value('TimeoutStopSec')[0])).toBeGreaterThan(DEFAULTS.drainGraceMs / 1000 + 5);
      // The sockets of deploy/nginx and deploy/env live in the RuntimeDirectory.
      expect(value('RuntimeDirectory')).toEqual(['restpipe']);
      expect(site.socket.startsWith('/run/restpipe/')).toBe(true);
      expect(value('CapabilityBoundingSet')).toEqual(['']);
      expect(value('RestrictAddressFamilies')).toEqual(['AF_INET AF_INET6 AF_UNIX']);
      expect(value('MemoryDenyWriteExecute')).toEqual([]); // V8's JIT needs it off
    });
  }

  const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
  it.skipIf(!analyze)('systemd-analyze verify accepts both units without a warning (paths pointed at this checkout)', () => {
    const dir = tempDir('restpipe-units-');
    const units = SITES.map((site) => {
      const path = join(dir, site.unit);
      writeFileSync(path, read(`deploy/systemd/${site.unit}`).replaceAll('/opt/restpipe', REPO_ROOT));
      return path;
    });
    const res = spawnSync(analyze as string, ['verify', ...units], { encoding: 'utf8', timeout: 20_000 });
    expect(res.status, res.stderr).toBe(0);
    expect(`${res.stdout}${res.stderr}`.trim()).toBe('');
  });
});
