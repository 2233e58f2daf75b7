/** The server's settings, from `RP_` environment variables (see README, "Options"). */
import { accessSync, constants } from 'node:fs';
import {
  ConfigError,
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

/**
 * The cluster's settings that only make sense together, and its files
 * readable now: a typo fails the start (exit 2) and `--check-config`, not
 * every NATS reconnect. Throws `ConfigError`.
 */
export function checkClusterSettings(s: Pick<ServerConfig, 'natsUrl' | 'natsCa' | 'natsCert' | 'natsKey' | 'natsUser' | 'natsPassword' | 'natsCreds'>): void {
  const set = (v: string | undefined) => v !== undefined && v !== '';
  const cluster = set(s.natsUrl);
  const files: Array<[string, string | undefined]> = [
    ['RP_SERVER_NATS_CA', s.natsCa],
    ['RP_SERVER_NATS_CERT', s.natsCert],
    ['RP_SERVER_NATS_KEY', s.natsKey],
    ['RP_SERVER_NATS_CREDS', s.natsCreds],
  ];
  for (const [name, value] of [...files, ['RP_SERVER_NATS_USER', s.natsUser], ['RP_SERVER_NATS_PASSWORD', s.natsPassword]] as const) {
    if (set(value) && !cluster) throw new ConfigError(`${name} is set but RP_SERVER_NATS_URL is not: set the NATS servers, or unset ${name}`);
  }
  if (!cluster) return;
  if (set(s.natsCert) !== set(s.natsKey)) throw new ConfigError('RP_SERVER_NATS_CERT and RP_SERVER_NATS_KEY go together: set both or neither');
  if (set(s.natsUser) !== set(s.natsPassword)) throw new ConfigError('RP_SERVER_NATS_USER and RP_SERVER_NATS_PASSWORD go together: set both or neither');
  if (set(s.natsCreds) && set(s.natsUser)) throw new ConfigError('RP_SERVER_NATS_CREDS and RP_SERVER_NATS_USER are two ways to log in to NATS: set one');
  for (const [name, path] of files) {
    if (!set(path)) continue;
    try {
      accessSync(path as string, constants.R_OK);
    } catch (err) {
      throw new ConfigError(`${name}="${path}" cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
}
