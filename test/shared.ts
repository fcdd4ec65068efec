/**
 * Test access to the shared model assets in `../shared/models/` (relative to
 * the project root), read in place and never copied into the repository.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

/** The project root: the nearest folder above this file with a package.json (works from test/ and dist/test/). */
function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return dir;
}

const SHARED_MODELS_DIR = path.resolve(projectRoot(), '..', 'shared', 'models');

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
