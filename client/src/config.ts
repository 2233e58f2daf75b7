/** The client's settings, from `RP_` environment variables (see README, "Options"). */
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

/** File names in `RP_CLIENT_CERT_PATH`, as `restpipe-certs set-identity client` installs them. */
export const CLIENT_IDENTITY_FILES: IdentityFileNames = Object.freeze({
  key: 'restpipe.client.key.pem',
  cert: 'restpipe.client.crt.pem',
  ca: 'ca.crt.pem',
});

export interface ClientConfig extends CommonConfig {
  /** `RP_CLIENT_TARGET_HOSTNAME`: the server to dial. @default 'localhost' */
  readonly targetHostname: string;
  /** `RP_CLIENT_TARGET_PORT`: the server's pipe port. @default 1234 */
  readonly targetPort: number;
  /** `RP_CLIENT_TARGET_SERVERNAME`: the name the server's certificate must carry. @default the target hostname */
  readonly targetServername: string;
  /** `RP_CLIENT_CERT_PATH`: folder of the client's identity. @default '/etc/restpipe/client' */
  readonly certPath: string;
  /** `RP_CLIENT_GATEWAY_SOCKET`, else `RP_CLIENT_GATEWAY_HOST`:`RP_CLIENT_GATEWAY_PORT`. @default 127.0.0.1:8001 */
  readonly gateway: GatewayAddress;
  /** `RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS`: hooks class, `module#Class`. */
  readonly hooksClass: string | undefined;
  /** `RP_CLIENT_RECONNECT_INITIAL_S`: ceiling of the first reconnect wait. @default 500 */
  readonly reconnectInitialMs: number;
  /** `RP_CLIENT_RECONNECT_MAX_S`: ceiling of any reconnect wait. @default 30000 */
  readonly reconnectMaxMs: number;
  /** `RP_CLIENT_RECONNECT_STABLE_S`: a pipe up this long resets the backoff. @default 10000 */
  readonly reconnectStableMs: number;
  /** `RP_CLIENT_CONNECT_TIMEOUT_S`: one connection attempt (TCP + TLS) may take this long. @default 10000 */
  readonly connectTimeoutMs: number;
  /** `RP_CLIENT_CONNECT_WAIT_S`: while the pipe is down, the gateway waits this long for it (then 503). @default 20000 */
  readonly connectWaitMs: number;
}

/** Resolves the client's config from the environment (and the user config module). */
export async function loadClientConfig(source: EnvSource = process.env): Promise<ClientConfig> {
  const env = new Env(await layeredEnv(source, 'RP_CLIENT_USER_CONFIG_MODULE'));
  const socket = env.optional('RP_CLIENT_GATEWAY_SOCKET');
  const gatewayTcp = { host: env.nonEmpty('RP_CLIENT_GATEWAY_HOST', '127.0.0.1'), port: readPort(env, 'RP_CLIENT_GATEWAY_PORT', 8001) };
  const targetHostname = env.nonEmpty('RP_CLIENT_TARGET_HOSTNAME', 'localhost');
  const reconnectInitialMs = env.secondsAsMs('RP_CLIENT_RECONNECT_INITIAL_S', 0.5, 0.001, 60);
  return freezeConfig({
    ...readCommonConfig(env),
    targetHostname,
    targetPort: env.int('RP_CLIENT_TARGET_PORT', 1234, 1, 65535),
    targetServername: env.optional('RP_CLIENT_TARGET_SERVERNAME') ?? targetHostname,
    certPath: env.nonEmpty('RP_CLIENT_CERT_PATH', '/etc/restpipe/client'),
    // Host and port are checked even when the socket replaces them.
    gateway: socket ? { path: socket } : gatewayTcp,
    hooksClass: env.optional('RP_CLIENT_CONNECTION_STATE_CHANGE_EVENT_CLASS'),
    reconnectInitialMs,
    reconnectMaxMs: Math.max(reconnectInitialMs, env.secondsAsMs('RP_CLIENT_RECONNECT_MAX_S', 30, 0.01, 3600)),
    reconnectStableMs: env.secondsAsMs('RP_CLIENT_RECONNECT_STABLE_S', 10, 0, 3600),
    connectTimeoutMs: env.secondsAsMs('RP_CLIENT_CONNECT_TIMEOUT_S', 10, 0.1, 600),
    connectWaitMs: env.secondsAsMs('RP_CLIENT_CONNECT_WAIT_S', 20, 0, 3600),
  });
}
