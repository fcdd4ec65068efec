/**
 * Huge pages for the weights. onnxruntime keeps its prepacked weights in
 * memory from glibc's malloc; where the kernel gives transparent huge pages
 * only on request (`madvise`, the default on Debian and Ubuntu), none of it
 * gets them, and a decode step that streams hundreds of megabytes of weights
 * pays a TLB miss every 4 KiB. glibc asks for huge pages on its large blocks
 * when started with the tunable `glibc.malloc.hugetlb=1` (glibc 2.35 on); it
 * is read once, at process start, so it has to be in the environment a
 * process is started with. Measured at the stories110M shape: README,
 * "Decoding speed". `offramp serve` and the decode bench started without
 * it run themselves again with it (runAgainWithHugePages).
 *
 * @module
 */
import { spawn } from 'node:child_process';
import os from 'node:os';

const TUNABLE = 'glibc.malloc.hugetlb';

/** The `name=value` tunables `env` gives glibc. */
const tunables = (env: NodeJS.ProcessEnv): string[] => (env.GLIBC_TUNABLES ?? '').split(':');

/** Whether `env` already says what glibc's malloc does about huge pages (ours, or the user's own setting). */
export function hugePagesSet(env: NodeJS.ProcessEnv): boolean {
  return tunables(env).some((tunable) => tunable.startsWith(`${TUNABLE}=`));
}

/** Whether `env` asks glibc's malloc for huge pages. */
export function hugePagesOn(env: NodeJS.ProcessEnv): boolean {
  return tunables(env).includes(`${TUNABLE}=1`);
}

/** `env` with huge pages asked for (or, with `on` false, declined) beside any tunables it has, unless it sets them itself. */
export function withHugePages(env: NodeJS.ProcessEnv, on = true): NodeJS.ProcessEnv {
  if (hugePagesSet(env)) return env;
  const tunable = `${TUNABLE}=${on ? 1 : 0}`;
  return { ...env, GLIBC_TUNABLES: env.GLIBC_TUNABLES ? `${env.GLIBC_TUNABLES}:${tunable}` : tunable };
}

let glibc: boolean | undefined;

/** Whether this process runs on glibc, where the tunable means something (asked once: a diagnostic report takes 5-8 ms). */
export function onGlibc(): boolean {
  if (glibc === undefined) {
    const report = process.platform === 'linux' ? (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined) : undefined;
    glibc = report?.header?.glibcVersionRuntime !== undefined;
  }
  return glibc;
}

/** Signals the process started by runAgainWithHugePages gets passed on from this one. */
const PASSED_ON: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Runs this command again in a child process started with huge pages asked
 * for (or, with `on` false, declined; see withHugePages), and resolves to
 * the exit status to leave with (128 + the signal's number where the child
 * died of one). The child gets a process group of its own, so a terminal's Ctrl-C reaches this process alone, which passes it on
 * once: a second SIGINT tells the server to cut its requests. The IPC
 * channel lets the child stop when this process dies without passing
 * anything on (see stopWithParent).
 */
export function runAgainWithHugePages(on = true): Promise<number> {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    env: withHugePages(process.env, on),
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    detached: true,
  });
  const passOn = (signal: NodeJS.Signals) => child.kill(signal);
  for (const signal of PASSED_ON) process.on(signal, passOn);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      for (const s of PASSED_ON) process.off(s, passOn);
      resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0));
    });
  });
}

/** In a process runAgainWithHugePages started: a SIGTERM of its own when the parent is gone. */
export function stopWithParent(): void {
  if (!process.channel) return;
  process.channel.unref(); // the channel alone keeps nothing running
  process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}
