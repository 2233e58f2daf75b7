#!/usr/bin/env node
/**
 * `restpipe-server`: runs the server node as the environment configures it
 * (README, "Options").
 */
import { createLogger, createStatsd, loadClass, nullStats, runNodeMain } from '@restpipe/shared';
import { loadServerConfig } from './config.js';
import { ServerConnectionStateEvents, ServerEventHandler, ServerExampleHandler } from './handler.js';
import { RestPipeServer } from './server.js';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write('usage: restpipe-server\n\nRuns the RestPipe server node; configure it with RP_ environment variables (see the README).\n');
  process.exit(0);
}

await runNodeMain('restpipe-server', async () => {
  const config = await loadServerConfig();
  const log = createLogger('restpipe-server', config.logLevel);
  const Handler = config.handlerClass ? await loadClass(config.handlerClass, ServerEventHandler, 'RP_EVENT_HANDLER_FQ_CLASS') : ServerExampleHandler;
  const Hooks = config.hooksClass
    ? await loadClass(config.hooksClass, ServerConnectionStateEvents, 'RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS')
    : ServerConnectionStateEvents;
  const stats = config.statsd ? await createStatsd(config.statsd, log) : nullStats;
  if (!config.statsd) log.info('statsd is off (RP_STATSD_HOST or RP_STATSD_PORT is empty)');
  else if (stats !== nullStats) log.info({ host: config.statsd.host, port: config.statsd.port, prefix: config.statsd.prefix }, 'sending metrics to statsd');
  const server = new RestPipeServer({ config, handler: new Handler(), hooks: new Hooks(), log, stats });
  await server.start();
  return {
    close: async () => {
      log.info('stopping: draining requests in flight');
      await server.close();
      await stats.close();
    },
  };
});
