/**
 * The protocol codec, free of I/O: for tests, fuzzing and other implementations.
 */
export * from './constants.js';
export * from './frame.js';
export * from './control.js';
