/**
 * Errors raised by the certs tool. Every error is a {@link CertsToolError} with a stable
 * `code` (documented in docs/identities.md); one subclass per condition so callers can use
 * either `instanceof` or `err.code`.
 */

/** Every code a {@link CertsToolError} can carry. */
export const ERROR_CODES = [
  'RP_CERTS_MISSING_FILE',
  'RP_CERTS_NOT_PEM',
  'RP_CERTS_ENCRYPTED_KEY',
  'RP_CERTS_MISMATCH',
  'RP_CERTS_WRONG_CA',
  'RP_CERTS_NOT_CA',
  'RP_CERTS_EXPIRED',
  'RP_CERTS_NOT_YET_VALID',
  'RP_CERTS_WRONG_USAGE',
  'RP_CERTS_REVOKED',
  'RP_CERTS_CRL_STALE',
  'RP_CERTS_BAD_STATE',
  'RP_CERTS_EXISTS',
  'RP_CERTS_WRITE_FAILED',
  'RP_CERTS_INVALID_ARGUMENT',
  'RP_CERTS_USAGE',
  'RP_CERTS_INTERNAL',
] as const;

export type CertsToolErrorCode = (typeof ERROR_CODES)[number];

/** Base class: a readable one-line message plus a stable code. */
export class CertsToolError extends Error {
  override readonly name: string = 'CertsToolError';
  readonly code: CertsToolErrorCode;

  constructor(code: CertsToolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** An input file does not exist or cannot be read. */
export class MissingFileError extends CertsToolError {
  override readonly name = 'MissingFileError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_MISSING_FILE', message, options);
  }
}

/** The input is not a PEM certificate / private key of the expected kind. */
export class NotPemError extends CertsToolError {
  override readonly name = 'NotPemError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_NOT_PEM', message, options);
  }
}

/** The private key is passphrase-protected; nodes need an unencrypted key file. */
export class EncryptedKeyError extends CertsToolError {
  override readonly name = 'EncryptedKeyError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_ENCRYPTED_KEY', message, options);
  }
}

/** The private key does not belong to the certificate. */
export class KeyMismatchError extends CertsToolError {
  override readonly name = 'KeyMismatchError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_MISMATCH', message, options);
  }
}

/** The certificate was not signed by the given CA. */
export class WrongCaError extends CertsToolError {
  override readonly name = 'WrongCaError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_WRONG_CA', message, options);
  }
}

/** The certificate given as the CA is not a CA certificate (basicConstraints CA:TRUE). */
export class NotCaError extends CertsToolError {
  override readonly name = 'NotCaError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_NOT_CA', message, options);
  }
}

/** The certificate (or its CA) is past its notAfter date. */
export class ExpiredError extends CertsToolError {
  override readonly name = 'ExpiredError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_EXPIRED', message, options);
  }
}

/** The certificate (or its CA) is before its notBefore date. */
export class NotYetValidError extends CertsToolError {
  override readonly name = 'NotYetValidError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_NOT_YET_VALID', message, options);
  }
}

/** The certificate lacks the extended key usage for the role (serverAuth / clientAuth). */
export class WrongUsageError extends CertsToolError {
  override readonly name = 'WrongUsageError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_WRONG_USAGE', message, options);
  }
}

/** The certificate is on the given certificate revocation list. */
export class RevokedError extends CertsToolError {
  override readonly name = 'RevokedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_REVOKED', message, options);
  }
}

/**
 * The CRL is past its nextUpdate date. OpenSSL (and so node:tls) then refuses every client
 * certificate of that CA with CRL_HAS_EXPIRED, so a stale CRL shuts every client out.
 */
export class CrlStaleError extends CertsToolError {
  override readonly name = 'CrlStaleError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_CRL_STALE', message, options);
  }
}

/** The revocation list's state file beside the CA (revoked.json) is missing, unreadable or malformed. */
export class BadStateError extends CertsToolError {
  override readonly name = 'BadStateError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_BAD_STATE', message, options);
  }
}

/** An output file already exists and `force` was not given. */
export class FileExistsError extends CertsToolError {
  override readonly name = 'FileExistsError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_EXISTS', message, options);
  }
}

/** Writing the output files failed (permissions, disk full...); nothing was installed. */
export class WriteFailedError extends CertsToolError {
  override readonly name = 'WriteFailedError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_WRITE_FAILED', message, options);
  }
}

/** A library option is out of range or malformed (key size, days, DNS name, IP address...). */
export class InvalidArgumentError extends CertsToolError {
  override readonly name = 'InvalidArgumentError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_INVALID_ARGUMENT', message, options);
  }
}

/** The command line could not be parsed (unknown command or option, missing value). */
export class UsageError extends CertsToolError {
  override readonly name = 'UsageError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_USAGE', message, options);
  }
}

/**
 * Anything else that went wrong: a bug in the tool (or in what it runs on), never bad input.
 * The library does not throw it; the CLI wraps any error that is not a {@link CertsToolError}
 * in one, so even a bug is reported as one line with a code.
 */
export class InternalError extends CertsToolError {
  override readonly name = 'InternalError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('RP_CERTS_INTERNAL', message, options);
  }
}

/**
 * Process exit code for an error: 2 for usage errors (bad command line or option value),
 * 1 for everything else (validation and I/O failures, internal errors).
 */
export function exitCodeFor(err: unknown): 1 | 2 {
  if (err instanceof CertsToolError) {
    return err.code === 'RP_CERTS_USAGE' || err.code === 'RP_CERTS_INVALID_ARGUMENT' ? 2 : 1;
  }
  return 1;
}
