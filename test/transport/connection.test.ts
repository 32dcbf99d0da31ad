import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { preambleBytes } from '../../src/protocol/constants.js';
import { encodeFrame, type Frame } from '../../src/protocol/frame.js';
import { FileFrame, FrameType } from '../../src/protocol/types.js';
import { Connection } from '../../src/transport/connection.js';
import { duplexPair } from '../helpers/duplex-pair.js';

/** A connection fed through receive() (reused input, as a client's large reads), recording frames. */
function reusedInputConnection(onFrame: (frame: Frame, conn: Connection) => void): { conn: Connection; frames: Frame[] } {
  const [local] = duplexPair();
  const frames: Frame[] = [];
  const conn: Connection = new Connection(
    local,
    {
      frame: (frame) => {
        frames.push({ ...frame, payload: Buffer.from(frame.payload) });
        onFrame(frame, conn);
      },
      peerEnd: () => {},
      protocolError: (error) => assert.fail(error),
      close: () => {},
    },
    { maxFrameBytes: 1 << 20, externalReads: true, pieceTypes: new Set([FileFrame.DATA]) },
  );
  return { conn, frames };
}

describe('Connection with reused input (a client reading into slabs)', () => {
  it('a pause asked for during a read delivers the rest of that read, then delivers nothing more until resumed', () => {
    const { conn, frames } = reusedInputConnection((frame, c) => {
      if (frame.type === FileFrame.DATA && frame.payload.toString() === 'one') c.pause();
    });
    const memory = Buffer.concat([preambleBytes(), encodeFrame(FileFrame.DATA, 1, Buffer.from('one')), encodeFrame(FileFrame.DATA, 1, Buffer.from('two'))]);
    conn.receive(memory);
    // The read's memory is reused at once: what was delivered must not depend on it any more.
    memory.fill(0);
    assert.deepEqual(frames.map((f) => f.payload.toString()), ['one', 'two'], 'the whole read was delivered, in order');
    assert.equal(conn.hasBacklog, false, 'nothing held back (it would have had to be a copy)');
    conn.resume();
    conn.receive(encodeFrame(FrameType.PING, 0, Buffer.from('after')));
    assert.deepEqual(frames.map((f) => f.payload.toString()), ['one', 'two', 'after']);
    conn.destroy();
  });
});
