#!/usr/bin/env node
// Experiment behind proposals in docs/benchmarks.md: server CPU per mutual-TLS
// handshake in Node (the server in its own process, 2,000 handshakes, 20 at a
// time): RSA-2048 identities from certs-tool vs P-256 identities (made with
// the openssl CLI: certs-tool makes RSA only), full handshakes vs TLS 1.3
// session resumption with tickets. Not part of `npm run bench`.
//   node bench/experiments/handshakes.js
import { execFileSync, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { procCpu, which } from '../lib/util.js';

const N = 2000;
const self = fileURLToPath(import.meta.url);

if (process.argv[2] === 'server') {
  const f = JSON.parse(readFileSync(process.argv[3], 'utf8'));
  // Fixed ticket keys and a session id context, as a server that wants
  // tickets to survive its restarts would configure them.
  const srv = tls.createServer(
    { key: f.skey, cert: f.scert, ca: f.ca, requestCert: true, rejectUnauthorized: true, ticketKeys: Buffer.alloc(48, 7), sessionIdContext: 'restpipe' },
    (s) => {
      s.getPeerCertificate();
      s.on('data', () => {});
      s.on('error', () => {});
      s.on('end', () => s.end());
    },
  );
  srv.listen(0, '127.0.0.1', () => process.send(srv.address().port));
} else {
  const work = mkdtempSync(join(os.tmpdir(), 'restpipe-hs-'));
  try {
    const { createBenchIdentities } = await import('../lib/identities.js');
    const ids = await createBenchIdentities(join(work, 'ids'));
    const kinds = {
      'RSA-2048 (certs-tool)': { skey: ids.server.keyPem, scert: ids.server.certPem, ca: ids.ca.certPem, ckey: ids.client.keyPem, ccert: ids.client.certPem },
    };
    if (which('openssl')) kinds['P-256 (openssl)'] = ecIdentities(work);
    else console.log('openssl is not installed: P-256 skipped');
    for (const [kind, f] of Object.entries(kinds)) {
      const file = join(work, 'ids.json');
      writeFileSync(file, JSON.stringify(f));
      for (const resume of [false, true]) {
        const child = fork(self, ['server', file]);
        const port = await new Promise((res) => child.once('message', res));
        const ctx = tls.createSecureContext({ key: f.ckey, cert: f.ccert, ca: f.ca });
        let session;
        const one = () =>
          new Promise((res, rej) => {
            const s = tls.connect({ host: '127.0.0.1', port, secureContext: ctx, servername: 'localhost', session: resume ? session : undefined });
            let reused = false;
            s.on('session', (x) => {
              session = x;
              s.end();
            });
            s.on('secureConnect', () => {
              reused = s.isSessionReused();
              if (!resume) s.end();
              else setTimeout(() => s.end(), 50);
            });
            s.on('data', () => {});
            s.on('error', rej);
            s.on('close', () => res(reused));
          });
        await one();
        await one();
        let reused = 0;
        const c0 = procCpu(child.pid);
        const t0 = performance.now();
        for (let i = 0; i < N; i += 20) for (const r of await Promise.all(Array.from({ length: 20 }, one))) reused += r ? 1 : 0;
        const cpu = procCpu(child.pid) - c0;
        console.log(
          `${kind.padEnd(22)} ${resume ? 'resumed' : 'full   '}: server CPU ${((cpu / N) * 1000).toFixed(2)} ms per handshake, ${(N / ((performance.now() - t0) / 1000)).toFixed(0)} handshakes/s, ${reused}/${N} resumed`,
        );
        child.kill();
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function ecIdentities(dir) {
  const o = (...a) => execFileSync('openssl', a, { cwd: dir, stdio: ['ignore', 'pipe', 'ignore'] });
  o('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ec-ca.key');
  o(
    'req',
    '-x509',
    '-new',
    '-key',
    'ec-ca.key',
    '-subj',
    '/CN=EC CA',
    '-days',
    '2',
    '-out',
    'ec-ca.crt',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
  );
  for (const [name, cn, ext] of [
    ['ec-s', 'localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'],
    ['ec-c', 'agent-ec', 'extendedKeyUsage=clientAuth\n'],
  ]) {
    o('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`);
    o('req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`);
    writeFileSync(join(dir, `${name}.ext`), ext);
    o(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ec-ca.crt',
      '-CAkey',
      'ec-ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.crt`,
    );
  }
  const r = (f) => readFileSync(join(dir, f), 'utf8');
  return { skey: r('ec-s.key'), scert: r('ec-s.crt'), ca: r('ec-ca.crt'), ckey: r('ec-c.key'), ccert: r('ec-c.crt') };
}
