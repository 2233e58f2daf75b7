/**
 * Error classes: stable codes, names, and every code documented in docs/identities.md and in
 * the README's "Create identities" section.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as certsTool from '@restpipe/certs-tool';
import { CertsToolError, ERROR_CODES, exitCodeFor } from '@restpipe/certs-tool';
import { DOCS_PATH, README_PATH } from './helpers.js';

type ErrorClass = new (message: string) => CertsToolError;

const errorClasses: Array<[string, ErrorClass]> = Object.entries(certsTool as Record<string, unknown>).filter(
  (entry): entry is [string, ErrorClass] => typeof entry[1] === 'function' && (entry[1] as { prototype: unknown }).prototype instanceof CertsToolError,
);

describe('errors', () => {
  it('have one exported subclass per code, named after the class', { timeout: 5_000 }, () => {
    const codes = errorClasses.map(([exportName, Cls]) => {
      const err = new Cls('boom');
      expect(err).toBeInstanceOf(Error);
      expect(err.name).toBe(exportName);
      expect(err.message).toBe('boom');
      return err.code;
    });
    expect([...codes].sort()).toEqual([...ERROR_CODES].sort());
  });

  it('are all documented in docs/identities.md', { timeout: 5_000 }, () => {
    const docs = readFileSync(DOCS_PATH, 'utf8');
    for (const code of ERROR_CODES) expect(docs, code).toContain(`\`${code}\``);
    for (const [name] of errorClasses) expect(docs, name).toContain(`\`${name}\``);
  });

  it('are all listed in the README under "Create identities", with the line format', { timeout: 5_000 }, () => {
    const readme = readFileSync(README_PATH, 'utf8');
    const start = readme.indexOf('\n## Create identities\n');
    expect(start, 'README has a "Create identities" section').toBeGreaterThan(0);
    const end = readme.indexOf('\n## ', start + 1);
    const section = readme.slice(start, end === -1 ? undefined : end);
    for (const code of ERROR_CODES) expect(section, code).toContain(`\`${code}\``);
    expect(section).toContain('restpipe-certs: RP_CERTS_');
  });

  it('pass on their cause', { timeout: 5_000 }, () => {
    const cause = new Error('root');
    expect(new certsTool.WriteFailedError('x', { cause }).cause).toBe(cause);
  });

  it('map to exit code 2 for usage errors and 1 otherwise', { timeout: 5_000 }, () => {
    expect(exitCodeFor(new certsTool.UsageError('x'))).toBe(2);
    expect(exitCodeFor(new certsTool.InvalidArgumentError('x'))).toBe(2);
    expect(exitCodeFor(new certsTool.WrongUsageError('x'))).toBe(1);
    expect(exitCodeFor(new certsTool.InternalError('x'))).toBe(1);
    expect(exitCodeFor(new Error('x'))).toBe(1);
  });
});
