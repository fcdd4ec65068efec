/**
 * Issue 18's measure over hand-made decode-bench repeats: no model, no
 * llama.cpp.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COLUMNS, formatPeerRatios, peerRatios, type DecodeColumn, type DecodeSamples } from './peer-ratios.js';

function run(threads: number, weights: string, samples: Partial<Record<DecodeColumn, number[]>>): DecodeSamples {
  const all = Object.fromEntries(COLUMNS.map((column) => [column, samples[column] ?? []])) as Record<DecodeColumn, number[]>;
  return { model: 'm', threads, weights, samples: all };
}

test('each engine is taken at its fastest thread count, and the ratio pairs repeat r with repeat r', () => {
  const runs = [
    run(1, 'float32', { engineDefault: [100, 50, 90], llamaBench: [200, 100, 100] }),
    run(2, 'float32', { engineDefault: [80, 80, 80], llamaBench: [50, 50, 50] }),
  ];
  const [measure] = peerRatios(runs);
  // offramp's best median is one thread's 90 (against 80); llama-bench's is one thread's 100.
  assert.equal(measure!.offramp.threads, 1);
  assert.equal(measure!.peers.length, 1, 'only the peers measured');
  const { peer, ratio, label } = measure!.peers[0]!;
  assert.equal(label, 'llama-bench');
  assert.equal(peer.threads, 1);
  // Within each repeat: 100/200, 50/100, 90/100; a ratio of medians would say 0.9x instead.
  assert.deepEqual(ratio, { median: 0.5, min: 0.5, max: 0.9 });
});

test('each model and weights gets a row of its own, and a peer left out shows as a dash', () => {
  const runs = [run(1, 'float32', { engineDefault: [10], nodeLlamaCpp: [5] }), run(1, 'int8', { engineDefault: [20] })];
  const measure = peerRatios(runs);
  assert.deepEqual(
    measure.map((m) => [m.weights, m.peers.map((p) => p.label)]),
    [
      ['float32', ['node-llama-cpp']],
      ['int8', []],
    ],
  );
  const table = formatPeerRatios(measure).split('\n');
  assert.match(table.at(-2)!, /\| m \| float32 \| 10\.0 \(1 thread\) \| – \| – \| – \| – \| 5\.0 \(1 thread\) \| 2\.00x \(2\.00–2\.00\) \|/);
  assert.match(table.at(-1)!, /\| m \| int8 \| 20\.0 \(1 thread\) \| – \| – \| – \| – \| – \| – \|/);
});
