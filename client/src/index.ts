/** The RestPipe client agent: programmatic API. */
export { RestPipeClient, type ClientOptions, type ClientState, type ClientStatusEvent } from './client.js';
export { loadClientConfig, CLIENT_IDENTITY_FILES, type ClientConfig } from './config.js';
export { ClientEventHandler, ClientExampleHandler, ClientConnectionStateEvents } from './handler.js';
export { Backoff, type BackoffOptions } from './backoff.js';
