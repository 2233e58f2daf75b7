// Server connection hooks for the agents test: keep the number of connected
// clients where the probe (probe.js) can report it.
//   RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS=<abs>/bench/lib/hooks.js#BenchServerHooks
import { ServerConnectionStateEvents } from '@restpipe/server';

globalThis.__restpipeBench ??= { clients: 0, added: 0, removed: 0 };

export class BenchServerHooks extends ServerConnectionStateEvents {
  connection_added(_name, count) {
    globalThis.__restpipeBench.clients = count;
    globalThis.__restpipeBench.added++;
  }
  connection_removed(_name, count) {
    globalThis.__restpipeBench.clients = count;
    globalThis.__restpipeBench.removed++;
  }
}
