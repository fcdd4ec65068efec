/**
 * What a soak run takes (its options and their defaults) and what it
 * reports: shared by the run (soak.ts) and its phases (soak-phases.ts).
 */
import path from 'node:path';
import { PROJECT_ROOT } from '../src/util/index.js';
import type { Incident, TextMismatch } from './soak-counters.js';

export interface SoakOptions {
  /** Length of the mixed-load phase. */
  minutes: number;
  /**
   * The same mix before it (no fault, not counted), so resident memory has
   * reached its working size when the baseline is read: it climbs for the
   * first ten seconds or so (default: 5% of the run, 10 to 30 s).
   */
  warmupSeconds?: number;
  /** Stop the load after this many requests, if that comes first. */
  requests?: number;
  /** Clients sending one request after another. */
  concurrency: number;
  /** The server's batch slots and queue. */
  maxRunning: number;
  maxQueued: number;
  /** How the worker is failed once, at `faultAt` of the run: 'none' for no fault. */
  fault: 'crash' | 'step' | 'none';
  faultAt: number;
  seed: number;
  /** Where the JSON report goes; null: nowhere. */
  out: string | null;
  log: (line: string) => void;
}

export const DEFAULT_SOAK_OPTIONS: SoakOptions = {
  minutes: 10,
  concurrency: 12,
  maxRunning: 8,
  maxQueued: 8,
  fault: 'crash',
  faultAt: 0.4,
  seed: 1,
  out: path.join(PROJECT_ROOT, 'bench', 'results', 'soak.json'),
  log: (line) => process.stderr.write(`soak: ${line}\n`),
};

export interface SoakReport {
  passed: boolean;
  failures: string[];
  options: Omit<SoakOptions, 'log' | 'out'>;
  durationS: number;
  requests: { total: number; byKind: Record<string, number>; byStatus: Record<string, number> };
  /** Streams answered 200: how they ended. */
  streams: { accepted: number; finished: number; errorFrames: number };
  /** Finished answers (streamed or whole) compared with their solo texts. */
  texts: { checked: number; exact: number; mismatched: number; mismatches: TextMismatch[] };
  disconnects: number;
  malformed: { sent: number; wrongStatus: number };
  bursts: { count: number; sent: number; rejected429: number };
  fault: { kind: string; atS: number | null; restartingSeen: boolean; recoveredAfterMs: number | null; excusedIncidents: number };
  incidents: { unexcused: number; examples: Incident[] };
  hung: number;
  health: { checks: number; maxLatencyMs: number; p99LatencyMs: number };
  /** baselineKb: after warm-up, or after the worker's restart when that is higher (rebaselinedAfterFault). */
  memory: {
    baselineKb: number | null;
    rebaselinedAfterFault: boolean;
    endKb: number | null;
    maxKb: number | null;
    ratio: number | null;
    samples: [number, number][];
  };
  endState: Record<string, number>;
  generatedTokens: number;
  serverExitCode: number | null;
  serverLog: string[];
}
