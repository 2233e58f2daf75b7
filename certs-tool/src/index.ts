/**
 * @restpipe/certs-tool: create and install the mutual-TLS identities of RestPipe nodes.
 * The `restpipe-certs` CLI is a thin layer over these functions.
 */
export type { Identity, CommonOptions } from './identities.js';
export {
  createCa,
  createServerIdentity,
  createClientIdentity,
  randomSerialHex,
  DEFAULT_CA_DAYS,
  DEFAULT_LEAF_DAYS,
  DEFAULT_CA_NAME,
} from './identities.js';
export { DEFAULT_KEY_BITS, MIN_KEY_BITS, MAX_KEY_BITS } from './keys.js';
export type { Role, IdentityFiles } from './validate.js';
export { validateIdentity, REQUIRED_USAGE } from './validate.js';
export {
  IDENTITY_FILES,
  CERT_PATH_ENV,
  DEFAULT_IDENTITY_DIR,
  resolveIdentityDir,
  installIdentity,
  writeIdentity,
} from './install.js';
export type { CertificateInfo } from './describe.js';
export { describeCertificate, formatCertificateInfo } from './describe.js';
export { KEY_FILE_MODE, CERT_FILE_MODE, DIR_MODE } from './files.js';
export type { CertsToolErrorCode } from './errors.js';
export {
  ERROR_CODES,
  exitCodeFor,
  CertsToolError,
  MissingFileError,
  NotPemError,
  EncryptedKeyError,
  KeyMismatchError,
  WrongCaError,
  NotCaError,
  ExpiredError,
  NotYetValidError,
  WrongUsageError,
  FileExistsError,
  WriteFailedError,
  InvalidArgumentError,
  UsageError,
  InternalError,
} from './errors.js';
