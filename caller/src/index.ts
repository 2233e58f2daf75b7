/**
 * @restpipe/caller: typed calls to a local RestPipe gateway (undici).
 *
 * Depends on no other RestPipe package at run time: applications install it
 * alone. See docs/caller.md.
 */
export {
  createCaller,
  type AnyVerb,
  type BodilessVerb,
  type BodyVerb,
  type CallOptions,
  type CallWithBodyOptions,
  type Caller,
  type CallerOptions,
  type DataCallOptions,
  type FanoutBodilessVerb,
  type FanoutBodyVerb,
  type FanoutCallOptions,
  type FanoutTarget,
  type GatewayLocation,
  type NotifyCallOptions,
  type RawCallOptions,
  type RawReply,
  type Target,
  type Verb,
} from './caller.js';
export type { RequestBody } from './body.js';
export type { QueryParams } from './event-url.js';
export type { FanoutEntry, FanoutResult } from './fan-out.js';
export { EVENT_CODE_HEADER, EventCode, NO_EVENT_CODE, TIMEOUT_HEADER, eventCodeOf } from './event-codes.js';
export {
  BadReplyError,
  CALLER_ERROR_CODES,
  CallerClosedError,
  CallerError,
  CallerUsageError,
  PipeFailError,
  type PipeFailDetails,
  type RemoteError,
  type RemoteException,
} from './errors.js';
export { MAX_FAILURE_BODY_BYTES, raiseForException, type AnswerLike, type CallContext } from './raise-for-exception.js';
