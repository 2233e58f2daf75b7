/** Errors raised by the frame codec; each has a stable `code`. */
export class FrameError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A frame's declared length is over the receiver's (or sender's) maximum. */
export class FrameTooLargeError extends FrameError {
  constructor(
    readonly frameBytes: number,
    readonly maxFrameBytes: number,
  ) {
    super('RP_FRAME_TOO_LARGE', `frame of ${frameBytes} bytes is over the maximum of ${maxFrameBytes}`);
  }
}

/** The bytes are not a valid length-delimited `Frame`. */
export class MalformedFrameError extends FrameError {
  constructor(message: string, options?: ErrorOptions) {
    super('RP_FRAME_MALFORMED', message, options);
  }
}

/** The frame decoded but carries no kind this version knows. */
export class UnknownFrameError extends FrameError {
  constructor() {
    super('RP_FRAME_UNKNOWN', 'frame carries no known kind');
  }
}
