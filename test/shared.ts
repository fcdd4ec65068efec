/**
 * Test access to the shared model assets in `../shared/models/` (relative to
 * the project root), read in place and never copied into the repository.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { PROJECT_ROOT } from '../src/util/index.js';

const SHARED_MODELS_DIR = path.resolve(PROJECT_ROOT, '..', 'shared', 'models');

/** Absolute path of a file or folder under ../shared/models/. */
export function sharedModelPath(...parts: string[]): string {
  return path.join(SHARED_MODELS_DIR, ...parts);
}

/**
 * True when ../shared/models exists. Otherwise skips the test (the caller
 * should return) — except in CI, where missing models are a setup error.
 *
 * @example
 * test('encodes the golden prompt', (t) => {
 *   if (!requireSharedModels(t)) return;
 *   ...
 * });
 */
export function requireSharedModels(t: TestContext): boolean {
  if (fs.existsSync(SHARED_MODELS_DIR)) return true;
  const message = '../shared/models not found: model tests skipped';
  if (process.env.CI === 'true') throw new Error(`${message} — but CI must have them (${SHARED_MODELS_DIR})`);
  t.skip(message);
  return false;
}
