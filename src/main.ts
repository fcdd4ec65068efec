#!/usr/bin/env node
/**
 * The `offramp` executable: the one place that turns errors into exit codes.
 * Errors a user can fix print one line and exit 2; anything else is a bug
 * and keeps its stack trace.
 */
import { runCli } from './cli.js';
import { EngineError } from './engine/index.js';
import { DeviceError, DownloadError, ModelFormatError } from './model/index.js';
import { hugePagesSet, onGlibc, runAgainWithHugePages, stopWithParent, UsageError } from './util/index.js';

const USER_ERRORS = [UsageError, ModelFormatError, DeviceError, DownloadError];

/** An error the user can fix: said in one line, no stack trace. */
const isUserError = (error: unknown): boolean => USER_ERRORS.some((kind) => error instanceof kind) || (error instanceof EngineError && error.userFixable);

// The server decodes faster with huge pages, which glibc's malloc asks for only if told at start.
if (process.argv[2] === 'serve' && onGlibc() && !hugePagesSet(process.env)) process.exit(await runAgainWithHugePages());
stopWithParent();

try {
  await runCli(process.argv.slice(2));
} catch (error) {
  if (isUserError(error)) {
    process.stderr.write(`offramp: error: ${(error as Error).message}\n`);
    process.exit(2);
  }
  throw error;
}
