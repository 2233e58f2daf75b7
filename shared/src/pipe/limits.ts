/** The settings one exchange works within: a slice of the node's config. */
import type { CommonConfig } from '../config.js';

export type PipeLimits = Pick<
  CommonConfig,
  'maxFrameBytes' | 'maxBodyBytes' | 'streamChunkBytes' | 'streamWindowBytes' | 'streamConnectionBufferBytes' | 'heartbeatIntervalMs' | 'heartbeatTimeoutMs'
> &
  Partial<Pick<CommonConfig, 'maxInFlight'>>;
