/**
 * The packages as users get them (issue 16). Every workspace is packed with
 * `npm pack --workspaces`; the tarballs are installed with plain
 * `npm install <tarballs>` into an empty project outside the checkout (our
 * packages come from the tarballs, their third-party dependencies from the
 * npm cache or registry), and globally into a temporary prefix, as the
 * README's "Install" section does. In that project the installed
 * `restpipe-certs` makes the identities, the handler examples of the installed
 * @restpipe/server and @restpipe/client READMEs are compiled against the
 * installed types, the installed `restpipe-server` and `restpipe-client` run
 * them, and requests go through both gateways (and through the installed
 * @restpipe/caller). The manifests are checked without packing: one version,
 * internal dependencies pinned to it, what every package must declare.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, spawnNode } from './helpers/node-process.js';
import { closeAll, freePort, httpClient } from './helpers/pipe.js';

afterEach(closeAll);

const run = promisify(execFile);

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  description?: string;
  license?: string;
  type?: string;
  engines?: Record<string, string>;
  workspaces?: string[];
  exports?: Record<string, string | Record<string, string>>;
  bin?: Record<string, string>;
  files?: string[];
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  publishConfig?: { access?: string };
}

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;
const root = readJson<Manifest>(join(REPO_ROOT, 'package.json'));
/** Every workspace: its folder and its package.json. */
const workspaces = (root.workspaces ?? []).map((folder) => ({ folder, manifest: readJson<Manifest>(join(REPO_ROOT, folder, 'package.json')) }));
const names = new Set(workspaces.map((w) => w.manifest.name));
/** What the packages are, by name: the tests below must fail when one goes missing. */
const PACKAGES = ['restpipe', '@restpipe/proto', '@restpipe/shared', '@restpipe/server', '@restpipe/client', '@restpipe/certs-tool', '@restpipe/caller'];
/** `@restpipe/server` → `restpipe-server-0.1.0.tgz`, as npm pack names it. */
const tarballName = (name: string, version: string) => `${name.replace(/^@/, '').replace('/', '-')}-${version}.tgz`;

describe('package manifests', () => {
  it('the root is the private workspace; every package is a publishable workspace', () => {
    expect(root.name).toBe('restpipe-workspace');
    expect(root.private).toBe(true);
    expect([...names].sort()).toEqual([...PACKAGES].sort());
    for (const { manifest } of workspaces) expect(manifest.private, manifest.name).toBeUndefined();
  });

  it('every package has the one version, and every dependency on another one pins exactly it', () => {
    const lock = readJson<{ version: string; packages: Record<string, { version?: string; dependencies?: Record<string, string> }> }>(
      join(REPO_ROOT, 'package-lock.json'),
    );
    expect(lock.version).toBe(root.version);
    for (const { folder, manifest } of workspaces) {
      expect(manifest.version, manifest.name).toBe(root.version);
      expect(lock.packages[folder]?.version, `package-lock.json: ${folder}`).toBe(root.version);
      for (const deps of [manifest.dependencies, manifest.devDependencies, manifest.peerDependencies]) {
        for (const [dep, range] of Object.entries(deps ?? {})) {
          if (names.has(dep)) expect(range, `${manifest.name} → ${dep}`).toBe(root.version);
        }
      }
      for (const [dep, range] of Object.entries(lock.packages[folder]?.dependencies ?? {})) {
        if (names.has(dep)) expect(range, `package-lock.json: ${folder} → ${dep}`).toBe(root.version);
      }
    }
  });

  it('every package declares its license, engines, description and public access, and ships a README and the LICENSE', () => {
    const license = readFileSync(join(REPO_ROOT, 'LICENSE'), 'utf8');
    expect(license).toMatch(/^MIT License\n/);
    expect(root.license).toBe('MIT');
    for (const { folder, manifest } of workspaces) {
      expect(manifest.license, manifest.name).toBe('MIT');
      expect(manifest.engines, manifest.name).toEqual(root.engines);
      expect(manifest.type, manifest.name).toBe('module');
      expect(manifest.description, manifest.name).toMatch(/\w{3,}/);
      if (manifest.name.startsWith('@')) expect(manifest.publishConfig?.access, manifest.name).toBe('public');
      expect(readFileSync(join(REPO_ROOT, folder, 'LICENSE'), 'utf8'), `${folder}/LICENSE`).toBe(license);
      expect(existsSync(join(REPO_ROOT, folder, 'README.md')), `${folder}/README.md`).toBe(true);
    }
  });

  it('every export names built files with their types; a package with source maps ships the sources they point to', () => {
    for (const { folder, manifest } of workspaces) {
      const files = manifest.files ?? [];
      expect(files.length, `${manifest.name} lists its files`).toBeGreaterThan(0);
      for (const entry of files) expect(entry, `${manifest.name} files`).not.toMatch(/test|fixture|tsbuildinfo|node_modules/);
      for (const target of Object.values(manifest.bin ?? {})) {
        expect(files, `${manifest.name} ships its bin ${target}`).toContain(target.replace(/^\.\//, '').split('/')[0]);
        expect(statSync(join(REPO_ROOT, folder, target)).mode & 0o111, `${target} is executable`).not.toBe(0);
      }
      if (!existsSync(join(REPO_ROOT, folder, 'tsconfig.json'))) continue;
      expect(files, manifest.name).toEqual(expect.arrayContaining(['dist', 'src']));
      expect(Object.keys(manifest.exports ?? {}), manifest.name).toEqual(expect.arrayContaining(['.', './package.json']));
      for (const [subpath, target] of Object.entries(manifest.exports ?? {})) {
        if (subpath === './package.json') continue;
        expect(target, `${manifest.name} ${subpath}`).toEqual({
          types: expect.stringMatching(/^\.\/dist\/.*\.d\.ts$/),
          default: expect.stringMatching(/^\.\/dist\/.*\.js$/),
        });
        for (const file of Object.values(target as Record<string, string>))
          expect(existsSync(join(REPO_ROOT, folder, file)), `${manifest.name}: ${file}`).toBe(true);
      }
    }
  });

  it("the README's Install section packs and installs as this test does", async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const start = readme.indexOf('\n## Install\n');
    expect(start, 'README.md has an "Install" section').toBeGreaterThan(0);
    const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
    const block = [...section.matchAll(/^```sh\n([\s\S]*?)\n```$/gm)].map((m) => m[1] ?? '').find((b) => b.includes('npm pack'));
    const commands = (block ?? '')
      .split('\n')
      .flatMap((line) => line.replace(/\s#.*$/, '').split('&&'))
      .map((c) => c.trim().replace(/\s+/g, ' '))
      .filter(Boolean);
    // What the tests below run, with a temporary folder for /tmp/restpipe-packages and a --prefix for -g.
    expect(commands).toEqual([
      'npm ci',
      'npm pack --workspaces --pack-destination /tmp/restpipe-packages',
      'npm install -g /tmp/restpipe-packages/*.tgz',
      'npm install /tmp/restpipe-packages/*.tgz',
    ]);
  });
});

// ---------------------------------------------------------------------------

/** npm's environment: this one without the npm_* settings of an enclosing `npm test`. */
function npmEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || /^npm_/i.test(k) || k === 'INIT_CWD' || k.startsWith('RP_')) continue;
    env[k] = v;
  }
  return { ...env, npm_config_update_notifier: 'false' };
}

async function runOrExplain(file: string, args: string[], cwd: string, timeout = 120_000): Promise<string> {
  try {
    return (await run(file, args, { cwd, env: npmEnv(), timeout, maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${file} ${args.join(' ')} failed in ${cwd}: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

/** `npm install` preferring the cache: our packages from the tarballs, the third-party ones from the cache or the registry. */
const NPM_INSTALL = ['install', '--prefer-offline', '--no-audit', '--no-fund'];

/** The first ```ts block of a Markdown file. */
function tsBlock(markdown: string): string {
  const block = /^```ts\n([\s\S]*?)\n```$/m.exec(markdown)?.[1];
  if (!block) throw new Error('no ts block');
  return block;
}

describe('the packed packages, installed outside the checkout', () => {
  let base = '';
  let packs = '';
  let project = '';
  let globalPrefix = '';
  let tarballs: string[] = [];
  const bin = (name: string) => join(project, 'node_modules', '.bin', name);

  beforeAll(async () => {
    base = await mkdtemp(join(await realpath(tmpdir()), 'restpipe-packaging-'));
    expect(resolve(base).startsWith(REPO_ROOT + sep)).toBe(false);
    packs = join(base, 'packs');
    project = join(base, 'project');
    globalPrefix = join(base, 'global');
    await Promise.all([mkdir(packs), mkdir(project), mkdir(globalPrefix)]);

    await runOrExplain('npm', ['pack', '--workspaces', '--pack-destination', packs], REPO_ROOT);
    tarballs = readdirSync(packs)
      .filter((f) => f.endsWith('.tgz'))
      .sort()
      .map((f) => join(packs, f));

    await writeFile(join(project, 'package.json'), `${JSON.stringify({ name: 'handlers', private: true, type: 'module' }, null, 2)}\n`);
    // The project install and the README's global one, side by side.
    await Promise.all([
      runOrExplain('npm', [...NPM_INSTALL, ...tarballs], project),
      runOrExplain('npm', [...NPM_INSTALL, '-g', '--prefix', globalPrefix, ...tarballs], base),
    ]);

    // The handler examples of the installed packages' READMEs, compiled with the installed types.
    for (const role of ['server', 'client']) {
      const readme = await readFile(join(project, 'node_modules', '@restpipe', role, 'README.md'), 'utf8');
      await writeFile(join(project, `${role}-handlers.ts`), tsBlock(readme));
    }
    await writeFile(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'nodenext', target: 'es2022', strict: true, skipLibCheck: true, outDir: 'dist', types: [] },
        include: ['*.ts'],
      }),
    );
    await runOrExplain(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], project);
  }, 180_000);

  afterAll(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  it('packs every package, with no tests, fixtures or build info, and leaves the checkout as it was', async () => {
    expect(tarballs.map((t) => t.slice(packs.length + 1))).toEqual(PACKAGES.map((n) => tarballName(n, root.version)).sort());
    for (const folder of ['deploy', 'docs', 'scripts']) expect(existsSync(join(REPO_ROOT, 'cli', folder)), `cli/${folder} after packing`).toBe(false);
    for (const tarball of tarballs) {
      const entries = (await runOrExplain('tar', ['-tzf', tarball], base)).split('\n').filter(Boolean);
      const name = tarball.slice(packs.length + 1);
      expect(entries, name).toEqual(expect.arrayContaining(['package/package.json', 'package/LICENSE', 'package/README.md']));
      for (const entry of entries) {
        expect(entry, name).toMatch(/^package\//);
        expect(entry, name).not.toMatch(/(^|\/)(test|tests|fixtures|node_modules)\/|\.test\.|\.tsbuildinfo$/);
      }
      // Source maps point at ../src: every map is shipped with its source, every module with its types.
      for (const map of entries.filter((e) => e.endsWith('.js.map'))) {
        const module = map.slice(0, -'.map'.length);
        expect(entries, name).toEqual(expect.arrayContaining([module, `${module.slice(0, -3)}.d.ts`, `${module.slice(0, -3)}.d.ts.map`]));
        expect(entries, name).toContain(module.replace(/^package\/dist\//, 'package/src/').replace(/\.js$/, '.ts'));
      }
    }
    const operator = (await runOrExplain('tar', ['-tzf', join(packs, tarballName('restpipe', root.version))], base)).split('\n');
    expect(operator).toEqual(
      expect.arrayContaining([
        'package/bin/restpipe-server.js',
        'package/bin/restpipe-client.js',
        'package/bin/restpipe-certs.js',
        'package/deploy/systemd/restpipe-server.service',
        'package/deploy/systemd/restpipe-client.service',
        'package/deploy/env/server.env.example',
        'package/deploy/nginx/restpipe-server.conf',
        'package/scripts/start-server-prod.sh',
        'package/scripts/start-client-prod.sh',
        'package/scripts/lib/common.sh',
        'package/docs/production.md',
      ]),
    );
  });

  it('runs a server and a client from the installed executables, each with a handler importing its package, and answers both ways', async () => {
    // Identities made with the installed restpipe-certs.
    const ids = join(base, 'identities');
    const certs = (...args: string[]) => runOrExplain(process.execPath, [bin('restpipe-certs'), ...args], project, 30_000);
    await certs('create-ca', '--out', ids, '--name', 'Packaging Test CA');
    await Promise.all([
      certs('create-server', '--out', ids, '--name', 'localhost', '--dns', 'localhost', '--ip', '127.0.0.1'),
      certs('create-client', '--out', ids, '--name', 'branch-01'),
    ]);
    const serverIds = join(base, 'etc', 'server');
    const clientIds = join(base, 'etc', 'client');
    const ca = join(ids, 'ca.crt.pem');
    await Promise.all([
      certs('set-identity', 'server', '--dir', serverIds, '--key', join(ids, 'server.key.pem'), '--cert', join(ids, 'server.crt.pem'), '--ca', ca),
      certs('set-identity', 'client', '--dir', clientIds, '--key', join(ids, 'branch-01.key.pem'), '--cert', join(ids, 'branch-01.crt.pem'), '--ca', ca),
    ]);

    const [pipePort, serverGatewayPort, clientGatewayPort] = [await freePort(), await freePort(), await freePort()];
    const common = { RP_STATSD_HOST: '', RP_LOG_LEVEL: 'info' };
    const server = spawnNode(
      bin('restpipe-server'),
      {
        ...common,
        RP_SERVER_BIND_INTERFACE: '127.0.0.1',
        RP_SERVER_BIND_PORT: String(pipePort),
        RP_SERVER_CERT_PATH: serverIds,
        RP_SERVER_GATEWAY_HOST: '127.0.0.1',
        RP_SERVER_GATEWAY_PORT: String(serverGatewayPort),
        RP_EVENT_HANDLER_FQ_CLASS: './dist/server-handlers.js#Handlers',
      },
      { cwd: project },
    );
    await server.waitForLog('gateway listening', 15_000);
    const client = spawnNode(
      bin('restpipe-client'),
      {
        ...common,
        RP_CLIENT_TARGET_HOSTNAME: 'localhost',
        RP_CLIENT_TARGET_PORT: String(pipePort),
        RP_CLIENT_CERT_PATH: clientIds,
        RP_CLIENT_GATEWAY_HOST: '127.0.0.1',
        RP_CLIENT_GATEWAY_PORT: String(clientGatewayPort),
        RP_EVENT_HANDLER_FQ_CLASS: './dist/client-handlers.js#Handlers',
      },
      { cwd: project },
    );
    await client.waitForLog('connected to the server', 15_000);

    const http = httpClient();
    const toServer = await http('GET', `http://127.0.0.1:${clientGatewayPort}/server/hello//world`);
    expect([toServer.status, toServer.code], toServer.text).toEqual([200, 0]);
    expect(toServer.json()).toEqual({ hello: 'world', from: 'branch-01' });
    const toClient = await http('GET', `http://127.0.0.1:${serverGatewayPort}/client/branch-01/hello//world`);
    expect([toClient.status, toClient.code], toClient.text).toEqual([200, 0]);
    expect(toClient.json()).toEqual({ hello: 'world' });
    // The example handlers are not what runs.
    expect((await http('GET', `http://127.0.0.1:${clientGatewayPort}/server/time`)).code).toBe(255);
    // The dashboard pages ship in the packages.
    for (const port of [serverGatewayPort, clientGatewayPort]) {
      const page = await http('GET', `http://127.0.0.1:${port}/_restpipe/ui`);
      expect(page.status, page.text).toBe(200);
      expect(page.headers['content-type']).toMatch(/text\/html/);
    }

    // The installed caller, from a module in the project.
    await writeFile(
      join(project, 'call.mjs'),
      [
        "import { createCaller, PipeFailError } from '@restpipe/caller';",
        'const [clientGateway, serverGateway] = process.argv.slice(2);',
        'const onClient = createCaller(clientGateway);',
        'const onServer = createCaller(serverGateway);',
        "const toServer = await onClient.server.get('hello', { args: ['caller'] });",
        "const toClient = await onServer.client('branch-01').get('hello', { args: ['caller'] });",
        "const missing = await onClient.server.get('nothing').catch((err) => (err instanceof PipeFailError ? err.code : String(err)));",
        'await Promise.all([onClient.close(), onServer.close()]);',
        'console.log(JSON.stringify({ toServer, toClient, missing }));',
      ].join('\n'),
    );
    const called = await runOrExplain(
      process.execPath,
      ['call.mjs', `http://127.0.0.1:${clientGatewayPort}`, `http://127.0.0.1:${serverGatewayPort}`],
      project,
      20_000,
    );
    expect(JSON.parse(called)).toEqual({ toServer: { hello: 'caller', from: 'branch-01' }, toClient: { hello: 'caller' }, missing: 255 });
    expect(server.stderr() + client.stderr()).toBe('');
  }, 60_000);

  it("the restpipe package's own executables run, and its start scripts exec them", async () => {
    const pkg = join(project, 'node_modules', 'restpipe');
    const help = (name: string, arg: string) => runOrExplain(process.execPath, [join(pkg, 'bin', `${name}.js`), arg], project, 20_000);
    const [server, client, certs] = await Promise.all([help('restpipe-server', '--help'), help('restpipe-client', '--help'), help('restpipe-certs', 'help')]);
    expect(server).toMatch(/^usage: restpipe-server\n/);
    expect(client).toMatch(/^usage: restpipe-client\n/);
    expect(certs).toMatch(/^Usage: restpipe-certs /);

    // A stand-in for node (RP_NODE) that prints what it would run.
    const printer = join(base, 'print-args');
    await writeFile(printer, '#!/bin/sh\nprintf "%s\\n" "$@"\n');
    chmodSync(printer, 0o755);
    for (const role of ['server', 'client']) {
      const env = join(base, `${role}.env`);
      await writeFile(env, 'RP_LOG_LEVEL=info\n');
      const res = spawnSync(join(pkg, 'scripts', `start-${role}-prod.sh`), [env], {
        env: { PATH: process.env.PATH ?? '', RP_NODE: printer },
        encoding: 'utf8',
        timeout: 10_000,
      });
      expect(res.status, res.stderr).toBe(0);
      expect(res.stdout).toBe(`${join(await realpath(pkg), 'bin', `restpipe-${role}.js`)}\n`);
    }
  });

  const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
  it.skipIf(!analyze)(
    'the shipped systemd units name the executables of an install in /opt/restpipe (systemd-analyze verify, pointed at this install)',
    async () => {
      const units = join(base, 'units');
      await mkdir(units);
      const paths: string[] = [];
      for (const role of ['server', 'client']) {
        const text = await readFile(join(project, 'node_modules', 'restpipe', 'deploy', 'systemd', `restpipe-${role}.service`), 'utf8');
        expect(text).toMatch(new RegExp(`^ExecStart=/opt/restpipe/node_modules/\\.bin/restpipe-${role}$`, 'm'));
        const path = join(units, `restpipe-${role}.service`);
        await writeFile(path, text.replaceAll('/opt/restpipe', project));
        paths.push(path);
      }
      const res = spawnSync(analyze as string, ['verify', ...paths], { encoding: 'utf8', timeout: 20_000 });
      expect(res.status, res.stderr).toBe(0);
      expect(`${res.stdout}${res.stderr}`.trim()).toBe('');
    },
  );

  it('installs globally from the tarballs: the three executables on the prefix PATH', async () => {
    const help = (name: string, arg: string) => runOrExplain(join(globalPrefix, 'bin', name), [arg], base, 20_000);
    const [server, client, certs] = await Promise.all([help('restpipe-server', '--help'), help('restpipe-client', '--help'), help('restpipe-certs', 'help')]);
    expect(server).toMatch(/^usage: restpipe-server\n/);
    expect(client).toMatch(/^usage: restpipe-client\n/);
    expect(certs).toMatch(/^Usage: restpipe-certs /);
  });
});
