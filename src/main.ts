#!/usr/bin/env node
/**
 * The `offramp` executable: the one place that turns errors into exit codes.
 * Errors a user can fix print one line and exit 2; anything else is a bug
 * and keeps its stack trace.
 */
import { runCli } from './cli.js';
import { RequestError } from './engine/index.js';
import { DeviceError, DownloadError, ModelFormatError } from './model/index.js';
import { UsageError } from './util/index.js';

const USER_ERRORS = [UsageError, ModelFormatError, DeviceError, DownloadError, RequestError];

try {
  await runCli(process.argv.slice(2));
} catch (error) {
  if (USER_ERRORS.some((kind) => error instanceof kind)) {
    process.stderr.write(`offramp: error: ${(error as Error).message}\n`);
    process.exit(2);
  }
  throw error;
}
