/**
 * The progress line on stderr: rewritten in place on a terminal, one line
 * per finished point otherwise (CI logs, test runs).
 *
 * @module
 */

export class Progress {
  private readonly tty = process.stderr.isTTY === true;
  private line = '';
  private timer: NodeJS.Timeout | null = null;

  /** Shows `render()` now and every 250 ms on a terminal, until `done()`. */
  start(render: () => string): void {
    this.stop();
    if (!this.tty) return;
    const draw = () => {
      this.line = render();
      process.stderr.write(`\r\x1b[K${this.line}`);
    };
    draw();
    this.timer = setInterval(draw, 250);
    this.timer.unref();
  }

  /** Ends the current line with a final text. */
  done(text: string): void {
    this.stop();
    process.stderr.write(this.tty ? `\r\x1b[K${text}\n` : `${text}\n`);
    this.line = '';
  }

  /** A message that must not be overwritten. */
  log(text: string): void {
    process.stderr.write(this.tty && this.line ? `\r\x1b[K${text}\n${this.line}` : `${text}\n`);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
