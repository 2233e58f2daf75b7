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
import { parseTargets, type Target } from './targets.js';

/** File names in `RP_CLIENT_CERT_PATH`, as `restpipe-certs set-identity client` installs them. */
export const CLIENT_IDENTITY_FILES: IdentityFileNames = Object.freeze({
  key: 'restpipe.client.key.pem',
  cert: 'restpipe.client.crt.pem',
  ca: 'ca.crt.pem',
});

/**
 * The client's config: the shared settings, one field per `client` line of
 * `SETTINGS` (shared/src/settings.ts: variable, default, bounds, meaning),
 * `gateway` from `RP_CLIENT_GATEWAY_*` and `targets` from `RP_CLIENT_TARGET_*`.
 */
export interface ClientConfig extends CommonConfig, SettingFields<'client'> {
  /** `RP_CLIENT_GATEWAY_SOCKET`, else `RP_CLIENT_GATEWAY_HOST`:`RP_CLIENT_GATEWAY_PORT`. @default 127.0.0.1:8001 */
  readonly gateway: GatewayAddress;
  /**
   * The servers to dial, as `RP_CLIENT_TARGET_HOSTNAME` lists them (one, or
   * the instances of a cluster), each with its port and the name its
   * certificate must carry (`RP_CLIENT_TARGET_SERVERNAME`, else its own
   * host). The client shuffles them. @default localhost:1234
   */
  readonly targets: readonly Target[];
}

/** Resolves the client's config from the environment (and the user config module). */
export async function loadClientConfig(source: EnvSource = process.env): Promise<ClientConfig> {
  const env = new Env(await layeredEnv(source, userConfigModuleVariable('client')));
  const common = readCommonConfig(env);
  const { 'gateway.host': host, 'gateway.port': port, 'gateway.path': socket, ...own } = readSettings(env, 'client');
  // The list was checked by its setting (the variable is named in the error); this cannot throw.
  const targets = parseTargets(own.targetHostname, own.targetPort, own.targetServername);
  return freezeConfig({
    ...common,
    ...own,
    gateway: gatewayAddress(host, port, socket),
    targets,
    // The ceiling of any wait is never below that of the first.
    reconnectMaxMs: Math.max(own.reconnectInitialMs, own.reconnectMaxMs),
  });
}
