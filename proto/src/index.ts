/** The RestPipe wire: generated protobuf messages and the frame codec. */
export {
  wire,
  encodeFrame,
  encodeChunkHeader,
  FrameDecoder,
  PROTOCOL_VERSION,
  DEFAULT_MAX_FRAME_BYTES,
  type Frame,
  type FrameInit,
  type FrameKind,
  type FrameDecoderOptions,
  type PartedChunk,
  type Hello,
  type Request,
  type Reply,
  type Chunk,
  type Credit,
  type Cancel,
  type Ping,
  type Pong,
  type GoAway,
} from './frame-codec.js';
export { FrameError, FrameTooLargeError, MalformedFrameError, UnknownFrameError } from './errors.js';
