/** The RestPipe server node: programmatic API. */
export { RestPipeServer, type ServerOptions } from './server.js';
export { loadServerConfig, SERVER_IDENTITY_FILES, type ServerConfig } from './config.js';
export { ServerEventHandler, ServerExampleHandler, ServerConnectionStateEvents } from './handler.js';
export { LocalClientRegistry, type ClientRegistry } from './registry.js';
