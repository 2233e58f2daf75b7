#!/usr/bin/env node
/**
 * `restpipe-client`: runs the client agent as the environment configures it
 * (README, "Options").
 */
import { runNodeCli } from '@restpipe/shared';
import { RestPipeClient } from './client.js';
import { loadClientConfig } from './config.js';
import { ClientConnectionStateEvents, ClientEventHandler, ClientExampleHandler } from './handler.js';

await runNodeCli({
  program: 'restpipe-client',
  summary: 'Runs the RestPipe client agent',
  loadConfig: () => loadClientConfig(),
  handler: { base: ClientEventHandler, example: ClientExampleHandler },
  hooks: { base: ClientConnectionStateEvents, variable: 'RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS' },
  start: async (parts) => {
    const client = new RestPipeClient(parts);
    await client.start();
    return client;
  },
});
