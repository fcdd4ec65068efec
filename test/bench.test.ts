/**
 * `npm run bench -- --quick` end to end on stories260K: it finishes, and its
 * JSON has the documented shape and adds up (every request finished, token
 * and chunk counts agree with each other and with the server's counters).
 * Speed is not checked: this machine is shared and noisy.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { BenchResult } from '../bench/result.js';
import { tempDir } from './helpers.js';
import { requireSharedModels } from './shared.js';

const RUN = fileURLToPath(new URL('../bench/run.js', import.meta.url));

test('bench --quick runs every variant and its report adds up', { timeout: 120_000 }, async (t) => {
  if (!requireSharedModels(t)) return;
  const out = tempDir(t, 'offramp-bench-');
  const { stdout } = await promisify(execFile)(process.execPath, [RUN, '--quick', '--out', out], { timeout: 110_000, maxBuffer: 16 * 1024 * 1024 });
  const stem = path.join(out, 'bench-stories260K');
  const result = JSON.parse(fs.readFileSync(`${stem}.json`, 'utf8')) as BenchResult;

  assert.equal(result.schema, 'offramp-bench/1');
  assert.deepEqual(
    result.variants.map((v) => v.id),
    ['exits-off', 'exits-on@0.99', 'transformers.js'],
  );
  assert.deepEqual(result.loads, [
    { mode: 'closed', concurrency: 1 },
    { mode: 'closed', concurrency: 4 },
    { mode: 'poisson', rate: 20 },
  ]);
  assert.equal(result.points.length, result.loads.length * result.variants.length, 'one point per load and variant');
  const { maxTokens, repeats } = result.config;

  for (const point of result.points) {
    const where = `${point.variant} ${JSON.stringify(point.load)}`;
    assert.equal(point.runs.length, repeats, `${where}: one run per repeat`);
    if (point.load.mode === 'closed') assert.equal(point.requests, 8, `${where}: --quick sends 8 requests per closed-loop point`);
    let gaps = 0;
    for (const run of point.runs) {
      const at = `${where} repeat ${run.repeat}`;
      assert.deepEqual(
        run.requests,
        { sent: point.requests, finished: point.requests, errors: 0 },
        `${at}: every request finished (${run.errorSamples.join('; ')})`,
      );
      const reasons = Object.entries(run.finishReasons);
      assert.ok(
        reasons.every(([reason]) => reason === 'stop' || reason === 'length'),
        `${at}: finish reasons ${JSON.stringify(run.finishReasons)}`,
      );
      assert.equal(
        reasons.reduce((s, [, n]) => s + n, 0),
        run.requests.finished,
        `${at}: one finish reason per request`,
      );
      assert.ok(run.outputTokens > 0 && run.outputTokens <= run.requests.finished * maxTokens, `${at}: ${run.outputTokens} tokens`);
      assert.ok(run.contentChunks > 0 && run.contentChunks <= run.outputTokens, `${at}: ${run.contentChunks} chunks for ${run.outputTokens} tokens`);
      assert.equal(
        Object.values(run.exitMix).reduce((s, n) => s + n, 0),
        run.contentChunks,
        `${at}: exit mix covers every chunk`,
      );
      assert.ok(run.ttftMs && run.itlMs && run.tpotMs && run.e2eMs, `${at}: latencies`);
      assert.equal(run.e2eMs.count, run.requests.finished);
      assert.equal(run.itlMs.count, run.contentChunks - run.ttftMs.count, `${at}: one ITL gap between consecutive chunks`);
      for (const s of [run.ttftMs, run.itlMs, run.tpotMs, run.e2eMs]) assert.ok(s.min <= s.p50 && s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max);
      assert.ok(run.ttftMs.p50 <= run.e2eMs.p99, `${at}: first token before the end`);
      assert.ok(run.outputTokensPerSecond > 0 && run.requestsPerSecond > 0 && run.durationS > 0);
      gaps += run.itlMs.count;

      if (point.variant === 'transformers.js') {
        assert.equal(run.serverMetrics, null);
        assert.equal(run.agreement, null);
        assert.equal(run.tokensPerChunk, 1, `${at}: the peer reports one token per callback`);
      } else {
        assert.equal(run.tokenSource, 'usage', `${at}: token counts from the usage chunk`);
        const metrics = run.serverMetrics;
        assert.ok(metrics, `${at}: /metrics scraped around the point`);
        assert.equal(metrics.generationTokens.server, metrics.generationTokens.client, `${at}: the server generated what the client counted`);
        assert.equal(
          Object.values(metrics.serverExitTokens).reduce((s, n) => s + n, 0),
          run.outputTokens,
          `${at}: server exit mix covers every token`,
        );
        assert.equal(metrics.ttft.serverCount, run.requests.finished, `${at}: one server TTFT per request`);
        assert.ok(metrics.ttft.relativeDiff !== null && metrics.itl.relativeDiff !== null, `${at}: /metrics comparison made`);
        // The worker reports its busy time every 50 ms, so a short point's share is only roughly right.
        assert.ok(metrics.engineBusy !== null && metrics.engineBusy > 0 && metrics.engineBusy < 1.5, `${at}: engine busy ${metrics.engineBusy}`);
      }
      if (point.variant === 'exits-off') {
        assert.deepEqual(Object.keys(run.exitMix), ['full'], `${at}: exits off streams from the full model only`);
        assert.equal(run.agreement, null);
        assert.equal(run.sequenceAgreement, null);
      } else {
        assert.equal(run.sequenceAgreement?.compared, run.requests.finished, `${at}: every text compared with exits-off's`);
      }
      if (point.variant === 'exits-on@0.99') {
        assert.ok(run.agreement && run.agreement.verdicts > 0, `${at}: exit verdicts recorded`);
        assert.ok(run.agreement.streamed !== null && run.agreement.streamed >= 0 && run.agreement.streamed <= 1);
      }
    }
    assert.equal(
      point.itlHistogram.reduce((s, n) => s + n, 0),
      gaps,
      `${where}: the ITL histogram holds every gap`,
    );
    assert.ok(point.median.outputTokensPerSecond !== null && point.median.outputTokensPerSecond > 0);
  }

  // The table is printed and written; the chart is well-formed enough for a browser (no attribute twice in a tag).
  const table = fs.readFileSync(`${stem}.md`, 'utf8');
  assert.match(stdout, /\| c=1 \| exits-off \|/);
  assert.match(table, /\| rate=20\/s \| transformers\.js \|/);
  const svg = fs.readFileSync(`${stem}.svg`, 'utf8');
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  for (const tag of svg.match(/<[a-z]+ [^>]*>/g) ?? []) {
    const names = [...tag.matchAll(/ ([a-z-]+)="/g)].map((m) => m[1]);
    assert.equal(new Set(names).size, names.length, `attribute repeated in ${tag}`);
  }
});
