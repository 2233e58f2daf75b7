// The baselines besides "direct": an nginx hop (Debian's nginx) and a
// stunnel4 mutual-TLS tunnel (client stunnel → server stunnel → origin), both
// configured here and run in the foreground as children of the bench.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startChild, which, tryExec, waitForPort } from './util.js';

export function nginxBinary() {
  return which('nginx');
}

export function stunnelBinary() {
  return which('stunnel4') ?? which('stunnel');
}

export function nginxVersion() {
  const bin = nginxBinary();
  return bin
    ? tryExec(bin, ['-v'])
        ?.trim()
        .replace(/^nginx version: /, '')
    : undefined;
}

export function stunnelVersion() {
  const bin = stunnelBinary();
  if (!bin) return undefined;
  const out = tryExec(bin, ['-version']) ?? '';
  const v = /stunnel (\S+)/.exec(out)?.[1];
  const ssl = /Compiled with (OpenSSL [^\s]+)/.exec(out)?.[1];
  return v ? `${v}${ssl ? ` (${ssl})` : ''}` : out.trim().split('\n')[0];
}

/**
 * nginx proxying to the origin with upstream keepalive, one worker (like the
 * single-threaded node processes it is compared with), no access log.
 */
export async function startNginx(work, { listenPort, originPort }) {
  const bin = nginxBinary();
  const prefix = join(work, 'nginx');
  mkdirSync(join(prefix, 'logs'), { recursive: true });
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
master_process on;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  keepalive_requests 1000000;
  upstream origin {
    server 127.0.0.1:${originPort};
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${listenPort};
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_buffering off;
      client_max_body_size 0;
    }
  }
}
`,
  );
  const child = startChild('nginx', bin, ['-p', prefix, '-c', conf, '-e', `${prefix}/logs/error.log`]);
  await waitForPort(listenPort, '127.0.0.1', 10_000, 'nginx');
  return child;
}

/**
 * stunnel4 server (mutual TLS: client certificate required and verified
 * against our CA) in front of the origin, and a stunnel4 client (verifies
 * the server's chain and name) that the load generator talks plain HTTP to.
 */
export async function startStunnel(work, ids, { clientPort, serverPort, originPort, tag = 'stunnel' }) {
  const bin = stunnelBinary();
  const dir = join(work, tag);
  mkdirSync(dir, { recursive: true });
  const f = (name, text) => {
    const p = join(dir, name);
    writeFileSync(p, text, { mode: 0o600 });
    return p;
  };
  const ca = f('ca.crt.pem', ids.ca.certPem);
  const common = `foreground = yes
pid =
debug = 3
syslog = no
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
sslVersionMin = TLSv1.2
`;
  const serverConf = f(
    'server.conf',
    `${common}
[restpipe-bench-server]
accept = 127.0.0.1:${serverPort}
connect = 127.0.0.1:${originPort}
cert = ${f('server.crt.pem', ids.server.certPem)}
key = ${f('server.key.pem', ids.server.keyPem)}
CAfile = ${ca}
verifyChain = yes
requireCert = yes
`,
  );
  const clientConf = f(
    'client.conf',
    `${common}
[restpipe-bench-client]
client = yes
accept = 127.0.0.1:${clientPort}
connect = 127.0.0.1:${serverPort}
cert = ${f('client.crt.pem', ids.client.certPem)}
key = ${f('client.key.pem', ids.client.keyPem)}
CAfile = ${ca}
verifyChain = yes
checkHost = localhost
`,
  );
  const server = startChild(`${tag}-server`, bin, [serverConf]);
  const client = startChild(`${tag}-client`, bin, [clientConf]);
  await waitForPort(serverPort, '127.0.0.1', 10_000, 'stunnel server');
  await waitForPort(clientPort, '127.0.0.1', 10_000, 'stunnel client');
  return { server, client };
}
