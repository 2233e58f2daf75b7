#!/usr/bin/env node
/**
 * `restpipe-server`: runs the server node as the environment configures it
 * (README, "Options"); `--check-config`, `--version`, `--help`.
 */
import { runNodeCli } from '@restpipe/shared';
import { checkClusterSettings, loadServerConfig, SERVER_IDENTITY_FILES } from './config.js';
import { ServerConnectionStateEvents, ServerEventHandler, ServerExampleHandler } from './handler.js';
import { RestPipeServer } from './server.js';

await runNodeCli({
  program: 'restpipe-server',
  node: 'server',
  summary: 'Runs the RestPipe server node',
  packageJson: new URL('../package.json', import.meta.url),
  loadConfig: () => loadServerConfig(),
  handler: { base: ServerEventHandler, example: ServerExampleHandler },
  hooks: { base: ServerConnectionStateEvents, variable: 'RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS' },
  // crl.pem: the revocation list restpipe-certs installs beside the identity.
  identity: { files: SERVER_IDENTITY_FILES, variable: 'RP_SERVER_CERT_PATH', usage: 'serverAuth', crlFile: 'crl.pem' },
  describe: (config) => `pipe ${config.bindInterface}:${config.bindPort}`,
  checkSettings: (config) => checkClusterSettings(config),
  start: async (parts) => {
    const server = new RestPipeServer(parts);
    await server.start();
    return server;
  },
});
