/**
 * The shape of the code base: dependencies point one way
 * (proto ← shared ← server, client; certs-tool and caller stand alone),
 * packages reach each other only through their public entry point,
 * every error and event code is documented in the README as the registry
 * has it, and every error class follows the registry.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as shared from '@restpipe/shared';
import { ERROR_CODES, ERROR_REGISTRY, EVENT_CODES, EventCode, RestPipeError, errorBody, errorFromWire, httpStatusForEventCode } from '@restpipe/shared';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Which workspace packages each package may import. */
const ALLOWED: Record<string, string[]> = {
  proto: [],
  shared: ['proto'],
  server: ['proto', 'shared'],
  client: ['proto', 'shared'],
  'certs-tool': [],
  caller: [],
  // The restpipe package: the executables only (bin wrappers, no src of its own).
  cli: ['server', 'client', 'certs-tool'],
};

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (path.endsWith('.ts')) out.push(path);
  }
  return out;
}

describe('architecture', () => {
  for (const [pkg, allowed] of Object.entries(ALLOWED)) {
    it(`${pkg} depends only on ${allowed.join(', ') || 'no other package'}`, () => {
      const manifest = JSON.parse(readFileSync(join(root, pkg, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
      const deps = Object.keys(manifest.dependencies ?? {})
        .filter((d) => d.startsWith('@restpipe/'))
        .map((d) => d.slice('@restpipe/'.length));
      expect(deps.filter((d) => !allowed.includes(d))).toEqual([]);
      for (const file of sourceFiles(join(root, pkg, 'src'))) {
        const text = readFileSync(file, 'utf8');
        for (const match of text.matchAll(/from '(@restpipe\/[^']+|\.\.\/\.\.\/[^']+)'/g)) {
          const spec = match[1] as string;
          expect(spec, `${file} reaches into another package`).not.toMatch(/^\.\.\/\.\.\//);
          const [, name, subpath] = /^@restpipe\/([^/]+)(\/.*)?$/.exec(spec) ?? [];
          expect(allowed, `${file} imports ${spec}`).toContain(name);
          expect(subpath, `${file} imports a private path ${spec}`).toBeUndefined();
        }
      }
    });
  }
});

describe('executables', () => {
  // npm links bins at install, before `prepare` builds dist/: a bin must exist without a build.
  it('every bin is a committed, executable wrapper outside dist/', () => {
    for (const pkg of Object.keys(ALLOWED)) {
      const manifest = JSON.parse(readFileSync(join(root, pkg, 'package.json'), 'utf8')) as { bin?: Record<string, string> };
      for (const [name, target] of Object.entries(manifest.bin ?? {})) {
        expect(target, name).not.toMatch(/dist\//);
        const mode = statSync(join(root, pkg, target)).mode;
        expect(mode & 0o111, `${name} is executable`).not.toBe(0);
      }
    }
  });
});

describe('documentation', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Errors and codes'), readme.indexOf('\n## ', readme.indexOf('## Errors and codes') + 1));

  /** The cells of the README table rows whose first cell matches `first`. */
  function rows(first: RegExp): string[][] {
    return section
      .split('\n')
      .filter((line) => line.startsWith('| '))
      .map((line) => line.slice(2, -2).split(' | '))
      .filter((cells) => first.test(cells[0] ?? ''));
  }

  it('documents every error code with its event code, HTTP status and line, as the registry has them', () => {
    const documented = new Map(rows(/^`RP_\w+`$/).map(([code, ...rest]) => [(code as string).slice(1, -1), rest]));
    for (const entry of Object.values(ERROR_REGISTRY)) {
      expect(documented.get(entry.code), entry.code).toEqual([String(entry.eventCode), String(entry.httpStatus), entry.doc]);
    }
    expect([...documented.keys()].sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });

  it('documents every event code with its HTTP status, and no other', () => {
    const documented = new Map(rows(/^\d+$/).map(([code, status]) => [Number(code), Number(status)]));
    expect(documented).toEqual(new Map(Object.values(EVENT_CODES).map((e) => [e.code, e.httpStatus])));
  });
});

describe('errors and event codes', () => {
  const cause = new Error('root');
  /** One instance of every RestPipeError subclass, by export name. */
  const samples: Record<string, RestPipeError> = {
    BadRequestError: new shared.BadRequestError('bad', { cause }),
    BodyTooLargeError: new shared.BodyTooLargeError('big', { cause }),
    UnknownClientError: new shared.UnknownClientError('nobody'),
    PeerNotConnectedError: new shared.PeerNotConnectedError(undefined, { cause }),
    DeadlineExceededError: new shared.DeadlineExceededError(250),
    PipeBrokenError: new shared.PipeBrokenError(undefined, { cause }),
    ShuttingDownError: new shared.ShuttingDownError(undefined, { cause }),
    InstanceGoneError: new shared.InstanceGoneError(undefined, { cause }),
    ClusterUnavailableError: new shared.ClusterUnavailableError('branch-01', { cause }),
    OverloadedError: new shared.OverloadedError(64, 2, { cause }),
    InvalidNounError: new shared.InvalidNounError('a b'),
    NoRouteError: new shared.NoRouteError('no route for GET /x', { cause }),
    InternalError: new shared.InternalError(undefined, { cause }),
    ProtocolError: new shared.ProtocolError('bad frame', { cause }),
    ConfigError: new shared.ConfigError('RP_X="y" is not valid', { cause }),
    IdentityError: new shared.IdentityError('no clientAuth', { cause }),
    IdentityFilesError: new shared.IdentityFilesError('the key does not match the certificate', { cause }),
  };

  it("one exported subclass per registered code, named after its class, with the registry's event code and HTTP status", () => {
    const exported = Object.entries(shared)
      .filter(([, value]) => typeof value === 'function' && (value as { prototype: unknown }).prototype instanceof RestPipeError)
      .map(([name]) => name);
    expect(exported.sort()).toEqual(Object.keys(samples).sort());
    for (const [name, err] of Object.entries(samples)) {
      expect(err).toBeInstanceOf((shared as unknown as Record<string, typeof RestPipeError>)[name]);
      expect(err.name).toBe(name);
      const entry = ERROR_REGISTRY[err.code];
      expect({ eventCode: err.eventCode, httpStatus: err.httpStatus }, name).toEqual({ eventCode: entry.eventCode, httpStatus: entry.httpStatus });
      expect(httpStatusForEventCode(err.eventCode)).toBe(err.httpStatus);
    }
    expect(
      Object.values(samples)
        .map((e) => e.code)
        .sort(),
    ).toEqual(Object.keys(ERROR_REGISTRY).sort());
  });

  it('passes the cause on', () => {
    for (const [name, err] of Object.entries(samples)) {
      if (!['UnknownClientError', 'DeadlineExceededError', 'InvalidNounError'].includes(name)) expect(err.cause, name).toBe(cause);
    }
  });

  it('keeps the messages and fields callers and tests rely on', () => {
    expect(samples.InvalidNounError).toMatchObject({ code: 'RP_NO_HANDLER', eventCode: 255, httpStatus: 404, noun: 'a b' });
    expect(samples.InvalidNounError?.message).toBe('"a b" is not a valid noun: use letters, digits, "_" and "/"');
    expect(samples.NoRouteError).toMatchObject({ code: 'RP_NO_ROUTE', eventCode: 255, httpStatus: 404 });
    expect(samples.InternalError).toMatchObject({ code: 'RP_INTERNAL', eventCode: 251, httpStatus: 500, message: 'internal gateway error' });
    expect(samples.OverloadedError).toMatchObject({
      code: 'RP_OVERLOADED',
      eventCode: EventCode.OVERLOADED,
      httpStatus: 503,
      limit: 64,
      retryAfterS: 2,
      message: 'too many requests in flight on this pipe (limit 64); retry later',
    });
    expect(new shared.OverloadedError(8).retryAfterS).toBe(1);
    expect(samples.UnknownClientError?.message).toBe('no client named "nobody" is connected');
    expect(samples.DeadlineExceededError?.message).toBe('no reply within the deadline of 250 ms');
    expect(EventCode.OVERLOADED).toBe(247);
  });

  it("errorFromWire maps an answer's event code and error body back to the error", () => {
    for (const err of Object.values(samples)) {
      const body = JSON.parse(errorBody(err).toString('utf8')) as { error: { code: string; message: string } };
      const back = errorFromWire(err.eventCode, body.error);
      expect(back).toBeInstanceOf(RestPipeError);
      expect(back && { code: back.code, eventCode: back.eventCode, httpStatus: back.httpStatus, message: back.message }).toEqual({
        code: err.code,
        eventCode: err.eventCode,
        httpStatus: err.httpStatus,
        message: err.message,
      });
    }
    expect(errorFromWire(EventCode.NO_HANDLER, { code: 'RP_NOT_A_CODE', message: 'x' })).toBeUndefined();
    expect(errorFromWire(EventCode.BAD_REQUEST, { code: 'RP_UNKNOWN_CLIENT', message: 'x' })).toBeUndefined();
    expect(errorFromWire(EventCode.HANDLER_THREW, undefined)).toBeUndefined();
    expect(errorFromWire(EventCode.NO_HANDLER, { code: 'toString' })).toBeUndefined();
  });

  it('EventCode and httpStatusForEventCode read the one table; an application code answers 200', () => {
    expect(Object.isFrozen(EventCode)).toBe(true);
    expect(Object.entries(EventCode)).toEqual(Object.entries(EVENT_CODES).map(([name, e]) => [name, e.code]));
    for (const e of Object.values(EVENT_CODES)) expect(httpStatusForEventCode(e.code)).toBe(e.httpStatus);
    expect(httpStatusForEventCode(7)).toBe(200);
  });

  // The spelled-out form `new RestPipeError('RP_…', EventCode.…, …)` states an
  // event code the registry already has. These are the uses left to switch to
  // their classes (NoRouteError, InvalidNounError, InternalError,
  // BodyTooLargeError); the count may only go down.
  const SPELLED_OUT: Record<string, number> = {};

  it('no error is built with a spelled-out event code outside the known uses', () => {
    const found: Record<string, number> = {};
    for (const pkg of Object.keys(ALLOWED)) {
      for (const file of sourceFiles(join(root, pkg, 'src'))) {
        const n = [...readFileSync(file, 'utf8').matchAll(/new RestPipeError\(\s*'RP_\w+',\s*(?:EventCode\.|\d)/g)].length;
        if (n > 0) found[file.slice(root.length)] = n;
      }
    }
    expect(found).toEqual(SPELLED_OUT);
  });
});
