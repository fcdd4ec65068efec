/**
 * `offramp serve` started on glibc without the huge-pages tunable runs
 * itself again with it (src/util/huge-pages.ts): the server is a child of
 * the process started, which passes SIGTERM on and exits as the server does;
 * and a server whose parent is killed outright stops by itself.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { onGlibc } from '../src/util/index.js';
import { CLI } from './helpers.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

interface Started {
  child: ChildProcess;
  url: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** `offramp serve` on stories260K from an environment without GLIBC_TUNABLES; resolves once it serves. */
async function serveWithoutTunables(t: TestContext): Promise<Started> {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-huge-pages-test-'));
  t.after(() => fs.rmSync(cache, { recursive: true, force: true }));
  const env: NodeJS.ProcessEnv = { ...process.env, OFFRAMP_CACHE_DIR: cache };
  delete env.NODE_TEST_CONTEXT; // a child that sees it reports to the test runner
  delete env.GLIBC_TUNABLES;
  const child = spawn(process.execPath, [CLI, 'serve', '--model', sharedModelPath('stories260K', 'stories260K.bin'), '--port', '0'], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGTERM');
  });
  let stderr = '';
  child.stderr.on('data', (bytes: Buffer) => (stderr += bytes.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const url = /ready: (http:\/\/\S+)\/v1/.exec(stderr)?.[1];
    if (url) return { child, url, stderr: () => stderr, exited };
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`the server did not become ready:\n${stderr}`);
}

test('serve started without the huge-pages tunable runs again with it, and SIGTERM to the process started stops it cleanly', async (t) => {
  if (!onGlibc()) return void t.skip('not glibc: serve runs as it was started');
  if (!requireSharedModels(t)) return;
  const { child, url, stderr, exited } = await serveWithoutTunables(t);
  assert.match(stderr(), /huge pages for the weights: on \(GLIBC_TUNABLES=glibc\.malloc\.hugetlb=1\)/);
  assert.equal((await fetch(`${url}/health`)).status, 200);
  child.kill('SIGTERM');
  assert.equal(await exited, 0, stderr());
  assert.match(stderr(), /SIGTERM: finishing 0 request\(s\) in flight/);
  assert.match(stderr(), /offramp: stopped\n/);
});

test('a server run again with huge pages stops by itself when the process started is killed outright', async (t) => {
  if (!onGlibc()) return void t.skip('not glibc: serve runs as it was started');
  if (!requireSharedModels(t)) return;
  const { child, url, stderr, exited } = await serveWithoutTunables(t);
  child.kill('SIGKILL');
  await exited;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const up = await fetch(`${url}/health`).then(
      () => true,
      () => false,
    );
    if (!up) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`the server still answered 30 s after its parent was killed:\n${stderr()}`);
});
