/**
 * What one benchmark run writes (bench-<model>.json; schema in bench/README.md),
 * shared by the runner, the markdown report and the chart.
 *
 * @module
 */
import type { Load } from './load.js';
import type { BenchOptions } from './options.js';
import type { ITL_HISTOGRAM, PointMedians, RunStats } from './stats.js';

export const BENCH_SCHEMA = 'offramp-bench/1';

export interface BenchVariant {
  /** Column name: exits-off, exits-on@0.99, transformers.js, llama.cpp, or the URL of a server benched as it runs. */
  id: string;
  kind: 'offramp' | 'peer' | 'external';
  earlyExit: 'on' | 'lossless' | 'off' | null;
  accuracy: number | null;
  url: string | null;
}

export interface BenchPoint {
  variant: string;
  load: Load;
  /** Requests per repeat. */
  requests: number;
  runs: RunStats[];
  median: PointMedians;
  /** ITL gaps of all repeats, in ITL_HISTOGRAM's log bins. */
  itlHistogram: number[];
}

export interface BenchResult {
  schema: typeof BENCH_SCHEMA;
  date: string;
  command: string;
  machine: { cpus: number; cpuModel: string; node: string; platform: string; loadAverageStart: number[]; loadAverageEnd: number[] };
  model: { name: string; realWeights: boolean; maxSeqLen: number; maxContext: number };
  config: Omit<BenchOptions, 'out' | 'url'> & { urls: string[]; maxRunning: number; prompts: { used: number; skipped: string[] } };
  variants: BenchVariant[];
  loads: Load[];
  itlHistogram: typeof ITL_HISTOGRAM;
  points: BenchPoint[];
  durationS: number;
}
