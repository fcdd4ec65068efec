/**
 * The soak (bench/soak.ts), short: 10 s of warm-up and 24 s of mixed load
 * with one forced worker crash against `offramp serve` on stories260K. The
 * full run is `npm run soak` (10 minutes).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { runSoak, summarize } from '../bench/soak.js';
import { requireSharedModels } from './shared.js';

test('soak, 24 s: nothing lost, nothing leaked, the crash recovered', { timeout: 120_000 }, async (t) => {
  if (!requireSharedModels(t)) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-soak-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'soak.json');
  const report = await runSoak({ minutes: 0.4, warmupSeconds: 10, out, log: (line) => t.diagnostic(line) });
  for (const line of summarize(report).split('\n')) t.diagnostic(line);
  assert.deepEqual(report.failures, []);
  assert.ok(report.passed);
  assert.deepEqual((JSON.parse(fs.readFileSync(out, 'utf8')) as { passed: unknown }).passed, true);
  // Every part of the mix ran.
  for (const kind of ['stream', 'whole', 'disconnect', 'malformed', 'burst']) assert.ok((report.requests.byKind[kind] ?? 0) > 0, kind);
  assert.ok(report.texts.exact > 50 && report.texts.mismatched === 0);
  assert.ok(report.streams.finished > 50);
  assert.ok(report.bursts.rejected429 > 0);
  assert.equal(report.fault.restartingSeen, true);
  assert.notEqual(report.fault.recoveredAfterMs, null);
  assert.equal(report.endState['offramp:num_free_slots'], 8);
  assert.equal(report.serverExitCode, 0);
});
