/**
 * The protocol codec, free of I/O: for tests, fuzzing and other implementations.
 */
export * from './constants.js';
export * from './frame.js';
export * from './control.js';
// The registry's frameTypeName names every type of v1 (constants.ts's only the control and message ones).
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
