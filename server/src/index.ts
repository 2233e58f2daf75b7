/** The RestPipe server node: programmatic API. */
export { RestPipeServer, type ServerOptions } from './server.js';
export { loadServerConfig, SERVER_IDENTITY_FILES, type ServerConfig } from './config.js';
export { ServerEventHandler, ServerExampleHandler, ServerConnectionStateEvents } from './handler.js';
export { LocalClientRegistry, type ClientRegistry } from './registry.js';
// What a handler module imports besides its base class, so that installing
// @restpipe/server alone is enough to write and unit-test server handlers.
export type { EventContext, PostData, PeerInfo, HandlerResult, HandlerMethod, EventReplyTuple } from '@restpipe/shared';
export { createInProcessPair, type InProcessPair, type InProcessPairOptions, type PairTarget, type PairReply, type PairRequestOptions } from '@restpipe/shared';
