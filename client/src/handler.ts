/** Client-side handler base class, hooks base class and the example handler. */
import { BASE_HANDLER, EventHandler, type EventContext, type PostData } from '@restpipe/shared';

/**
 * Base of the client's event handlers: subclass it and add `<verb>_<noun>`
 * methods; `RP_EVENT_HANDLER_FQ_CLASS` names the subclass.
 */
export class ClientEventHandler extends EventHandler {
  static override readonly [BASE_HANDLER] = true;
}

/** The example handler the client runs when no other is configured. */
export class ClientExampleHandler extends ClientEventHandler {
  /** `{"time_from_client": <epoch seconds>}` */
  get_time(_ctx: EventContext, _post: PostData): { time_from_client: number } {
    return { time_from_client: Date.now() / 1000 };
  }

  /** `GET .../cat//hello%20/world` → `{"result_from_client": "hello world"}` */
  get_cat(_ctx: EventContext, _post: PostData, ...parts: string[]): { result_from_client: string } {
    return { result_from_client: parts.join('') };
  }
}

/**
 * Connection hooks of the client: subclass and override, then name the class
 * in `RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS` (or pass an instance in
 * code). A hook that throws is logged and never breaks the pipe.
 */
export class ClientConnectionStateEvents {
  /** Connected after `attempts` tries; `lastDisconnectedAt` is when the previous pipe dropped. */
  connect_success(_attempts: number, _lastDisconnectedAt: Date | undefined): void | Promise<void> {}
  /** Try number `attempts` failed with `error`; another follows after a backoff. */
  connect_fail(_attempts: number, _error: Error): void | Promise<void> {}
}
