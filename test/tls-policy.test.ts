/**
 * What a TLS scanner sees on the pipe port, checked with real
 * `openssl s_client`: TLS 1.3 only by default (TLS 1.2, 1.1 and CBC
 * suites refused); with RP_TLS_MIN_VERSION=TLSv1.2, TLS 1.2 with ECDHE and
 * AEAD suites only. Each refusal has a control: the same openssl command
 * completes against a server that allows it, so the refusal is the
 * server's. The client keeps the same policy.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import tls from 'node:tls';
import type { ClientStatusEvent } from '@restpipe/client';
import { afterEach, describe, expect, it } from 'vitest';
import { openssl } from './helpers/crl.js';
import { testPki } from './helpers/identities.js';
import { tempDir } from './helpers/node-process.js';
import { closeAll, onClose, startClient, waitFor } from './helpers/pipe.js';
import { startLoggedServer } from './helpers/raw-peer.js';

afterEach(closeAll);

interface Handshake {
  ok: boolean;
  protocol: string | undefined;
  cipher: string | undefined;
  stdout: string;
  stderr: string;
}

/** Files for s_client: the test CA and a client identity. */
async function clientFiles(): Promise<{ ca: string; cert: string; key: string }> {
  const pki = await testPki();
  const id = await pki.client('scanner');
  const dir = await tempDir('restpipe-sclient-');
  const files = { ca: join(dir, 'ca.crt'), cert: join(dir, 'client.crt'), key: join(dir, 'client.key') };
  await writeFile(files.ca, pki.ca.certPem);
  await writeFile(files.cert, id.cert);
  await writeFile(files.key, id.key);
  return files;
}

/** One `openssl s_client` handshake with `args` (stdin closed at once). */
function sClient(port: number, args: string[], files?: { ca: string; cert: string; key: string }): Promise<Handshake> {
  const auth = files ? ['-cert', files.cert, '-key', files.key, '-CAfile', files.ca, '-verify_return_error'] : [];
  return new Promise((resolve) => {
    const child = execFile(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', ...auth, ...args],
      { timeout: 10_000 },
      (err, stdout, stderr) => {
        // TLS 1.3 sessions print no "Protocol :" line before stdin closes; their suites are TLS 1.3 only.
        const summary = /New, (\S+), Cipher is (\S+)/.exec(stdout);
        const protocol = /Protocol\s*:\s*(\S+)/.exec(stdout)?.[1] ?? (summary?.[1] === 'TLSv1.3' ? 'TLSv1.3' : undefined);
        const cipher = summary?.[2];
        // s_client prints "Cipher is (NONE)" when no handshake completed. Its exit code says nothing
        // more: it is 1 too when the pipe server closes a connection without a client certificate.
        void err;
        resolve({ ok: cipher !== undefined && cipher !== '(NONE)', protocol, cipher, stdout, stderr });
      },
    );
    child.stdin?.end();
  });
}

/** A plain node:tls server allowing what the pipe must refuse: the control for a refusal. */
async function permissiveServer(opts: tls.TlsOptions): Promise<number> {
  const pki = await testPki();
  // Read what comes (a client's Hello) so that the peer's close is seen, then end.
  const server = tls.createServer({ key: pki.server.key, cert: pki.server.cert, ...opts }, (s) => s.resume().end());
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onClose(() => new Promise((r) => server.close(r)));
  return (server.address() as { port: number }).port;
}

const TLS11 = ['-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'];
const TLS12_CBC = ['-tls1_2', '-cipher', 'AES128-SHA'];
const TLS12_ECDHE_CBC = ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-SHA'];
const TLS12_GCM = ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'];

describe('the pipe port by default', () => {
  it('refuses TLS 1.1 and TLS 1.2 (CBC or not), accepts TLS 1.3', async () => {
    const files = await clientFiles();
    // Controls: openssl can speak each of these to a server that allows them.
    const legacy = await permissiveServer({ minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' });
    for (const args of [TLS11, TLS12_CBC, TLS12_ECDHE_CBC, TLS12_GCM]) {
      const control = await sClient(legacy, args);
      expect(control.ok, `control ${args.join(' ')}: ${control.stderr}`).toBe(true);
    }
    const { server, log, stats } = await startLoggedServer();
    const port = server.pipeAddress.port;
    for (const args of [TLS11, TLS12_CBC, TLS12_ECDHE_CBC, TLS12_GCM]) {
      const refused = await sClient(port, args, files);
      expect(refused.ok, args.join(' ')).toBe(false);
      expect(refused.stderr, args.join(' ')).toMatch(/alert protocol version|unsupported protocol/);
    }
    await waitFor(() => stats.count('connections.refused') === 4, 2000, 'four refusals');
    expect(log.warnings().map((l) => l.msg)).toEqual(Array(4).fill('refused a connection: TLS handshake failed'));
    const ok = await sClient(port, ['-tls1_3'], files);
    expect(ok.stderr).not.toMatch(/error/i);
    expect([ok.ok, ok.protocol]).toEqual([true, 'TLSv1.3']);
    expect(ok.stdout).toMatch(/Verify return code: 0 \(ok\)/);
  });
});

describe('RP_TLS_MIN_VERSION=TLSv1.2', () => {
  it('accepts TLS 1.2 with ECDHE-RSA-AES128-GCM-SHA256 and refuses AES128-SHA and ECDHE-RSA-AES128-SHA', async () => {
    const files = await clientFiles();
    const { server } = await startLoggedServer({ env: { RP_TLS_MIN_VERSION: 'TLSv1.2' } });
    const port = server.pipeAddress.port;
    const gcm = await sClient(port, TLS12_GCM, files);
    expect([gcm.ok, gcm.protocol, gcm.cipher]).toEqual([true, 'TLSv1.2', 'ECDHE-RSA-AES128-GCM-SHA256']);
    for (const args of [TLS12_CBC, TLS12_ECDHE_CBC]) {
      const refused = await sClient(port, args, files);
      expect(refused.ok, args.join(' ')).toBe(false);
      expect(refused.stderr).toMatch(/handshake failure|no shared cipher/);
    }
    expect((await sClient(port, TLS11, files)).ok).toBe(false);
    expect((await sClient(port, ['-tls1_3'], files)).protocol).toBe('TLSv1.3');
  });

  it('offers, of every TLS 1.2 suite openssl knows, only ECDHE with AES-GCM or ChaCha20-Poly1305 (as a scanner would find)', async () => {
    const { server } = await startLoggedServer({ env: { RP_TLS_MIN_VERSION: 'TLSv1.2' } });
    const port = server.pipeAddress.port;
    const all = (await openssl(['ciphers', '-tls1_2', 'ALL:COMPLEMENTOFALL:@SECLEVEL=0'])).trim().split(':');
    const tls12 = all.filter((c) => !c.startsWith('TLS_'));
    expect(tls12.length).toBeGreaterThan(40);
    const accepted: string[] = [];
    for (let i = 0; i < tls12.length; i += 8) {
      const batch = tls12.slice(i, i + 8);
      const results = await Promise.all(batch.map((c) => sClient(port, ['-tls1_2', '-cipher', `${c}:@SECLEVEL=0`])));
      for (const [j, r] of results.entries()) if (r.ok) accepted.push(batch[j] as string);
    }
    // The server's key is RSA, so of the allowed suites only the ECDHE-RSA ones can be negotiated.
    expect(accepted.sort()).toEqual(['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305']);
  });
});

describe('the client', () => {
  async function failureAgainst(opts: tls.TlsOptions, env: Record<string, string> = {}): Promise<Error> {
    const port = await permissiveServer(opts);
    const client = await startClient({ port }, { name: 'policy', waitConnected: false, env });
    const failed = await new Promise<ClientStatusEvent & { type: 'connect_failed' }>((resolve) =>
      client.on('status', (e) => e.type === 'connect_failed' && resolve(e)),
    );
    return failed.error;
  }

  it('refuses a TLS 1.2 server by default, and a CBC-only one with RP_TLS_MIN_VERSION=TLSv1.2', async () => {
    expect((await failureAgainst({ maxVersion: 'TLSv1.2' })).message).toMatch(/protocol version|unsupported protocol/i);
    expect((await failureAgainst({ maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA:ECDHE-RSA-AES128-SHA' }, { RP_TLS_MIN_VERSION: 'TLSv1.2' })).message).toMatch(
      /handshake failure/i,
    );
    // Control: with TLSv1.2 allowed and an AEAD suite, the handshake completes (the plain server then closes: no Hello).
    const error = await failureAgainst({ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' }, { RP_TLS_MIN_VERSION: 'TLSv1.2' });
    expect(error.message).not.toMatch(/handshake failure|protocol version/i);
  });
});
