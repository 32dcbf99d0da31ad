/**
 * Runs the server under test in a child process (`servers.ts`), so that server and load
 * generator each get one core, and it is killed after every measurement: no state carries over
 * from one run to the next.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { ChildMessage, ParentMessage, ServerKind } from './servers.js';

/** How long a child may take to start listening, answer a CPU or memory query, or exit. */
const CHILD_WAIT_MS = 10_000;
const STOP_WAIT_MS = 3_000;

/** A server child, listening on 127.0.0.1. */
export class ServerProcess {
  readonly kind: ServerKind;
  readonly port: number;
  readonly #child: ChildProcess;
  #exited = false;

  private constructor(kind: ServerKind, port: number, child: ChildProcess) {
    this.kind = kind;
    this.port = port;
    this.#child = child;
    child.once('exit', () => {
      this.#exited = true;
    });
  }

  /**
   * Forks `servers.js kind` and waits for its port. Node flags for the child (e.g. `--cpu-prof`)
   * come from `nodeArgs`; the parent's own flags are not passed on.
   */
  static async start(kind: ServerKind, nodeArgs: readonly string[] = []): Promise<ServerProcess> {
    const script = new URL('./servers.js', import.meta.url);
    const child = fork(script, [kind], { execArgv: [...nodeArgs], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the ${kind} server did not start within ${CHILD_WAIT_MS} ms`)), CHILD_WAIT_MS);
        const done = (): void => {
          clearTimeout(timer);
          child.off('message', onMessage);
          child.off('exit', onExit);
          child.off('error', onError);
        };
        const onMessage = (message: ChildMessage): void => {
          if (message.type === 'listening') {
            done();
            resolve(message.port);
          } else if (message.type === 'failed') {
            done();
            reject(new Error(`the ${kind} server failed to start: ${message.message}`));
          }
        };
        const onExit = (code: number | null, signal: string | null): void => {
          done();
          reject(new Error(`the ${kind} server exited while starting (${signal ?? `code ${String(code)}`})`));
        };
        const onError = (error: Error): void => {
          done();
          reject(error);
        };
        child.on('message', onMessage);
        child.once('exit', onExit);
        child.once('error', onError);
      });
      return new ServerProcess(kind, port, child);
    } catch (error) {
      child.kill('SIGKILL');
      throw error;
    }
  }

  /** Whether the child is gone (a crash during a measurement makes the measurement fail). */
  get exited(): boolean {
    return this.#exited;
  }

  /** Process id of the child (its `/proc/PID` files tell its memory). */
  get pid(): number {
    return this.#child.pid!;
  }

  /** CPU time (user + system) the child has used so far, in microseconds. */
  async cpuMicros(): Promise<number> {
    const reply = await this.#ask({ type: 'cpu' }, 'cpu', 'its CPU time');
    return reply.userMicros + reply.systemMicros;
  }

  /**
   * The child's V8 heap and how many connections it holds; with `gc`, after a full collection
   * (which happens only if the child runs with `--expose-gc`: the reply says whether it did).
   */
  memory(gc: boolean): Promise<Extract<ChildMessage, { type: 'memory' }>> {
    return this.#ask({ type: 'memory', gc }, 'memory', 'its memory');
  }

  /** Sends `request` and waits (bounded) for the child's reply of type `replyType`. */
  #ask<T extends ChildMessage['type']>(request: ParentMessage, replyType: T, what: string): Promise<Extract<ChildMessage, { type: T }>> {
    const child = this.#child;
    if (this.#exited) return Promise.reject(new Error(`the ${this.kind} server exited`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`the ${this.kind} server did not report ${what}`)), CHILD_WAIT_MS);
      const onMessage = (message: ChildMessage): void => {
        if (message.type === replyType) finish(undefined, message as Extract<ChildMessage, { type: T }>);
      };
      const onExit = (): void => finish(new Error(`the ${this.kind} server exited`));
      function finish(error: Error | undefined, reply?: Extract<ChildMessage, { type: T }>): void {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        if (error) reject(error);
        else resolve(reply!);
      }
      child.on('message', onMessage);
      child.once('exit', onExit);
      this.#send(request);
    });
  }

  /** Asks the child to exit, and kills it if it has not within a few seconds. Idempotent. */
  async stop(): Promise<void> {
    if (this.#exited) return;
    const exited = once(this.#child, 'exit');
    this.#send({ type: 'stop' });
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), STOP_WAIT_MS);
    await exited;
    clearTimeout(timer);
  }

  #send(message: ParentMessage): void {
    if (this.#child.connected) this.#child.send(message);
  }
}
