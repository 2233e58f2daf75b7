/**
 * The shape of the code base: dependencies point one way
 * (proto ← shared ← server, client; certs-tool and caller stand alone),
 * packages reach each other only through their public entry point, and
 * every error and event code is documented in the README.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES, EventCode } from '@restpipe/shared';
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
};

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
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

  it('documents every error code', () => {
    for (const code of Object.keys(ERROR_CODES)) expect(readme, code).toContain(`\`${code}\``);
  });

  it('documents every event code with its HTTP status', () => {
    for (const [name, code] of Object.entries(EventCode)) expect(readme, name).toMatch(new RegExp(`^\\| ${code} \\| \\d{3} \\|`, 'm'));
  });
});
