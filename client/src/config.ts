/** The client's settings, from `RP_` environment variables (see README, "Options"). */
import {
  Env,
  freezeConfig,
  layeredEnv,
  readCommonConfig,
  gatewayAddress,
  readSettings,
  userConfigModuleVariable,
  type CommonConfig,
  type EnvSource,
  type GatewayAddress,
  type IdentityFileNames,
  type SettingFields,
} from '@restpipe/shared';

/** File names in `RP_CLIENT_CERT_PATH`, as `restpipe-certs set-identity client` installs them. */
export const CLIENT_IDENTITY_FILES: IdentityFileNames = Object.freeze({
  key: 'restpipe.client.key.pem',
  cert: 'restpipe.client.crt.pem',
  ca: 'ca.crt.pem',
});

/**
 * The client's config: the shared settings, one field per `client` line of
 * `SETTINGS` (shared/src/settings.ts: variable, default, bounds, meaning),
 * and `gateway` from `RP_CLIENT_GATEWAY_*`.
 */
export interface ClientConfig extends CommonConfig, SettingFields<'client'> {
  /** `RP_CLIENT_GATEWAY_SOCKET`, else `RP_CLIENT_GATEWAY_HOST`:`RP_CLIENT_GATEWAY_PORT`. @default 127.0.0.1:8001 */
  readonly gateway: GatewayAddress;
}

/** Resolves the client's config from the environment (and the user config module). */
export async function loadClientConfig(source: EnvSource = process.env): Promise<ClientConfig> {
  const env = new Env(await layeredEnv(source, userConfigModuleVariable('client')));
  const common = readCommonConfig(env);
  const { 'gateway.host': host, 'gateway.port': port, 'gateway.path': socket, ...own } = readSettings(env, 'client');
  return freezeConfig({
    ...common,
    ...own,
    gateway: gatewayAddress(host, port, socket),
    // The ceiling of any wait is never below that of the first.
    reconnectMaxMs: Math.max(own.reconnectInitialMs, own.reconnectMaxMs),
  });
}
