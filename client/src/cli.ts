#!/usr/bin/env node
/**
 * `restpipe-client`: runs the client agent as the environment configures it
 * (README, "Options").
 */
import { createLogger, createStatsd, loadClass, nullStats, runNodeMain } from '@restpipe/shared';
import { loadClientConfig } from './config.js';
import { ClientConnectionStateEvents, ClientEventHandler, ClientExampleHandler } from './handler.js';
import { RestPipeClient } from './client.js';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write('usage: restpipe-client\n\nRuns the RestPipe client agent; configure it with RP_ environment variables (see the README).\n');
  process.exit(0);
}

await runNodeMain('restpipe-client', async () => {
  const config = await loadClientConfig();
  const log = createLogger('restpipe-client', config.logLevel);
  const Handler = config.handlerClass ? await loadClass(config.handlerClass, ClientEventHandler, 'RP_EVENT_HANDLER_FQ_CLASS') : ClientExampleHandler;
  const Hooks = config.hooksClass
    ? await loadClass(config.hooksClass, ClientConnectionStateEvents, 'RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS')
    : ClientConnectionStateEvents;
  const stats = config.statsd ? await createStatsd(config.statsd, log) : nullStats;
  if (!config.statsd) log.info('statsd is off (RP_STATSD_HOST or RP_STATSD_PORT is empty)');
  else if (stats !== nullStats) log.info({ host: config.statsd.host, port: config.statsd.port, prefix: config.statsd.prefix }, 'sending metrics to statsd');
  const client = new RestPipeClient({ config, handler: new Handler(), hooks: new Hooks(), log, stats });
  await client.start();
  return {
    close: async () => {
      log.info('stopping: draining requests in flight');
      await client.close();
      await stats.close();
    },
  };
});
