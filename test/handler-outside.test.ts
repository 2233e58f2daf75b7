/**
 * The README's "Writing handlers" example, run the way a user outside the
 * checkout runs it: its TypeScript block and tsconfig.json written into a
 * fresh project under the system temp folder, the README's commands run
 * there (npm installs the checkout's packages as local folders, offline; the
 * checkout's tsc compiles to ESM), then the real restpipe-client loads the
 * compiled module named as the README names it and the test calls its methods
 * through a real server's gateway. Also the two ways such a project fails when
 * it is not set up like that, with the messages the README quotes.
 */
import { execFile } from 'node:child_process';
import { copyFile, lstat, mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { testPki } from './helpers/identities.js';
import { CLIENT_CLI, REPO_ROOT, installedIdentity, runToExit, spawnNode, tempDir } from './helpers/node-process.js';
import { closeAll, httpClient, startServer } from './helpers/pipe.js';

afterEach(closeAll);

const run = promisify(execFile);
const VAR = 'RP_EVENT_HANDLER_FQ_CLASS';
/** The folders the README's commands name, and what they are here. */
const README_CHECKOUT = '/opt/restpipe';
const README_PROJECT = '/opt/restpipe-handlers';
const TSC = `${README_CHECKOUT}/node_modules/.bin/tsc`;

/** The README's "Writing handlers" section: from its heading to the next heading. */
async function writingHandlersSection(): Promise<string> {
  const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n### Writing handlers\n');
  expect(start, 'README.md has a "Writing handlers" section').toBeGreaterThan(0);
  const end = readme.slice(start + 1).search(/\n#{2,3} /);
  return end < 0 ? readme.slice(start) : readme.slice(start, start + 1 + end);
}

/** The fenced code blocks of `lang` in `text`, in order, un-indented (blocks inside a bullet are indented). */
function codeBlocks(text: string, lang: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/^( *)```(\w*)\n([\s\S]*?)\n\1```$/gm)) {
    const indent = m[1] ?? '';
    if (m[2] !== lang) continue;
    out.push(
      (m[3] ?? '')
        .split('\n')
        .map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l))
        .join('\n'),
    );
  }
  return out;
}

/** npm's environment: this one without the npm_* settings of an enclosing `npm test`, offline. */
function npmEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || /^npm_/i.test(k) || k === 'INIT_CWD') continue;
    env[k] = v;
  }
  // Offline: a local folder install must not need the registry (it fails instead of fetching).
  return { ...env, npm_config_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
}

/**
 * Runs the README's shell block with its folders replaced: `mkdir`/`cd` of the
 * project, `npm …` and the checkout's tsc. Any other command fails the test, so
 * a README change is noticed here.
 */
async function runReadmeCommands(block: string, checkout: string, project: string): Promise<void> {
  const place = (word: string) => word.replace(/\/opt\/restpipe(-handlers)?/g, (_all, handlers: string | undefined) => (handlers ? project : checkout));
  let cwd = checkout;
  for (const raw of block.split('\n')) {
    const line = raw.replace(/\s#.*$/, '').trim();
    if (line === '') continue;
    for (const command of line.split('&&')) {
      const words = command.trim().split(/\s+/);
      const [program, ...args] = words.map(place);
      const inProject = args.length === 1 && args[0] === project;
      if (words[0] === 'mkdir' && inProject) await mkdir(project, { recursive: true });
      else if (words[0] === 'cd' && inProject) cwd = project;
      else if (program === 'npm') await runOrExplain('npm', args, cwd, npmEnv());
      else if (words[0] === TSC) await runOrExplain(process.execPath, [program as string, ...args], cwd, process.env);
      else throw new Error(`the README's commands have one this test does not know: ${command.trim()}`);
    }
  }
}

async function runOrExplain(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  try {
    await run(file, args, { cwd, env, timeout: 120_000 });
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${file} ${args.join(' ')} failed in ${cwd}: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

/** The settings of a restpipe-client child that dials `port` as `name`. */
async function clientEnv(port: number, name: string, env: Record<string, string>): Promise<Record<string, string>> {
  const pki = await testPki();
  return {
    RP_CLIENT_CERT_PATH: await installedIdentity('client', await pki.client(name)),
    RP_CLIENT_TARGET_HOSTNAME: 'localhost',
    RP_CLIENT_TARGET_PORT: String(port),
    RP_CLIENT_GATEWAY_HOST: '127.0.0.1',
    RP_CLIENT_GATEWAY_PORT: '0',
    RP_STATSD_HOST: '',
    RP_LOG_LEVEL: 'info',
    ...env,
  };
}

describe("the README's handler example in a project outside the checkout", () => {
  let base = '';
  let project = '';
  let handlerSpec = '';

  beforeAll(async () => {
    const section = await writingHandlersSection();
    const [example] = codeBlocks(section, 'ts');
    const [commands] = codeBlocks(section, 'sh');
    const [tsconfig] = codeBlocks(section, 'json');
    const spec = new RegExp(`${VAR}=(${README_PROJECT}/\\S+#\\w+)`).exec(section)?.[1];
    if (!example || !commands || !tsconfig || !spec)
      throw new Error('the section lacks the example, its commands, its tsconfig.json or the setting that names it');
    base = await mkdtemp(join(await realpath(tmpdir()), 'restpipe-outside-'));
    project = join(base, 'restpipe-handlers');
    expect(resolve(project).startsWith(REPO_ROOT + sep)).toBe(false);
    await mkdir(project);
    await writeFile(join(project, 'handlers.ts'), example);
    await writeFile(join(project, 'tsconfig.json'), tsconfig);
    await runReadmeCommands(commands, REPO_ROOT, project);
    handlerSpec = spec.replace(README_PROJECT, project);
  }, 180_000);

  afterAll(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  it('links the checkout packages and compiles to an ES module', async () => {
    const pkg = JSON.parse(await readFile(join(project, 'package.json'), 'utf8')) as { type?: string };
    expect(pkg.type).toBe('module');
    for (const name of ['client', 'shared']) {
      const installed = join(project, 'node_modules', '@restpipe', name);
      expect((await lstat(installed)).isSymbolicLink(), `${installed} is a link`).toBe(true);
      expect(await realpath(installed)).toBe(await realpath(join(REPO_ROOT, name)));
    }
    const compiled = await readFile(handlerSpec.slice(0, handlerSpec.lastIndexOf('#')), 'utf8');
    expect(compiled).toMatch(/^import \{ ClientEventHandler \} from '@restpipe\/client';/m);
    expect(compiled).toMatch(/^export class FileHandlers extends ClientEventHandler/m);
  });

  it("answers the example's methods through a real server's gateway", async () => {
    const files = join(base, 'files');
    await mkdir(join(files, 'docs'), { recursive: true });
    await writeFile(join(files, 'docs', 'motd'), 'welcome to branch-01\n');
    // Where "files//..%2Fsecret.txt" (one argument, "../secret.txt") would lead without the example's check.
    await writeFile(join(base, 'secret.txt'), 'not for the gateway');
    const server = await startServer();
    // The executable npm linked into the project, started from there.
    const client = spawnNode(
      join(project, 'node_modules', '.bin', 'restpipe-client'),
      await clientEnv(server.pipeAddress.port, 'branch-01', { [VAR]: handlerSpec, FILES_ROOT: files }),
      { cwd: project },
    );
    await client.waitForLog('connected to the server');
    const http = httpClient();
    const gateway = `${server.gatewayAddress}/client/branch-01`;

    const notes = await http('POST', `${gateway}/notes`, { body: JSON.stringify({ text: 'hi' }), headers: { 'content-type': 'application/json' } });
    expect(notes.status, notes.text).toBe(200);
    expect(notes.code).toBe(0);
    expect(notes.json()).toEqual({ from: 'localhost', got: { text: 'hi' } });

    const motd = await http('GET', `${gateway}/files//docs/motd`);
    expect(motd.status, motd.text).toBe(200);
    expect(motd.code).toBe(0);
    expect(motd.headers['content-type']).toBe('application/octet-stream');
    expect(motd.text).toBe('welcome to branch-01\n');

    const outside = await http('GET', `${gateway}/files//..%2Fsecret.txt`);
    expect(outside.status, outside.text).toBe(500);
    expect(outside.code).toBe(251);
    expect(outside.json<{ exception: { message: string } }>().exception.message).toBe('outside FILES_ROOT');
    expect(outside.text).not.toContain('not for the gateway');

    // "type": "module" loads it without Node's reparse warning.
    expect(client.stderr()).toBe('');
  });

  it('stops with exit 2 naming the cause under "type": "commonjs" (npm 11\'s `npm init -y`)', async () => {
    const folder = join(project, 'as-commonjs');
    await mkdir(join(folder, 'dist'), { recursive: true });
    await writeFile(join(folder, 'package.json'), JSON.stringify({ name: 'as-commonjs', type: 'commonjs' }));
    await copyFile(join(project, 'dist', 'handlers.js'), join(folder, 'dist', 'handlers.js'));
    const server = await startServer();
    const exit = await runToExit(CLIENT_CLI, await clientEnv(server.pipeAddress.port, 'branch-02', { [VAR]: './dist/handlers.js#FileHandlers' }), {
      cwd: folder,
    });
    expect(exit.code, exit.stderr).toBe(2);
    expect(exit.stderr).toContain('To load an ES module, set "type": "module"');
    expect(exit.stderr).toContain(
      'restpipe-client: RP_CONFIG: RP_EVENT_HANDLER_FQ_CLASS="./dist/handlers.js#FileHandlers": cannot import ./dist/handlers.js: Cannot use import statement outside a module',
    );
  });

  it('stops with exit 2 naming the package when the project did not install it', async () => {
    const folder = await tempDir('restpipe-no-install-');
    await writeFile(join(folder, 'package.json'), JSON.stringify({ name: 'no-install', type: 'module' }));
    await copyFile(join(project, 'dist', 'handlers.js'), join(folder, 'handlers.js'));
    const server = await startServer();
    const exit = await runToExit(CLIENT_CLI, await clientEnv(server.pipeAddress.port, 'branch-03', { [VAR]: './handlers.js#FileHandlers' }), { cwd: folder });
    expect(exit.code, exit.stderr).toBe(2);
    expect(exit.stderr).toContain(
      `restpipe-client: RP_CONFIG: RP_EVENT_HANDLER_FQ_CLASS="./handlers.js#FileHandlers": cannot import ./handlers.js: Cannot find package '@restpipe/client' imported from ${join(await realpath(folder), 'handlers.js')}`,
    );
  });
});
