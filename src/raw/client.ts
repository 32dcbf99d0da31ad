/**
 * Raw mode, client side: talk to a server that speaks no framing (the tutorial's Python servers,
 * netcat): send the request bytes, half-close, and take every byte until the server closes.
 * There is no length, no digest and no error code: the server's close is the only signal.
 */
import { ConnectionError, TimeoutError } from '../errors.js';
import { openSocket } from '../transport/dial.js';
import { resolveClientOptions, type ClientOptions, type Target } from '../client/options.js';

/** Receives the reply bytes; may return a promise to slow the sender down (backpressure). */
export type RawSink = (chunk: Buffer) => void | Promise<void>;

/**
 * Sends `request`, half-closes, and feeds the reply to `sink` until the server closes.
 * Resolves with the number of bytes received. `requestTimeoutMs` bounds each wait for data.
 */
export async function rawExchange(target: Target, request: Uint8Array, sink: RawSink, options: ClientOptions = {}): Promise<number> {
  const resolved = resolveClientOptions(target, options);
  const { clock } = resolved; // the wait for data runs on the client's clock
  const socket = await openSocket(resolved, clock.now() + resolved.connectTimeoutMs);
  return new Promise<number>((resolve, reject) => {
    let received = 0;
    let failed: Error | undefined;
    let writing: Promise<void> = Promise.resolve();
    const idle = resolved.requestTimeoutMs;
    // The wait for data: restarted by every chunk, so only a server silent that long fails.
    let timer: unknown;
    const silent = (): void => {
      timer = undefined;
      failed ??= new TimeoutError('REQUEST_TIMEOUT', `no data from ${resolved.label} within ${idle} ms`);
      socket.destroy();
    };
    const wait = (): void => {
      if (idle <= 0) return;
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = clock.setTimeout(silent, idle, undefined);
    };
    wait();
    socket.on('data', (chunk: Buffer) => {
      wait();
      received += chunk.length;
      let step: void | Promise<void>;
      try {
        step = sink(chunk);
      } catch (error) {
        failed ??= error as Error;
        socket.destroy();
        return;
      }
      if (step instanceof Promise) {
        socket.pause();
        writing = writing.then(() => step).then(
          () => {
            socket.resume();
          },
          (error: unknown) => {
            failed ??= error as Error;
            socket.destroy();
          },
        );
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      failed ??= new ConnectionError('CONNECTION_FAILED', `connection to ${resolved.label} lost: ${error.code ?? error.message}`, { cause: error });
    });
    socket.on('end', () => socket.end());
    socket.on('close', () => {
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
      void writing.then(() => (failed ? reject(failed) : resolve(received)));
    });
    socket.end(request);
  });
}

/**
 * Sends one raw message and returns everything the server sent back before closing.
 * @example const reply = await rawSend('127.0.0.1:7890', 'hello'); // a tutorial-style server
 */
export async function rawSend(target: Target, message: string | Uint8Array, options?: ClientOptions, maxReplyBytes = 16 * 1024 * 1024): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  await rawExchange(
    target,
    typeof message === 'string' ? Buffer.from(message, 'utf8') : message,
    (chunk) => {
      size += chunk.length;
      if (size > maxReplyBytes) throw new ConnectionError('CONNECTION_FAILED', `raw reply over ${maxReplyBytes} bytes`);
      parts.push(chunk);
    },
    options,
  );
  return Buffer.concat(parts, size);
}
