/** The server's settings, from `RP_` environment variables (see README, "Options"). */
import {
  Env,
  freezeConfig,
  layeredEnv,
  readCommonConfig,
  readPort,
  type CommonConfig,
  type EnvSource,
  type GatewayAddress,
  type IdentityFileNames,
} from '@restpipe/shared';

/** File names in `RP_SERVER_CERT_PATH`, as `restpipe-certs set-identity server` installs them. */
export const SERVER_IDENTITY_FILES: IdentityFileNames = Object.freeze({
  key: 'restpipe.server.key.pem',
  cert: 'restpipe.server.crt.pem',
  ca: 'ca.crt.pem',
});

export interface ServerConfig extends CommonConfig {
  /** `RP_SERVER_BIND_INTERFACE`: where the pipe listens. @default '0.0.0.0' */
  readonly bindInterface: string;
  /** `RP_SERVER_BIND_PORT`: the pipe's TLS port. @default 1234 */
  readonly bindPort: number;
  /** `RP_SERVER_CERT_PATH`: folder of the server's identity. @default '/etc/restpipe/server' */
  readonly certPath: string;
  /** `RP_SERVER_GATEWAY_SOCKET`, else `RP_SERVER_GATEWAY_HOST`:`RP_SERVER_GATEWAY_PORT`. @default 127.0.0.1:8002 */
  readonly gateway: GatewayAddress;
  /** `RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS`: hooks class, `module#Class`. */
  readonly hooksClass: string | undefined;
  /** `RP_SERVER_IDLE_HOOK_INTERVAL_S`: how often `idle` fires while no client is connected. @default 60000 */
  readonly idleHookIntervalMs: number;
  /** `RP_SERVER_HANDSHAKE_TIMEOUT_S`: a TLS handshake not done by then is dropped. @default 10000 */
  readonly handshakeTimeoutMs: number;
}

/** Resolves the server's config from the environment (and the user config module). */
export async function loadServerConfig(source: EnvSource = process.env): Promise<ServerConfig> {
  const env = new Env(await layeredEnv(source, 'RP_SERVER_USER_CONFIG_MODULE'));
  const socket = env.optional('RP_SERVER_GATEWAY_SOCKET');
  const gatewayTcp = { host: env.nonEmpty('RP_SERVER_GATEWAY_HOST', '127.0.0.1'), port: readPort(env, 'RP_SERVER_GATEWAY_PORT', 8002) };
  return freezeConfig({
    ...readCommonConfig(env),
    bindInterface: env.nonEmpty('RP_SERVER_BIND_INTERFACE', '0.0.0.0'),
    bindPort: readPort(env, 'RP_SERVER_BIND_PORT', 1234),
    certPath: env.nonEmpty('RP_SERVER_CERT_PATH', '/etc/restpipe/server'),
    // Host and port are checked even when the socket replaces them.
    gateway: socket ? { path: socket } : gatewayTcp,
    hooksClass: env.optional('RP_SERVER_CONNECTION_STATE_CHANGE_EVENT_CLASS'),
    idleHookIntervalMs: env.secondsAsMs('RP_SERVER_IDLE_HOOK_INTERVAL_S', 60, 0.01, 86400),
    handshakeTimeoutMs: env.secondsAsMs('RP_SERVER_HANDSHAKE_TIMEOUT_S', 10, 0.1, 600),
  });
}
