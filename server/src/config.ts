/** The server's settings, from `RP_` environment variables (see README, "Options"). */
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

/** File names in `RP_SERVER_CERT_PATH`, as `restpipe-certs set-identity server` installs them. */
export const SERVER_IDENTITY_FILES: IdentityFileNames = Object.freeze({
  key: 'restpipe.server.key.pem',
  cert: 'restpipe.server.crt.pem',
  ca: 'ca.crt.pem',
});

/**
 * The server's config: the shared settings, one field per `server` line of
 * `SETTINGS` (shared/src/settings.ts: variable, default, bounds, meaning),
 * and `gateway` from `RP_SERVER_GATEWAY_*`.
 */
export interface ServerConfig extends CommonConfig, SettingFields<'server'> {
  /** `RP_SERVER_GATEWAY_SOCKET`, else `RP_SERVER_GATEWAY_HOST`:`RP_SERVER_GATEWAY_PORT`. @default 127.0.0.1:8002 */
  readonly gateway: GatewayAddress;
}

/** Resolves the server's config from the environment (and the user config module). */
export async function loadServerConfig(source: EnvSource = process.env): Promise<ServerConfig> {
  const env = new Env(await layeredEnv(source, userConfigModuleVariable('server')));
  const common = readCommonConfig(env);
  const { 'gateway.host': host, 'gateway.port': port, 'gateway.path': socket, ...own } = readSettings(env, 'server');
  return freezeConfig({ ...common, ...own, gateway: gatewayAddress(host, port, socket) });
}
