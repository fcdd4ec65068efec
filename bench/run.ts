/**
 * `npm run bench` entry point: runs the benchmark with the command line's
 * flags (see bench/README.md), and sets the exit status.
 *
 *   npm run bench -- --quick
 *
 * @module
 */
import { benchCommand } from './bench.js';
import { BenchUsageError } from './options.js';

try {
  await benchCommand(process.argv.slice(2));
} catch (error) {
  process.stderr.write(error instanceof BenchUsageError ? `${error.message}\n` : `bench: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = error instanceof BenchUsageError ? 2 : 1;
}
