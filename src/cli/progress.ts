/**
 * Progress bars and transfer lines shared by `get` and `put` (cli-progress), drawn on stderr
 * only when it is a terminal; cli-progress is imported only then (a script's run never loads it).
 */
import { safeText } from './output.js';

/** Bytes for people: `512 B`, `1.5 MiB`. */
export function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** One bar per file, and a way to print lines above them. */
export interface Progress {
  /** A bar for one file; call the returned function with the bytes done and the total (unknown: undefined). */
  start(file: string): { update(bytes: number, size: number | undefined): void; stop(): void };
  /** Prints a line on stderr (above the bars when they are drawn). */
  say(line: string): void;
  /** Removes nothing, stops redrawing. */
  stop(): void;
}

/** Bars when `show` (stderr is a terminal and the command is not quiet), plain lines otherwise. */
export async function createProgress(show: boolean): Promise<Progress> {
  const cliProgress = show ? (await import('cli-progress')).default : undefined;
  const bars = cliProgress
    ? new cliProgress.MultiBar(
        {
          format: ' {bar} {percentage}% | {done}/{total_h} | {rate} | ETA {eta_formatted} | {file}',
          hideCursor: true,
          clearOnComplete: false,
          stopOnComplete: false,
          etaBuffer: 50,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  return {
    start(file) {
      const bar = bars?.create(1, 0, { file: safeText(file), done: '0 B', total_h: '?', rate: '' });
      const started = performance.now();
      return {
        update(bytes, size) {
          if (!bar) return;
          const seconds = (performance.now() - started) / 1000;
          bar.setTotal(Math.max(1, size ?? 1));
          bar.update(size === 0 ? 1 : bytes, { done: human(bytes), total_h: human(size ?? 0), rate: seconds > 0 ? `${human(bytes / seconds)}/s` : '' });
        },
        stop() {
          bar?.stop();
        },
      };
    },
    say(line) {
      if (bars) {
        bars.log(`${line}\n`);
        bars.update(); // draw now: a log waits for the next redraw, which may never come
      } else {
        process.stderr.write(`${line}\n`);
      }
    },
    stop() {
      bars?.stop();
    },
  };
}
