// RestPipe server and client nodes as child processes (their CLIs, configured
// with RP_ variables like any deployment), with the bench probe preloaded so
// the bench can ask for memory after gc and record CPU profiles.
// `root` is the tree whose CLIs run; `lib` the bench/lib the probe, handlers
// and hooks come from (another tree's copy for `--against`, see against.js).
import { join } from 'node:path';
import { startChild, waitForPort, waitUntil } from './util.js';

export function restpipeEnv(extra = {}) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('RP_') || k === 'DEBUG') delete env[k];
  delete env.NODE_OPTIONS;
  return { ...env, RP_STATSD_HOST: '', RP_LOG_LEVEL: 'warn', ...extra };
}

function nodeArgs(root, lib, script, extraNodeArgs = []) {
  return ['--expose-gc', '--import', join(lib, 'probe.js'), ...extraNodeArgs, join(root, script)];
}

export async function startServer(
  root,
  ids,
  { pipePort, gatewayPort, env = {}, hooks = false, name = 'restpipe-server', nodeFlags = [], lib = join(root, 'bench/lib') },
) {
  const child = startChild(name, process.execPath, nodeArgs(root, lib, 'server/dist/cli.js', nodeFlags), {
    ipc: true,
    env: restpipeEnv({
      RP_SERVER_CERT_PATH: ids.serverDir,
      RP_SERVER_BIND_INTERFACE: '127.0.0.1',
      RP_SERVER_BIND_PORT: String(pipePort),
      RP_SERVER_GATEWAY_HOST: '127.0.0.1',
      RP_SERVER_GATEWAY_PORT: String(gatewayPort),
      RP_EVENT_HANDLER_FQ_CLASS: `${join(lib, 'handlers.js')}#BenchServerHandler`,
      ...(hooks ? { RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS: `${join(lib, 'hooks.js')}#BenchServerHooks` } : {}),
      ...env,
    }),
  });
  await waitForPort(gatewayPort, '127.0.0.1', 20_000, `${name} gateway`);
  return child;
}

export async function startClient(root, ids, { pipePort, gatewayPort, env = {}, name = 'restpipe-client', nodeFlags = [], lib = join(root, 'bench/lib') }) {
  const child = startChild(name, process.execPath, nodeArgs(root, lib, 'client/dist/cli.js', nodeFlags), {
    ipc: true,
    env: restpipeEnv({
      RP_CLIENT_CERT_PATH: ids.clientDir,
      RP_CLIENT_TARGET_HOSTNAME: 'localhost',
      RP_CLIENT_TARGET_PORT: String(pipePort),
      RP_CLIENT_GATEWAY_HOST: '127.0.0.1',
      RP_CLIENT_GATEWAY_PORT: String(gatewayPort),
      RP_EVENT_HANDLER_FQ_CLASS: `${join(lib, 'handlers.js')}#BenchClientHandler`,
      ...env,
    }),
  });
  await waitForPort(gatewayPort, '127.0.0.1', 20_000, `${name} gateway`);
  // The pipe is up when the client gateway answers through it.
  await waitUntil(
    () =>
      fetch(`http://127.0.0.1:${gatewayPort}/server/time`).then(
        (r) => r.ok,
        () => false,
      ),
    { timeoutMs: 20_000, intervalMs: 100, what: 'the RestPipe pipe to come up' },
  );
  return child;
}
