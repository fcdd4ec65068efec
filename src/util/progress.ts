/**
 * A progress bar on stderr: redrawn in place on a terminal, a plain line
 * every tenth of the way otherwise (logs and CI keep a readable record).
 *
 * @module
 */

export interface Progress {
  /** `done` units of the total so far, and a short note (a loss). */
  update(done: number, note: string): void;
  finish(note: string): void;
}

const BAR_WIDTH = 24;
const REDRAW_MS = 100;

export function progressBar(label: string, total: number, unit: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = stream.isTTY === true;
  let lastDraw = 0;
  let lastTenth = -1;
  const line = (done: number, note: string) => {
    const filled = Math.round((BAR_WIDTH * done) / Math.max(1, total));
    const bar = '#'.repeat(filled) + '.'.repeat(BAR_WIDTH - filled);
    return `${label} [${bar}] ${done.toLocaleString('en-US')}/${total.toLocaleString('en-US')} ${unit}  ${note}`;
  };
  return {
    update(done, note) {
      if (tty) {
        const now = performance.now();
        if (now - lastDraw < REDRAW_MS) return;
        lastDraw = now;
        stream.write(`\r${line(done, note)}\x1b[K`);
        return;
      }
      const tenth = Math.floor((10 * done) / Math.max(1, total));
      if (tenth === lastTenth) return;
      lastTenth = tenth;
      stream.write(`${line(done, note)}\n`);
    },
    finish(note) {
      stream.write(`${tty ? '\r' : ''}${line(total, note)}${tty ? '\x1b[K' : ''}\n`);
    },
  };
}
