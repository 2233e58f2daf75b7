/** The RestPipe client agent: programmatic API. */
export { RestPipeClient, type ClientOptions, type ClientState, type ClientStatusEvent } from './client.js';
export { loadClientConfig, CLIENT_IDENTITY_FILES, type ClientConfig } from './config.js';
export { ClientEventHandler, ClientExampleHandler, ClientConnectionStateEvents } from './handler.js';
export { Backoff, type BackoffOptions } from './backoff.js';
export { parseTargets, targetAddress, TargetRotation, type Target } from './targets.js';
// What a handler module imports besides its base class, so that installing
// @restpipe/client alone is enough to write and unit-test client handlers.
export type { EventContext, PostData, PeerInfo, HandlerResult, HandlerMethod, EventReplyTuple } from '@restpipe/shared';
export { createInProcessPair, type InProcessPair, type InProcessPairOptions, type PairTarget, type PairReply, type PairRequestOptions } from '@restpipe/shared';
