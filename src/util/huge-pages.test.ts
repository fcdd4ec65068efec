import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { test } from 'node:test';
import { hugePagesOn, hugePagesSet, onGlibc, withHugePages } from './huge-pages.js';

test('withHugePages adds the tunable beside the others and leaves a setting of its own alone', () => {
  assert.equal(withHugePages({}).GLIBC_TUNABLES, 'glibc.malloc.hugetlb=1');
  assert.equal(withHugePages({}, false).GLIBC_TUNABLES, 'glibc.malloc.hugetlb=0');
  assert.equal(withHugePages({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES, 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1');
  const own = { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2' };
  assert.equal(withHugePages(own), own);
  assert.ok(hugePagesSet(own));
  assert.ok(!hugePagesSet({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }));
  assert.ok(!hugePagesSet({}));
  assert.ok(hugePagesOn(withHugePages({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' })));
  assert.ok(!hugePagesOn(withHugePages({}, false)));
  assert.ok(!hugePagesOn({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=10' }));
});

/** A process that fills a 64 MiB typed array and prints how much of its anonymous memory is in huge pages (kB). */
function hugePagesOfABigArray(env: NodeJS.ProcessEnv): number {
  // Held in a global until the reading, so that no collection frees it first.
  const script = `globalThis.held = new Uint8Array(64 << 20).fill(1);
    process.stdout.write(require('fs').readFileSync('/proc/self/smaps_rollup', 'utf8').match(/AnonHugePages:\\s+(\\d+)/)[1]);`;
  const { stdout, status, stderr } = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env });
  assert.equal(status, 0, stderr);
  return Number(stdout);
}

test('a process started with withHugePages gets huge pages for a large allocation, and one started without does not', (t) => {
  const thp = '/sys/kernel/mm/transparent_hugepage/enabled';
  if (!onGlibc() || !fs.existsSync(thp)) return void t.skip('not Linux with glibc and transparent huge pages: nothing to check');
  const mode = /\[(\w+)\]/.exec(fs.readFileSync(thp, 'utf8'))?.[1];
  if (mode !== 'madvise') return void t.skip(`transparent huge pages are "${mode}" here, not "madvise": the tunable changes nothing`);
  const env = { ...process.env };
  delete env.GLIBC_TUNABLES;
  assert.equal(hugePagesOfABigArray(withHugePages(env, false)), 0);
  assert.ok(hugePagesOfABigArray(withHugePages(env)) >= 32 * 1024, 'at least half of the 64 MiB array in huge pages');
});
