/**
 * Failed answers become PipeFailError with the remote exception or
 * RestPipe's error; raiseForException on raw undici responses; the caller's
 * codes match the gateway's (generated from its table, and up to date) and
 * are all documented in docs/caller.md.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as callerPackage from '@restpipe/caller';
import { CALLER_ERROR_CODES, CallerError, EventCode, NO_EVENT_CODE, PipeFailError, raiseForException } from '@restpipe/caller';
import { EVENT_CODES, EventCode as sharedEventCode, httpStatusForEventCode } from '@restpipe/shared';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, onClose, startClient, startPair, startServer } from '../../test/helpers/pipe.js';
import { TestServerHandler, callerFor } from './fixtures.js';

afterEach(closeAll);

const DOCS = new URL('../../docs/caller.md', import.meta.url);

/** Resolves with the rejection of `promise`, failing when it resolves. */
async function failure(promise: Promise<unknown>): Promise<PipeFailError> {
  const err = await promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PipeFailError);
  return err as PipeFailError;
}

describe('PipeFailError from a call', () => {
  it('251 / 500 with the remote class, message and traceback when the handler throws', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const err = await failure(callerFor(client.gatewayAddress).server.get('fail'));
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('PipeFailError');
    expect(err).toMatchObject({
      code: 251,
      status: 500,
      remoteClass: 'TypeError',
      message: 'the disk is on fire',
      verb: 'GET',
      noun: 'fail',
      target: 'server',
      errorCode: undefined,
    });
    expect(err.traceback).toContain('get_fail');
    expect(err.data).toMatchObject({ exception: { class: 'TypeError' } });
  });

  it('255 / 404 for a missing handler', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const err = await failure(callerFor(client.gatewayAddress).server.patch('nope', { a: 1 }));
    expect(err).toMatchObject({ code: EventCode.NO_HANDLER, status: 404, verb: 'PATCH', noun: 'nope' });
    expect(err.message).toContain('patch_nope');
  });

  it('242 / 404 with RP_UNKNOWN_CLIENT for a client that is not connected', async () => {
    const { server } = await startPair();
    const err = await failure(callerFor(server.gatewayAddress).client('nobody').get('time'));
    expect(err).toMatchObject({
      code: 242,
      status: 404,
      errorCode: 'RP_UNKNOWN_CLIENT',
      target: 'client/nobody',
      message: 'no client named "nobody" is connected',
    });
    expect(err.remoteClass).toBeUndefined();
  });

  it('244 / 504 with RP_DEADLINE_EXCEEDED when timeoutMs passes, and the handler is told to stop', async () => {
    const handler = new TestServerHandler();
    const { client } = await startPair({ server: { handler } });
    const started = Date.now();
    const err = await failure(callerFor(client.gatewayAddress).server.get('slow', { timeoutMs: 200 }));
    expect(err).toMatchObject({ code: 244, status: 504, errorCode: 'RP_DEADLINE_EXCEEDED' });
    expect(Date.now() - started).toBeLessThan(5000);
    const until = Date.now() + 5000;
    while (handler.signals[0]?.aborted !== true && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(handler.signals[0]?.aborted).toBe(true);
  });

  it('243 / 503 with RP_PEER_NOT_CONNECTED when the pipe is down', async () => {
    const server = await startServer();
    const port = server.pipeAddress.port;
    await server.close(0);
    const client = await startClient({ port }, { waitConnected: false, env: { RP_CLIENT_CONNECT_WAIT_S: '0.2' } });
    const err = await failure(callerFor(client.gatewayAddress).server.get('time'));
    expect(err).toMatchObject({ code: 243, status: 503, errorCode: 'RP_PEER_NOT_CONNECTED' });
  });

  it("an application's own non-zero code, with the handler's data", async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const err = await failure(callerFor(client.gatewayAddress).server.get('app_code'));
    expect(err).toMatchObject({ code: 7, status: 200, data: 'seven', mimetype: 'text/plain', remoteClass: undefined, errorCode: undefined });
    expect(err.message).toBe('GET server/app_code answered event code 7 (HTTP 200)');
  });

  it('a raw call fails the same way instead of returning the error body as a stream', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const err = await failure(callerFor(client.gatewayAddress).server.get('big_fail', { raw: true }));
    expect(err).toMatchObject({ code: 251, remoteClass: 'RangeError', message: 'no such file' });
  });
});

describe('raiseForException on raw undici responses', () => {
  it('passes a successful response through untouched, body unread', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const agent = new Agent();
    onClose(() => agent.close());
    const res = await request(`${client.gatewayAddress}/server/time`, { dispatcher: agent });
    expect(await raiseForException(res)).toBe(res);
    expect(res.body.bodyUsed).toBe(false);
    expect(typeof ((await res.body.json()) as { time_from_server: number }).time_from_server).toBe('number');
  });

  it('throws PipeFailError for a failed one, with the context given', async () => {
    const { client } = await startPair({ server: { handler: new TestServerHandler() } });
    const agent = new Agent();
    onClose(() => agent.close());
    const res = await request(`${client.gatewayAddress}/server/fail`, { dispatcher: agent });
    const err = await failure(raiseForException(res, { verb: 'GET', noun: 'fail', target: 'server' }));
    expect(err).toMatchObject({ code: 251, status: 500, remoteClass: 'TypeError', message: 'the disk is on fire', noun: 'fail', target: 'server' });
    const unknown = await request(`${client.gatewayAddress}/elsewhere`, { dispatcher: agent });
    expect(await failure(raiseForException(unknown))).toMatchObject({ code: 255, status: 404, errorCode: 'RP_NO_ROUTE' });
  });

  it('an answer without the event code: a failure when not 2xx (code -1), passed through when 2xx', async () => {
    const plain = createServer((req, res) => {
      if (req.url === '/ok') res.writeHead(200, { 'content-type': 'text/plain' }).end('fine');
      else res.writeHead(502, { 'content-type': 'text/html' }).end('<h1>502 Bad Gateway</h1>');
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    onClose(() => new Promise((r) => plain.close(r)));
    const base = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
    const agent = new Agent();
    onClose(() => agent.close());
    const ok = await request(`${base}/ok`, { dispatcher: agent });
    expect(await raiseForException(ok)).toBe(ok);
    await ok.body.dump();
    const bad = await failure(raiseForException(await request(`${base}/bad`, { dispatcher: agent })));
    expect(bad).toMatchObject({ code: NO_EVENT_CODE, status: 502, data: '<h1>502 Bad Gateway</h1>' });
    expect(bad.message).toContain('without an event code');
    // The caller applies the same rule.
    const caller = callerFor(base);
    await expect(caller.server.get('anything')).rejects.toMatchObject({ code: -1, status: 502 });
  });
});

describe('codes', () => {
  it("EventCode is the gateway's, and PipeFailError.status matches its HTTP status", () => {
    expect(EventCode).toEqual(sharedEventCode);
    expect(Object.keys(EventCode)).toEqual(Object.keys(sharedEventCode));
    expect(NO_EVENT_CODE).toBe(-1);
    expect(httpStatusForEventCode(EventCode.HANDLER_THREW)).toBe(500);
  });

  it('the generated copy of the event codes is up to date with the shared table', () => {
    const script = fileURLToPath(new URL('../../scripts/generate-event-codes.js', import.meta.url));
    expect(execFileSync(process.execPath, [script, '--check'], { encoding: 'utf8' })).toContain('is up to date');
    const generated = readFileSync(new URL('../src/generated/event-codes.ts', import.meta.url), 'utf8');
    expect(generated).toMatch(/^\/\/ GENERATED by scripts\/generate-event-codes\.js .* DO NOT EDIT\./);
  });

  it('caller errors: one exported subclass per code, named after the class, cause passed on', () => {
    const classes = Object.entries(callerPackage as Record<string, unknown>).filter(
      (entry): entry is [string, new (message: string, options?: ErrorOptions) => CallerError] =>
        typeof entry[1] === 'function' && (entry[1] as { prototype: unknown }).prototype instanceof CallerError,
    );
    const cause = new Error('root');
    const codes = classes.map(([exportName, Cls]) => {
      const err = new Cls('boom', { cause });
      expect(err.name).toBe(exportName);
      expect(err.message).toBe('boom');
      expect(err.cause).toBe(cause);
      return err.code;
    });
    expect(codes.sort()).toEqual(Object.keys(CALLER_ERROR_CODES).sort());
  });

  it('every code, error class and event code is documented in docs/caller.md', () => {
    const docs = readFileSync(DOCS, 'utf8');
    for (const code of Object.keys(CALLER_ERROR_CODES)) expect(docs, code).toContain(`\`${code}\``);
    for (const name of ['PipeFailError', 'CallerError', 'CallerUsageError', 'CallerClosedError', 'BadReplyError']) expect(docs, name).toContain(`\`${name}\``);
    for (const [name, { code, httpStatus }] of Object.entries(EVENT_CODES)) {
      expect(docs, name).toMatch(new RegExp(`^\\| ${code} \\| \`${name}\` \\| ${httpStatus}\\b`, 'm'));
    }
    expect(docs).toMatch(new RegExp(`^\\| ${NO_EVENT_CODE} \\| \`NO_EVENT_CODE\` \\|`, 'm'));
  });

  it('depends on no other RestPipe package at run time', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { dependencies?: Record<string, string> };
    expect(Object.keys(pkg.dependencies ?? {})).toEqual(['undici']);
    const srcDir = new URL('../src/', import.meta.url);
    const files = readdirSync(srcDir, { recursive: true, withFileTypes: true }).filter((f) => f.isFile() && f.name.endsWith('.ts'));
    expect(files.map((f) => f.name)).toContain('index.ts');
    for (const entry of files) {
      const file = join(entry.parentPath, entry.name);
      const text = readFileSync(file, 'utf8');
      const imports = [...text.matchAll(/from '([^']+)'/g)].map((m) => m[1]);
      for (const spec of imports) expect(spec, `${file} imports ${spec}`).toMatch(/^(\.\/|node:|undici$)/);
    }
  });
});
