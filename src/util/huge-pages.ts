/**
 * Huge pages for the weights. onnxruntime keeps its prepacked weights in
 * memory from glibc's malloc; where the kernel gives transparent huge pages
 * only on request (`madvise`, the default on Debian and Ubuntu), none of it
 * gets them, and a decode step that streams hundreds of megabytes of weights
 * pays a TLB miss every 4 KiB. glibc asks for huge pages on its large blocks
 * when started with the tunable `glibc.malloc.hugetlb=1` (glibc 2.35 on); it
 * is read once, at process start, so it has to be in the environment a
 * process is started with. Measured at the stories110M shape: README,
 * "Decoding speed".
 *
 * @module
 */

const TUNABLE = 'glibc.malloc.hugetlb';

/** Whether `env` already says what glibc's malloc does about huge pages (ours, or the user's own setting). */
export function hugePagesSet(env: NodeJS.ProcessEnv): boolean {
  return (env.GLIBC_TUNABLES ?? '').split(':').some((tunable) => tunable.startsWith(`${TUNABLE}=`));
}

/** `env` with huge pages asked for (or, with `on` false, declined) beside any tunables it has, unless it sets them itself. */
export function withHugePages(env: NodeJS.ProcessEnv, on = true): NodeJS.ProcessEnv {
  if (hugePagesSet(env)) return env;
  const tunable = `${TUNABLE}=${on ? 1 : 0}`;
  return { ...env, GLIBC_TUNABLES: env.GLIBC_TUNABLES ? `${env.GLIBC_TUNABLES}:${tunable}` : tunable };
}

/** Whether this process runs on glibc, where the tunable means something. */
export function onGlibc(): boolean {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return process.platform === 'linux' && report?.header?.glibcVersionRuntime !== undefined;
}
