/**
 * The protocol codec, free of I/O: for tests, fuzzing and other implementations.
 */
export * from './constants.js';
export * from './frame.js';
export * from './control.js';
// The frame-type registry (constants.ts re-exports FrameType and frameTypeName from it).
export {
  FileFrame,
  FRAME_TYPES,
  FRAME_TYPE_RANGES,
  frameTypeHex,
  frameTypeName,
  frameTypeRange,
  UploadFrame,
  type FrameRangeUse,
  type FrameTypeRange,
} from './types.js';
