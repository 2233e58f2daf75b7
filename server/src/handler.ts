/** Server-side handler base class, hooks base class and the example handler. */
import { BASE_HANDLER, EventHandler, type EventContext, type PostData } from '@restpipe/shared';

/**
 * Base of the server's event handlers: subclass it and add `<verb>_<noun>`
 * methods; `RP_EVENT_HANDLER_FQ_CLASS` names the subclass.
 */
export class ServerEventHandler extends EventHandler {
  static override readonly [BASE_HANDLER] = true;
}

/** The example handler the server runs when no other is configured. */
export class ServerExampleHandler extends ServerEventHandler {
  /** `GET /client/<name>/... → server`: `{"time_from_server": <epoch seconds>}` */
  get_time(_ctx: EventContext, _post: PostData): { time_from_server: number } {
    return { time_from_server: Date.now() / 1000 };
  }

  /** `GET .../cat//hello%20/world` → `{"result_from_server": "hello world"}` */
  get_cat(_ctx: EventContext, _post: PostData, ...parts: string[]): { result_from_server: string } {
    return { result_from_server: parts.join('') };
  }
}

/**
 * Connection hooks of the server: subclass and override, then name the class
 * in `RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS` (or pass an instance in
 * code). A hook that throws is logged and never breaks the pipe.
 */
export class ServerConnectionStateEvents {
  /** A client connected; `count` clients are connected now. */
  connection_added(_clientName: string, _count: number): void | Promise<void> {}
  /** A client disconnected; `count` clients are connected now. */
  connection_removed(_clientName: string, _count: number): void | Promise<void> {}
  /** Called every RP_SERVER_IDLE_HOOK_INTERVAL_S (60 s by default) while no client is connected: since when, for how many whole seconds. */
  idle(_since: Date, _seconds: number): void | Promise<void> {}
}
