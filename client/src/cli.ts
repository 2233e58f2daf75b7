#!/usr/bin/env node
/**
 * `restpipe-client`: runs the client agent as the environment configures it
 * (README, "Options"); `--check-config`, `--version`, `--help`.
 */
import { runNodeCli } from '@restpipe/shared';
import { RestPipeClient } from './client.js';
import { CLIENT_IDENTITY_FILES, loadClientConfig } from './config.js';
import { ClientConnectionStateEvents, ClientEventHandler, ClientExampleHandler } from './handler.js';
import { describeTargets } from './targets.js';

await runNodeCli({
  program: 'restpipe-client',
  node: 'client',
  summary: 'Runs the RestPipe client agent',
  packageJson: new URL('../package.json', import.meta.url),
  loadConfig: () => loadClientConfig(),
  handler: { base: ClientEventHandler, example: ClientExampleHandler },
  hooks: { base: ClientConnectionStateEvents, variable: 'RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS' },
  identity: { files: CLIENT_IDENTITY_FILES, variable: 'RP_CLIENT_CERT_PATH', usage: 'clientAuth', crlFile: 'crl.pem' },
  describe: (config) => describeTargets(config.targets),
  start: async (parts) => {
    const client = new RestPipeClient(parts);
    await client.start();
    return client;
  },
});
