/**
 * Handler classes named by `RP_EVENT_HANDLER_FQ_CLASS` (`module#Class`):
 * the real executables load them from a path or a package and answer real
 * requests with them; a class that does not extend the node's base handler,
 * a missing export or module, or a malformed name stops the executable with
 * exit 2 and a message naming the variable. The programmatic API takes an
 * instance instead.
 */
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClientEventHandler } from '@restpipe/client';
import { ServerConnectionStateEvents, ServerEventHandler } from '@restpipe/server';
import { ConfigError, loadClass } from '@restpipe/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { testPki } from './helpers/identities.js';
import { closeAll, httpClient, startClient, startPair, startServer } from './helpers/pipe.js';
import { CLIENT_CLI, REPO_ROOT, SERVER_CLI, installedIdentity, runToExit, spawnNode, tempDir } from './helpers/node-process.js';

afterEach(closeAll);

const HANDLERS = './test/fixtures/handlers.mjs';
const VAR = 'RP_EVENT_HANDLER_FQ_CLASS';

/** The real restpipe-server with `env`, its identity installed; resolves once the pipe listens. */
async function serverCli(env: Record<string, string>, opts: { cwd?: string } = {}) {
  const pki = await testPki();
  const node = spawnNode(
    SERVER_CLI,
    {
      RP_SERVER_CERT_PATH: await installedIdentity('server', pki.server),
      RP_SERVER_BIND_INTERFACE: '127.0.0.1',
      RP_SERVER_BIND_PORT: '0',
      RP_SERVER_GATEWAY_PORT: '0',
      RP_STATSD_HOST: '',
      RP_LOG_LEVEL: 'info',
      ...env,
    },
    opts,
  );
  const listening = await node.waitForLog('pipe listening for clients');
  return { node, port: listening['port'] as number };
}

async function expectConfigExit(cli: string, env: Record<string, string>, message: RegExp) {
  const run = await runToExit(cli, {
    RP_SERVER_BIND_PORT: '0',
    RP_SERVER_GATEWAY_PORT: '0',
    RP_CLIENT_GATEWAY_PORT: '0',
    RP_STATSD_HOST: '',
    RP_LOG_LEVEL: 'info',
    ...env,
  });
  expect(run.code, run.stderr).toBe(2);
  const lines = run.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(message);
  expect(run.stdout).not.toMatch(/listening/);
}

describe('the real restpipe-server with RP_EVENT_HANDLER_FQ_CLASS', () => {
  it('answers a real client with the named class from a path', async () => {
    const { port } = await serverCli({ [VAR]: `${HANDLERS}#FileHandlers` });
    const client = await startClient({ port }, { name: 'branch-01' });
    const http = httpClient();
    const hello = await http('GET', `${client.gatewayAddress}/server/hello//a%20b/c`);
    expect(hello.status).toBe(200);
    expect(hello.code).toBe(0);
    expect(hello.json()).toEqual({ hello: 'branch-01', from: 'FileHandlers', args: ['a b', 'c'] });
    // The example handler is not there any more.
    const time = await http('GET', `${client.gatewayAddress}/server/time`);
    expect(time.status).toBe(404);
    expect(time.code).toBe(255);
  });

  it('loads a class from a package installed beside the application', async () => {
    const app = await tempDir('restpipe-app-');
    const pkg = join(app, 'node_modules', 'site-handlers');
    await mkdir(pkg, { recursive: true });
    await mkdir(join(app, 'node_modules', '@restpipe'), { recursive: true });
    // The application's own @restpipe/server is the one the executable runs.
    await symlink(join(REPO_ROOT, 'server'), join(app, 'node_modules', '@restpipe', 'server'), 'dir');
    await writeFile(join(pkg, 'package.json'), JSON.stringify({ name: 'site-handlers', type: 'module', exports: { './handlers': './handlers.js' } }));
    await writeFile(
      join(pkg, 'handlers.js'),
      "import { ServerEventHandler } from '@restpipe/server';\nexport class SiteHandlers extends ServerEventHandler {\n  get_site() { return { site: 'from a package' }; }\n}\n",
    );
    const { port } = await serverCli({ [VAR]: 'site-handlers/handlers#SiteHandlers' }, { cwd: app });
    const client = await startClient({ port });
    const http = httpClient();
    const res = await http('GET', `${client.gatewayAddress}/server/site`);
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ site: 'from a package' });
  });

  it('exits 2 for a class that does not extend ServerEventHandler', async () => {
    await expectConfigExit(
      SERVER_CLI,
      { [VAR]: `${HANDLERS}#NotAHandler` },
      /^restpipe-server: RP_CONFIG: RP_EVENT_HANDLER_FQ_CLASS=".*#NotAHandler": NotAHandler must extend ServerEventHandler$/,
    );
  });

  it('exits 2 for a client handler given to the server', async () => {
    await expectConfigExit(
      SERVER_CLI,
      { [VAR]: `${HANDLERS}#ClientFileHandlers` },
      /RP_EVENT_HANDLER_FQ_CLASS=".*#ClientFileHandlers": ClientFileHandlers must extend ServerEventHandler$/,
    );
  });

  it('exits 2 for a missing export, naming what the module does export', async () => {
    await expectConfigExit(
      SERVER_CLI,
      { [VAR]: `${HANDLERS}#Missing` },
      /RP_EVENT_HANDLER_FQ_CLASS="\.\/test\/fixtures\/handlers\.mjs#Missing": \.\/test\/fixtures\/handlers\.mjs exports no class named Missing \(it exports ClientFileHandlers, FileHandlers, NotAHandler\)$/,
    );
    await expectConfigExit(SERVER_CLI, { [VAR]: `${HANDLERS}#notAClass` }, /RP_EVENT_HANDLER_FQ_CLASS=".*#notAClass": .* exports no class named notAClass/);
  });

  it('exits 2 for a module that cannot be imported', async () => {
    await expectConfigExit(
      SERVER_CLI,
      { [VAR]: './test/fixtures/no-such-file.mjs#FileHandlers' },
      /RP_EVENT_HANDLER_FQ_CLASS="\.\/test\/fixtures\/no-such-file\.mjs#FileHandlers": cannot import \.\/test\/fixtures\/no-such-file\.mjs: Cannot find module/,
    );
    await expectConfigExit(
      SERVER_CLI,
      { [VAR]: 'no-such-package/handlers#FileHandlers' },
      /RP_EVENT_HANDLER_FQ_CLASS="no-such-package\/handlers#FileHandlers": cannot import no-such-package\/handlers: Cannot find package 'no-such-package'/,
    );
  });

  it('exits 2 for a name without #Class', async () => {
    await expectConfigExit(
      SERVER_CLI,
      { [VAR]: HANDLERS },
      /RP_EVENT_HANDLER_FQ_CLASS="\.\/test\/fixtures\/handlers\.mjs" is not valid: expected <module>#<ExportedClass>/,
    );
    await expectConfigExit(SERVER_CLI, { [VAR]: `${HANDLERS}#` }, /RP_EVENT_HANDLER_FQ_CLASS=".*#" is not valid: expected <module>#<ExportedClass>/);
  });
});

describe('the real restpipe-client with RP_EVENT_HANDLER_FQ_CLASS', () => {
  it('answers the server with the named class', async () => {
    const server = await startServer();
    const pki = await testPki();
    const client = spawnNode(CLIENT_CLI, {
      RP_CLIENT_CERT_PATH: await installedIdentity('client', await pki.client('branch-07')),
      RP_CLIENT_TARGET_HOSTNAME: 'localhost',
      RP_CLIENT_TARGET_PORT: String(server.pipeAddress.port),
      RP_CLIENT_GATEWAY_PORT: '0',
      RP_STATSD_HOST: '',
      RP_LOG_LEVEL: 'info',
      [VAR]: `${HANDLERS}#ClientFileHandlers`,
    });
    await client.waitForLog('connected to the server');
    const http = httpClient();
    const res = await http('GET', `${server.gatewayAddress}/client/branch-07/hello`);
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ hello: 'localhost', from: 'ClientFileHandlers' });
  });

  it('exits 2 for a server handler given to the client', async () => {
    await expectConfigExit(
      CLIENT_CLI,
      { [VAR]: `${HANDLERS}#FileHandlers` },
      /^restpipe-client: RP_CONFIG: RP_EVENT_HANDLER_FQ_CLASS=".*#FileHandlers": FileHandlers must extend ClientEventHandler$/,
    );
  });
});

describe('loadClass', () => {
  it('returns the class, which the programmatic API takes as an instance', async () => {
    const Handlers = await loadClass(`${HANDLERS}#FileHandlers`, ServerEventHandler, VAR);
    const { client } = await startPair({ server: { handler: new Handlers() } });
    const res = await httpClient()('GET', `${client.gatewayAddress}/server/hello`);
    expect(res.json()).toEqual({ hello: 'agent-1', from: 'FileHandlers', args: [] });
  });

  it('takes an absolute path', async () => {
    const Handlers = await loadClass(`${join(REPO_ROOT, 'test', 'fixtures', 'handlers.mjs')}#ClientFileHandlers`, ClientEventHandler, VAR);
    expect(Handlers.prototype).toBeInstanceOf(ClientEventHandler);
  });

  it('names a second copy of the base class as the likely cause', async () => {
    const err = await loadClass('./test/fixtures/impostor-handlers.mjs#Impostor', ServerEventHandler, VAR).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toBe(
      'RP_EVENT_HANDLER_FQ_CLASS="./test/fixtures/impostor-handlers.mjs#Impostor": Impostor extends a different copy of ServerEventHandler; the module must import the same RestPipe package this node runs (two copies are installed)',
    );
  });

  it('refuses the base class itself, and checks hooks classes the same way', async () => {
    await expect(loadClass(`./server/dist/index.js#ServerEventHandler`, ServerEventHandler, VAR)).rejects.toThrow(
      /ServerEventHandler must extend ServerEventHandler/,
    );
    await expect(loadClass(`${HANDLERS}#FileHandlers`, ServerConnectionStateEvents, 'RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS')).rejects.toThrow(
      'RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS="./test/fixtures/handlers.mjs#FileHandlers": FileHandlers must extend ServerConnectionStateEvents',
    );
  });
});
