/**
 * The first bytes a client sends: the preamble and its HELLO.
 */
import { CONNECTION_ID, FrameType, SUPPORTED_VERSIONS, preambleBytes } from '../protocol/constants.js';
import { encodeClientHello } from '../protocol/control.js';
import { encodeFrame } from '../protocol/frame.js';
import { VERSION } from '../version.js';

/** What a client says first: preamble and HELLO, in one buffer. */
export function clientOpening(token: string | undefined): Buffer {
  return Buffer.concat([
    preambleBytes(),
    encodeFrame(
      FrameType.HELLO,
      CONNECTION_ID,
      encodeClientHello({
        versions: [...SUPPORTED_VERSIONS],
        agent: `tcpkit/${VERSION}`,
        capabilities: [],
        ...(token !== undefined && { auth: { token } }),
      }),
    ),
  ]);
}

/** The opening of every client without a token: built once. */
export const CLIENT_OPENING = clientOpening(undefined);
