/** What both RestPipe nodes share: exchange, dispatcher, gateway, config, stats, TLS helpers. */
export { EventCode, EVENT_CODES, httpStatusForEventCode, type EventCodeName, type EventCodeEntry } from './event-codes.js';
export { ERROR_REGISTRY, ERROR_CODES, isErrorCode, type ErrorCode, type ErrorCodeEntry } from './error-codes.js';
export {
  RestPipeError,
  BadRequestError,
  BodyTooLargeError,
  UnknownClientError,
  PeerNotConnectedError,
  DeadlineExceededError,
  PipeBrokenError,
  InstanceGoneError,
  ClusterUnavailableError,
  ShuttingDownError,
  OverloadedError,
  InvalidNounError,
  NoRouteError,
  InternalError,
  ProtocolError,
  ConfigError,
  IdentityError,
  IdentityFilesError,
  errorFromWire,
  type WireError,
} from './errors.js';
export {
  EventHandler,
  BASE_HANDLER,
  isHandlerClass,
  type EventContext,
  type PostData,
  type PeerInfo,
  type HandlerResult,
  type HandlerMethod,
  type EventReplyTuple,
} from './handler.js';
export {
  Dispatcher,
  FALLBACK_METHOD,
  type ParameterSpec,
  VERBS,
  isValidNoun,
  handlerMethodName,
  encodeResult,
  exceptionReply,
  type IncomingEvent,
  type EventReply,
  type EventRouter,
  type RouteInfo,
  type Verb,
  type Route,
} from './dispatcher.js';
export {
  MessageExchange,
  errorBody,
  type MessageExchangeOptions,
  type OutgoingRequest,
  type ReplyResult,
  type PipeRole,
  type ExchangeState,
  type PipeLimits,
  type OutgoingNotification,
  type EventHeader,
  type Pipe,
  type InFlight,
} from './message-exchange.js';
export { InboundStream, OutboundStream, isBodyStream, collectBody } from './pipe/streams.js';
export { parseQuery, HandlerContext } from './event-context.js';
export { parseEventPath, splitClientName, type EventPath } from './event-path.js';
export {
  createGateway,
  listenGateway,
  EVENT_CODE_HEADER,
  TIMEOUT_HEADER,
  type GatewayOptions,
  type GatewayAddress,
  type CallerState,
  type GatewaySide,
} from './gateway.js';
export {
  Env,
  readCommonConfig,
  readSettings,
  gatewayAddress,
  userConfigModuleVariable,
  layeredEnv,
  toImportSpecifier,
  importUserModule,
  showSetting,
  freezeConfig,
  type CommonConfig,
  type StatsdConfig,
  type EnvSource,
} from './config.js';
export {
  SETTINGS,
  LOG_LEVELS,
  LOG_FORMATS,
  settingsOf,
  findSetting,
  defaultCell,
  acceptedValues,
  settingsHelp,
  formatSettingsHelp,
  type Setting,
  type NumberSetting,
  type TextSetting,
  type EnumSetting,
  type FlagSetting,
  type SettingName,
  type SettingNodes,
  type NodeName,
  type SettingValues,
  type SettingFields,
  type SettingHelp,
  type LogLevel,
  type LogFormat,
} from './settings.js';
export { nullStats, teeStats, type Stats } from './stats.js';
export {
  PrometheusStats,
  registerMetricsRoute,
  METRIC_MAPPINGS,
  UNMAPPED_FAMILY,
  METRICS_PATH,
  METRICS_CONTENT_TYPE,
  DURATION_BUCKETS_S,
  LABEL_CAPS,
  OTHER_LABEL_VALUE,
  labelOf,
  type MetricMapping,
  type MetricType,
  type PrometheusStatsOptions,
} from './prometheus.js';
export { createStatsd, STATSD_FLUSH_INTERVAL_MS, type StatsdOptions } from './statsd.js';
export { CountingStats } from './counting-stats.js';
export { selectClients, type FanOutEntry } from './fan-out.js';
export {
  loadIdentity,
  certificateName,
  allowsUsage,
  tlsVersionOptions,
  isCrlVerifyCode,
  describeVerifyCode,
  peerChain,
  TLS12_CIPHERS,
  CRL_FILE,
  SERVER_AUTH_OID,
  CLIENT_AUTH_OID,
  type TlsIdentity,
  type IdentityFileNames,
  type TlsMinVersion,
} from './tls.js';
export { parseCrl, crlPemBlocks, crlSignedBy, serialKey, nameText, CrlError, type Crl } from './crl.js';
export { TrustStore, TrustError, type TrustProblem, type TrustCheckOptions, type TrustedCa } from './trust-store.js';
export { prepareIdentity, identityStatus, secondsUntil, type LoadedIdentity, type IdentityStatus, type IdentityLabels } from './identity.js';
export { ExpiryMonitor, type ExpiryMonitorOptions } from './expiry-monitor.js';
export { IdentityWatch, IDENTITY_WATCH_DEBOUNCE_MS } from './identity-watch.js';
export { deriveTicketKeys, sessionIdContext, SESSION_TIMEOUT_S } from './session-tickets.js';
export { loadClass } from './handler-loader.js';
export { createLogger, type Logger } from './logger.js';
export { runNodeMain, runNodeCli, EXIT_CONFIG, EXIT_FAILURE, type RunningNode, type NodeCliSpec, type NodeCliConfig, type NodeParts } from './node-main.js';
export { checkIdentityFiles, type IdentityCheck, type CheckedIdentity } from './identity-check.js';
export { NodeKit, type NodeKitOptions, type NodeKitConfig, type NodeGatewayOptions, type IdentityReload, type ReloadTrigger } from './node-kit.js';
export {
  createInProcessPair,
  duplexPair,
  type InProcessPair,
  type InProcessPairOptions,
  type PairTarget,
  type PairReply,
  type PairRequestOptions,
} from './in-process-pair.js';
export { callHook } from './call-hook.js';
