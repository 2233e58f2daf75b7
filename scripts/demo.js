#!/usr/bin/env node
// The quick start: throwaway dev identities made with restpipe-certs, a
// server and a client on localhost, and curl lines that work.
//
//   npm run demo            runs both nodes until Ctrl-C
//   npm run demo -- --check prints and runs the curl lines, then stops (exit 1 on failure)
//
// Ports: RP_SERVER_BIND_PORT (1234), RP_SERVER_GATEWAY_PORT (8002),
// RP_CLIENT_GATEWAY_PORT (8001); identities go to .demo/ in the repo. The nodes
// log readable lines (RP_LOG_FORMAT=pretty; json for pino's JSON lines).
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
const work = process.env.RP_DEMO_DIR ?? join(root, '.demo');
const pipePort = process.env.RP_SERVER_BIND_PORT ?? '1234';
const serverGatewayPort = process.env.RP_SERVER_GATEWAY_PORT ?? '8002';
const clientGatewayPort = process.env.RP_CLIENT_GATEWAY_PORT ?? '8001';
const clientName = 'demo-client';

const certs = (...args) => execFileSync(process.execPath, [join(root, 'certs-tool/dist/cli.js'), ...args], { stdio: ['ignore', 'ignore', 'inherit'] });

console.log(`• making dev identities in ${work} with restpipe-certs`);
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const ids = join(work, 'identities');
certs('create-ca', '--out', ids, '--name', 'RestPipe Demo CA');
certs('create-server', '--out', ids, '--name', 'localhost', '--dns', 'localhost', '--ip', '127.0.0.1');
certs('create-client', '--out', ids, '--name', clientName);
certs(
  'set-identity',
  'server',
  '--dir',
  join(work, 'server'),
  '--key',
  join(ids, 'server.key.pem'),
  '--cert',
  join(ids, 'server.crt.pem'),
  '--ca',
  join(ids, 'ca.crt.pem'),
);
certs(
  'set-identity',
  'client',
  '--dir',
  join(work, 'client'),
  '--key',
  join(ids, `${clientName}.key.pem`),
  '--cert',
  join(ids, `${clientName}.crt.pem`),
  '--ca',
  join(ids, 'ca.crt.pem'),
);

// Readable log lines (RP_LOG_FORMAT=pretty) unless the caller asks for JSON.
const common = {
  ...process.env,
  RP_STATSD_HOST: process.env.RP_STATSD_HOST ?? '',
  RP_LOG_LEVEL: process.env.RP_LOG_LEVEL ?? (check ? 'warn' : 'info'),
  RP_LOG_FORMAT: process.env.RP_LOG_FORMAT ?? 'pretty',
};
const client = `http://127.0.0.1:${clientGatewayPort}`;
const server = `http://127.0.0.1:${serverGatewayPort}`;
const nodes = [];
let stopping = false;

function start(name, script, env) {
  const child = spawn(process.execPath, [join(root, script)], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`• the ${name} exited (${signal ?? code}); stopping the demo`);
      stop(1);
    }
  });
  nodes.push(child);
  return child;
}

const exited = (child) => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', r)));

/** Stops the client first, then the server: the client never sees its server go away. */
async function stop(code) {
  if (stopping) return;
  stopping = true;
  for (const child of [...nodes].reverse()) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited(child);
  }
  process.exit(code);
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

/** Polls `url` until `ok(response)`, for up to 20 s; stops the demo if it never is. */
async function waitUntil(url, ok, what) {
  const until = Date.now() + 20_000;
  for (;;) {
    const good = await fetch(url).then(ok, () => false);
    if (good) return;
    if (stopping) await new Promise(() => {});
    if (Date.now() > until) {
      console.error(`• ${what} within 20 s`);
      await stop(1);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The server first, and the client once the server answers: the client's
// first attempt then finds the pipe listening (no expected failure in the logs).
console.log(`• starting the server: pipe on 127.0.0.1:${pipePort}, gateway on ${server}`);
start('server', 'server/dist/cli.js', {
  ...common,
  RP_SERVER_CERT_PATH: join(work, 'server'),
  RP_SERVER_BIND_INTERFACE: '127.0.0.1',
  RP_SERVER_BIND_PORT: pipePort,
  RP_SERVER_GATEWAY_HOST: '127.0.0.1',
  RP_SERVER_GATEWAY_PORT: serverGatewayPort,
});
await waitUntil(`${server}/_restpipe/status`, (r) => r.ok, 'the server did not answer');

console.log(`• starting the client ${clientName}: dialing localhost:${pipePort}, gateway on ${client}`);
start('client', 'client/dist/cli.js', {
  ...common,
  RP_CLIENT_CERT_PATH: join(work, 'client'),
  RP_CLIENT_TARGET_HOSTNAME: 'localhost',
  RP_CLIENT_TARGET_PORT: pipePort,
  RP_CLIENT_GATEWAY_HOST: '127.0.0.1',
  RP_CLIENT_GATEWAY_PORT: clientGatewayPort,
});

const lines = [
  [`${client}/server/time`, /"time_from_server":\d/],
  [`${client}/server/cat//hello%20/world`, /^\{"result_from_server":"hello world"\}$/],
  [`${server}/client/${clientName}/time`, /"time_from_client":\d/],
  [`${server}/client/${clientName}/cat//hello%20/world`, /^\{"result_from_client":"hello world"\}$/],
];

// Wait until the pipe is up: the client's status answers 200 once it is.
await waitUntil(`${client}/_restpipe/status`, (r) => r.ok, 'the pipe did not come up');

console.log('\n• the pipe is up. Try these (answers shown):\n');
let failed = 0;
for (const [url, expected] of lines) {
  const res = await fetch(url);
  const body = await res.text();
  const good = res.ok && expected.test(body);
  if (!good) failed++;
  console.log(`  curl ${url}\n    → ${res.status} X-Event-Return-Code: ${res.headers.get('x-event-return-code')} ${body}${good ? '' : '   ✗ unexpected'}\n`);
}
if (check) {
  stop(failed === 0 ? 0 : 1);
} else {
  console.log('• the server and the client keep running; Ctrl-C stops both.');
}
