/**
 * @restpipe/certs-tool: create and install the mutual-TLS identities of RestPipe nodes.
 * The `restpipe-certs` CLI is a thin layer over these functions.
 */
export type { Identity, CommonOptions, RenewedIdentity } from './identities.js';
export {
  createCa,
  createServerIdentity,
  createClientIdentity,
  renewIdentity,
  randomSerialHex,
  DEFAULT_CA_DAYS,
  DEFAULT_LEAF_DAYS,
  DEFAULT_CA_NAME,
} from './identities.js';
export type { KeyType } from './keys.js';
export { DEFAULT_KEY_BITS, MIN_KEY_BITS, MAX_KEY_BITS, KEY_TYPES, DEFAULT_KEY_TYPE, EC_CURVE } from './keys.js';
export type { RevocationReason, RevokedCertificate, CrlInfo, VerifiedCrl, VerifyCrlOptions, CreateCrlOptions } from './crl.js';
export {
  createCrl,
  verifyCrl,
  parseCrls,
  findRevocation,
  normalizeSerial,
  REVOCATION_REASONS,
  DEFAULT_NEXT_UPDATE_DAYS,
  MAX_NEXT_UPDATE_DAYS,
} from './crl.js';
export type { RevocationEntry, RevocationState, RevocationTarget, Revoked, CrlIssued, IssueOptions } from './revocation.js';
export { REVOCATION_FILES, readRevocationState, revokeCertificate, reissueCrl } from './revocation.js';
export type { Role, IdentityFiles } from './validate.js';
export { validateIdentity, REQUIRED_USAGE } from './validate.js';
export {
  IDENTITY_FILES,
  CERT_PATH_ENV,
  DEFAULT_IDENTITY_DIR,
  resolveIdentityDir,
  SERVER_CRL_FILE,
  installIdentity,
  installCrl,
  writeIdentity,
} from './install.js';
export type { CertificateInfo } from './describe.js';
export { describeCertificate, formatCertificateInfo, formatCrlInfo } from './describe.js';
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
  RevokedError,
  CrlStaleError,
  BadStateError,
  FileExistsError,
  WriteFailedError,
  InvalidArgumentError,
  UsageError,
  InternalError,
} from './errors.js';
