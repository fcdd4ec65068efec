/**
 * `offramp serve` as its own process: SIGTERM lets in-flight streams finish
 * (finish_reason, then [DONE]) while new requests get 503, cuts what is left
 * when the grace period ends, and then the process exits 0 by itself.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test, type TestContext } from 'node:test';
import { sseFrames } from './http.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

const SERVE = fileURLToPath(new URL('../src/server/serve.js', import.meta.url));

interface Child {
  process: ChildProcess;
  url: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** The test's environment, minus the test runner's marker (a child that sees it reports to the runner instead). */
function childEnv(cache: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OFFRAMP_CACHE_DIR: cache };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

/** Starts `serveCommand(args)` in a child process and waits until the model is served. */
async function serveInChild(t: TestContext, args: string[]): Promise<Child> {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-shutdown-test-'));
  t.after(() => fs.rmSync(cache, { recursive: true, force: true }));
  // A script file, not `node -e`: workers inherit execArgv, and --input-type would refuse their entry file.
  const script = path.join(cache, 'serve.mjs');
  fs.writeFileSync(script, `const { serveCommand } = await import(${JSON.stringify(SERVE)});\nawait serveCommand(process.argv.slice(2));\n`);
  const child = spawn(process.execPath, [script, '--model', sharedModelPath('stories260K', 'stories260K.bin'), '--port', '0', ...args], {
    env: childEnv(cache),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (bytes: Buffer) => (stderr += bytes.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 30_000;
  let url = '';
  while (Date.now() < deadline) {
    url ||= /listening on (http:\/\/\S+)/.exec(stderr)?.[1] ?? '';
    if (url && (await fetch(`${url}/health`)).status === 200) return { process: child, url, stderr: () => stderr, exited };
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`the server did not become ready:\n${stderr}`);
}

/** Starts a long greedy stream; resolves once its first frame is in, with a promise of all its frames (wrapped: an async function would flatten it). */
async function startStream(url: string, maxTokens?: number): Promise<{ frames: Promise<string[]> }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    // Greedy "Tom and his dog" would fill the whole 512-position context.
    body: JSON.stringify({ prompt: 'Tom and his dog', temperature: 0, stream: true, max_tokens: maxTokens }),
  });
  assert.equal(res.status, 200);
  return sseFrames(res);
}

test('SIGTERM: in-flight streams finish cleanly, new requests get 503, then the process exits 0', { timeout: 60_000 }, async (t) => {
  if (!requireSharedModels(t)) return;
  const child = await serveInChild(t, ['--max-running', '8']);
  // Full-context streams (505 tokens each), so they are still running when the refused request arrives.
  const streams = await Promise.all(Array.from({ length: 8 }, () => startStream(child.url)));
  child.process.kill('SIGTERM');
  // Ask only once the server has taken the signal: a busy event loop may still be serving I/O it read before.
  while (!/finishing \d+ request/.test(child.stderr())) await new Promise((resolve) => setTimeout(resolve, 5));
  const refused = await fetch(`${child.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'x' }) });
  assert.equal(refused.status, 503);
  assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'shutting_down');
  for (const frames of await Promise.all(streams.map((s) => s.frames))) {
    assert.equal(frames.at(-1), '[DONE]');
    const last = JSON.parse(frames.at(-2)!) as { choices: { finish_reason: string }[] };
    assert.equal(last.choices[0]!.finish_reason, 'length');
  }
  assert.equal(await child.exited, 0, child.stderr());
  assert.match(child.stderr(), /stopped/);
});

test('SIGTERM: streams still running when the grace period ends get an error frame, then [DONE]', { timeout: 60_000 }, async (t) => {
  if (!requireSharedModels(t)) return;
  const child = await serveInChild(t, ['--shutdown-grace', '0']);
  const streams = await Promise.all(Array.from({ length: 4 }, () => startStream(child.url)));
  child.process.kill('SIGTERM');
  for (const frames of await Promise.all(streams.map((s) => s.frames))) {
    assert.equal(frames.at(-1), '[DONE]');
    const error = JSON.parse(frames.at(-2)!) as { error?: { code: string } };
    assert.equal(error.error?.code, 'shutting_down');
  }
  assert.equal(await child.exited, 0, child.stderr());
  assert.match(child.stderr(), /cut/);
});
