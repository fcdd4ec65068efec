/**
 * Issue 18's measure over the decode bench's repeats (bench/decode.ts):
 * per model and weights, offramp's engine (default) at its fastest thread
 * count against each llama.cpp column at its own, as the ratio within each
 * repeat (repeat r of one against repeat r of the other: measured seconds
 * apart where the thread counts agree), median and range over the repeats.
 *
 * @module
 */
import { median, summarize } from './stats.js';

/** The decode bench's columns, as each repeat records them. */
export const COLUMNS = ['perBlock', 'engineDefault', 'fused', 'nodeLlamaCpp', 'llamaBench', 'llamaBenchNoMmap'] as const;
export type DecodeColumn = (typeof COLUMNS)[number];

/** The llama.cpp columns issue 18 measures offramp against, and how the tables name them. */
const PEERS = [
  { column: 'llamaBench', label: 'llama-bench' },
  { column: 'llamaBenchNoMmap', label: 'llama-bench --mmap 0' },
  { column: 'nodeLlamaCpp', label: 'node-llama-cpp' },
] as const satisfies readonly { column: DecodeColumn; label: string }[];

/** One run of the decode bench (a model, its weights, a thread count): each repeat's tokens/s per column, empty where left out. */
export interface DecodeSamples {
  model: string;
  threads: number;
  /** 'float32' or 'int8' linear layers. */
  weights: string;
  samples: Record<DecodeColumn, number[]>;
}

/** One engine's run at its fastest thread count: which, and its tokens/s per repeat. */
interface FastestRun {
  threads: number;
  median: number;
  samples: number[];
}

/** Issue 18's measure for one model and weights: offramp's engine against each llama.cpp column, each at its fastest thread count. */
export interface PeerRatios {
  model: string;
  weights: string;
  offramp: FastestRun;
  peers: { label: string; peer: FastestRun; ratio: { median: number; min: number; max: number } }[];
}

/** Of `runs` (one model and weights, one per thread count), the one whose `column` has the highest median; null where nothing was measured. */
function fastest(runs: DecodeSamples[], column: DecodeColumn): FastestRun | null {
  return runs
    .filter((r) => r.samples[column].length > 0)
    .map((r) => ({ threads: r.threads, median: median(r.samples[column])!, samples: r.samples[column] }))
    .reduce<FastestRun | null>((best, run) => (best && best.median >= run.median ? best : run), null);
}

/** Issue 18's measure (see the module comment) for every model and weights of `runs`. */
export function peerRatios(runs: DecodeSamples[]): PeerRatios[] {
  const groups = new Map<string, DecodeSamples[]>();
  for (const run of runs) {
    const key = `${run.model} ${run.weights}`;
    groups.set(key, [...(groups.get(key) ?? []), run]);
  }
  return [...groups.values()].map((group) => {
    const offramp = fastest(group, 'engineDefault')!;
    const peers = PEERS.flatMap(({ column, label }) => {
      const peer = fastest(group, column);
      if (!peer) return [];
      const ratios = summarize(offramp.samples.map((tokensPerSecond, r) => tokensPerSecond / peer.samples[r]!))!;
      return [{ label, peer, ratio: { median: ratios.p50, min: ratios.min, max: ratios.max } }];
    });
    return { model: group[0]!.model, weights: group[0]!.weights, offramp, peers };
  });
}

/** The measure as the Markdown table the decode bench prints under its own. */
export function formatPeerRatios(measure: PeerRatios[]): string {
  const run = (r: FastestRun) => `${r.median.toFixed(1)} (${r.threads} thread${r.threads === 1 ? '' : 's'})`;
  const labels = PEERS.map((p) => p.label);
  return [
    "Issue 18's measure: offramp's engine (default) at its fastest thread count against each llama.cpp column at its own; ratio within each repeat, median (range)",
    '',
    `| model | weights | offramp | ${labels.map((l) => `${l} | ratio`).join(' | ')} |`,
    `|---|---|---:|${labels.map(() => '---:|---:|').join('')}`,
    ...measure.map((m) => {
      const cells = labels.map((label) => {
        const p = m.peers.find((x) => x.label === label);
        return p ? `${run(p.peer)} | ${p.ratio.median.toFixed(2)}x (${p.ratio.min.toFixed(2)}–${p.ratio.max.toFixed(2)})` : '– | –';
      });
      return `| ${m.model} | ${m.weights} | ${run(m.offramp)} | ${cells.join(' | ')} |`;
    }),
  ].join('\n');
}
