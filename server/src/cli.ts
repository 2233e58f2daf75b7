#!/usr/bin/env node
/**
 * `restpipe-server`: runs the server node as the environment configures it
 * (README, "Options").
 */
import { runNodeCli } from '@restpipe/shared';
import { loadServerConfig } from './config.js';
import { ServerConnectionStateEvents, ServerEventHandler, ServerExampleHandler } from './handler.js';
import { RestPipeServer } from './server.js';

await runNodeCli({
  program: 'restpipe-server',
  summary: 'Runs the RestPipe server node',
  loadConfig: () => loadServerConfig(),
  handler: { base: ServerEventHandler, example: ServerExampleHandler },
  hooks: { base: ServerConnectionStateEvents, variable: 'RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS' },
  start: async (parts) => {
    const server = new RestPipeServer(parts);
    await server.start();
    return server;
  },
});
