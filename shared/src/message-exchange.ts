/**
 * The message exchange of one connection. It lives in `pipe/` with its
 * parts; this module keeps the name other modules import it by.
 */
export { MessageExchange, type MessageExchangeOptions, type MessageExchangeEvents, type ExchangeState, type PipeLimits } from './pipe/exchange.js';
export type { OutgoingRequest, OutgoingNotification, ReplyResult, EventHeader } from './pipe/outgoing-calls.js';
export type { PipeRole } from './pipe/request-ids.js';
export type { Pipe, InFlight } from './pipe/pipe.js';
export { errorBody } from './pipe/incoming-calls.js';
