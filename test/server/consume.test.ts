/**
 * The continuation sink (Exchange.consume, issue 12): frames and pieces handed to the handler
 * synchronously and in order as they arrive, with the handler's own flow control, and the
 * session's bound on memory kept however fast a client sends. First the exchange alone over a
 * recording host, then a real server and a client on loopback.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { TcpkitError } from '../../src/errors.js';
import { FrameType } from '../../src/protocol/constants.js';
import type { Frame } from '../../src/protocol/frame.js';
import { ServerExchange, type ExchangeHost } from '../../src/server/exchange.js';
import type { ContinuationSink, Service } from '../../src/server/service.js';
import { UploadFrame } from '../../src/services/files/wire.js';
import { gate, RawPeer, testServers, waitUntil } from '../helpers/net.js';

const { serve } = testServers();

/** A session as an exchange sees it, recording the flow control it is asked for. */
class RecordingHost implements ExchangeHost {
  readonly peer = { address: '192.0.2.1', port: 1, label: '192.0.2.1:1' };
  readonly state = 'open' as const;
  held = 0;
  paused = 0;
  send(): boolean {
    return true;
  }
  async sendStreamed(): Promise<void> {}
  hold(bytes: number): void {
    this.held += bytes;
  }
  release(bytes: number): void {
    this.held -= bytes;
  }
  pauseInput(): void {
    this.paused++;
  }
  resumeInput(): void {
    this.paused--;
  }
  recycle(): void {}
  answered(): void {}
}

/** A sink that records what it gets and says `answer(frame)`. */
function recorder(answer: (frame: Frame) => boolean = () => true): ContinuationSink & { frames: Frame[]; ended: Error[] } {
  const frames: Frame[] = [];
  const ended: Error[] = [];
  return { frames, ended, frame: (frame) => (frames.push(frame), answer(frame)), end: (reason) => void ended.push(reason) };
}

const DATA = UploadFrame.PUT_DATA;
const END = UploadFrame.PUT_END;
function frame(type: number, text: string, last?: boolean): Frame {
  return { type, flags: 0, id: 7, payload: Buffer.from(text), ...(last !== undefined && { last }) };
}

describe('ServerExchange.consume (no network)', () => {
  it('delivers frames queued before consume() first, then each new one synchronously, in order', () => {
    const host = new RecordingHost();
    const exchange = new ServerExchange(host, 7, [DATA, END]);
    exchange.push(frame(DATA, 'ab', false));
    exchange.push(frame(DATA, 'cd', true));
    assert.equal(host.held, 4, 'queued frames are held until taken');
    const sink = recorder();
    exchange.consume(sink);
    assert.equal(host.held, 0);
    assert.deepEqual(sink.frames.map((f) => f.payload.toString()), ['ab', 'cd']);
    exchange.push(frame(DATA, 'ef'));
    assert.deepEqual(sink.frames.map((f) => f.payload.toString()), ['ab', 'cd', 'ef'], 'taken within push(): no queue, no promise');
    assert.equal(host.held, 0);
    exchange.push(frame(END, '{}'));
    assert.equal(sink.frames.at(-1)!.type, END);
    assert.equal(exchange.push(frame(0x99, 'x')), false, 'not a continuation of this request');
    assert.equal(host.paused, 0);
  });

  it('a sink that says false pauses the session once; what arrives meanwhile waits (held) and comes on resumeInput()', () => {
    const host = new RecordingHost();
    const exchange = new ServerExchange(host, 7, [DATA]);
    let full = true;
    const sink = recorder(() => !full);
    exchange.consume(sink);
    exchange.push(frame(DATA, '1'));
    assert.equal(host.paused, 1, 'the session stops reading');
    exchange.push(frame(DATA, '2'));
    exchange.push(frame(DATA, '3'));
    assert.equal(sink.frames.length, 1, 'nothing more reaches a sink that said false');
    assert.equal(host.held, 2, 'frames of the read in progress wait, counted');
    assert.equal(host.paused, 1, 'still one pause');
    // Resumed but full again at once: one more frame, and the session stays paused.
    exchange.resumeInput();
    assert.equal(sink.frames.length, 2);
    assert.equal(host.paused, 1);
    full = false;
    exchange.resumeInput();
    assert.deepEqual(sink.frames.map((f) => f.payload.toString()), ['1', '2', '3']);
    assert.equal(host.held, 0);
    assert.equal(host.paused, 0, 'the session reads again');
    exchange.resumeInput();
    assert.equal(host.paused, 0, 'resumeInput() without a pause is a no-op');
  });

  it('tells the end after the frames still queued when the client ends its side; at once, dropping them, on abort', () => {
    const host = new RecordingHost();
    const ending = new ServerExchange(host, 7, [DATA]);
    let full = true;
    const first = recorder(() => !full);
    ending.consume(first);
    ending.push(frame(DATA, 'a'));
    ending.push(frame(DATA, 'b'));
    ending.peerEnded();
    assert.equal(first.ended.length, 0, 'a frame still waits');
    full = false;
    ending.resumeInput();
    assert.deepEqual(first.frames.map((f) => f.payload.toString()), ['a', 'b']);
    assert.equal(first.ended.length, 1);
    assert.match(first.ended[0]!.message, /closed its side/);
    assert.equal(host.paused, 0);

    const aborted = new ServerExchange(host, 8, [DATA]);
    const second = recorder(() => false);
    aborted.consume(second);
    aborted.push(frame(DATA, 'a'));
    aborted.push(frame(DATA, 'b'));
    assert.equal(host.paused, 1);
    aborted.abort(new TcpkitError('ABORTED', 'cancelled'));
    assert.equal(second.frames.length, 1, 'the queued frame is dropped');
    assert.equal(second.ended.length, 1);
    assert.equal(host.held, 0, 'and released');
    assert.equal(host.paused, 0, 'the pause on its account ends');
    assert.equal(aborted.push(frame(DATA, 'c')), false, 'nothing is taken after the end');
    assert.equal(second.ended.length, 1, 'end is told once');
  });

  it('discard() (the handler finished) releases a pause the sink left; a sink that throws fails its request, not the read loop', () => {
    const host = new RecordingHost();
    const exchange = new ServerExchange(host, 7, [DATA]);
    exchange.consume(recorder(() => false));
    exchange.push(frame(DATA, 'a'));
    exchange.push(frame(DATA, 'b'));
    exchange.discard();
    assert.equal(host.paused, 0);
    assert.equal(host.held, 0);

    const failing = new ServerExchange(host, 9, [DATA]);
    const sink = recorder(() => {
      throw new TcpkitError('HANDLER_ERROR', 'a bug in the sink');
    });
    failing.consume(sink);
    assert.doesNotThrow(() => failing.push(frame(DATA, 'a')));
    assert.equal(failing.signal.aborted, true);
    assert.equal(sink.ended.length, 1);
  });

  it('is one way or the other: receive() after consume(), or consume() twice, is INVALID_STATE', async () => {
    const exchange = new ServerExchange(new RecordingHost(), 7, [DATA]);
    exchange.consume(recorder());
    assert.throws(() => exchange.consume(recorder()), (e: TcpkitError) => e.wireCode === 'INVALID_STATE');
    await assert.rejects(exchange.receive(), (e: TcpkitError) => e.wireCode === 'INVALID_STATE');
  });
});

/**
 * An "upload" service whose sink counts the content, in pieces, and says false once it holds
 * `bound` bytes, until `drain()` (a disk that is slower than the client, or stuck).
 */
function countingService(bound: number): { service: Service; pieces: Buffer[]; drain(): void; started: Promise<void> } {
  const pieces: Buffer[] = [];
  let holding = 0;
  let exchangeOf: { resumeInput(): void } | undefined;
  const begun = gate();
  const service: Service = {
    name: 'upload',
    requestTypes: [UploadFrame.PUT],
    continuationTypes: [DATA, END],
    handle(_request, exchange) {
      exchangeOf = exchange;
      return new Promise<void>((resolve, reject) => {
        exchange.consume({
          frame(frame) {
            if (frame.type === END) {
              exchange.reply(UploadFrame.PUT_DONE, Buffer.from(String(pieces.reduce((sum, piece) => sum + piece.length, 0))));
              resolve();
              return true;
            }
            pieces.push(frame.payload);
            holding += frame.payload.length;
            return holding < bound;
          },
          end: reject,
        });
        begun.open();
      });
    },
  };
  return {
    service,
    pieces,
    started: begun.promise,
    drain() {
      holding = 0;
      exchangeOf?.resumeInput();
    },
  };
}

describe('Exchange.consume over a real connection', () => {
  it('hands PUT_DATA on in pieces, views of the reads, in order; the content is exactly what was sent', async () => {
    const counting = countingService(Infinity);
    const { port } = await serve({ services: [counting.service] });
    const peer = await RawPeer.open(port);
    peer.send(UploadFrame.PUT, 1, Buffer.from('{}'));
    await counting.started;
    const frames = [randomBytes(700_000), randomBytes(1), randomBytes(1024 * 1024)];
    for (const payload of frames) peer.send(DATA, 1, payload);
    peer.send(END, 1, Buffer.from('{}'));
    await peer.until(() => peer.frames.some((f) => f.type === UploadFrame.PUT_DONE), 'PUT_DONE', 10_000);
    assert.ok(Buffer.concat(counting.pieces).equals(Buffer.concat(frames)), 'the same bytes, in order');
    assert.ok(counting.pieces.length > frames.length, `pieces, not assembled frames (${counting.pieces.length})`);
    assert.ok(counting.pieces.every((piece) => piece.length <= 64 * 1024), 'none larger than a read');
    peer.socket.destroy();
  });

  it('a sink that cannot keep up stops the server reading: a client sending 48 MiB as fast as it can is held to a few MiB', async () => {
    const counting = countingService(1024 * 1024);
    const { server, port } = await serve({ services: [counting.service] });
    const peer = await RawPeer.open(port);
    peer.send(UploadFrame.PUT, 1, Buffer.from('{}'));
    await counting.started;
    const chunk = randomBytes(1024 * 1024);
    const total = 48;
    for (let i = 0; i < total; i++) peer.send(DATA, 1, chunk);
    peer.send(END, 1, Buffer.from('{}'));
    await waitUntil(() => server.stats().bytesIn >= 1024 * 1024, 'the server to read the first MiB');
    await waitUntil(() => peer.socket.writableLength > 16 * 1024 * 1024, 'the server to stop reading', 10_000);
    // An absence over a bounded window: a server that kept reading would take tens of MiB in it.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(server.stats().bytesIn < 3 * 1024 * 1024, `server read ${server.stats().bytesIn} bytes while the sink was full`);
    // The "disk" catches up, one MiB at a time, as fast as the client sends.
    const draining = setInterval(() => counting.drain(), 2);
    try {
      await peer.until(() => peer.frames.some((f) => f.type === UploadFrame.PUT_DONE), 'PUT_DONE', 30_000);
    } finally {
      clearInterval(draining);
    }
    const done = peer.frames.find((f) => f.type === UploadFrame.PUT_DONE)!;
    assert.equal(done.payload.toString(), String(total * chunk.length));
    peer.send(FrameType.PING, 2, Buffer.from('alive'));
    await peer.until(() => peer.frames.some((f) => f.type === FrameType.PONG), 'PONG');
    peer.socket.destroy();
  });
});
