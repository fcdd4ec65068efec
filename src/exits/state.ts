/**
 * The exit controller's JSON-able snapshot (served as GET /exits, read by
 * metrics) and its adjustments log.
 *
 * @module
 */
import type { Costs, Ramp } from './types.js';

export type ControllerEventKind = 'tune' | 'retune' | 'emergency' | 'probation' | 'deactivate' | 'activate' | 'budget' | 'forced';

/** One entry of the adjustments log. */
export interface ControllerEvent {
  /** Records seen when it happened. */
  token: number;
  kind: ControllerEventKind;
  /** Ramps it concerned. */
  layers: number[];
  reason: string;
  /** Active ramps afterwards. */
  ramps: Ramp[];
}

export interface RampState extends Ramp {
  /** Share of the accuracy window streamed from this ramp. */
  exitRate: number;
  /** Utility over the last completed adjustment period, in ms; null before one. */
  utilityMs: number | null;
  /** Negative last period, given its one re-tune. */
  onProbation: boolean;
}

/** JSON-able snapshot for GET /exits and metrics. */
export interface ControllerState {
  accuracy: number;
  tuningTarget: number;
  frozen: boolean;
  /** Records seen. */
  tokens: number;
  windowTokens: number;
  /** Streamed agreement over the accuracy window; null before any record. */
  windowedAgreement: number | null;
  cumulativeAgreement: number | null;
  /** Share of the accuracy window streamed from the full model. */
  fullModelRate: number | null;
  ramps: RampState[];
  /** Ramps allowed by the budget and maxRamps. */
  maxActiveRamps: number;
  /**
   * Shadow records held, and each candidate's best utility as a new ramp
   * over them in ms, at the best threshold the tuning target allows (empty
   * until there are enough): a negative one is not tried.
   */
  shadow: { records: number; bestMs: Record<string, number> };
  violationStreak: number;
  costs: Costs;
  /** Timed steps of a sequence decoding alone, ms per token: with a ramp that may exit, and on the fused graph; null until timed. */
  measured: { exitingMsPerToken: number | null; fusedMsPerToken: number | null };
  /** tunes: tuner runs that moved a threshold; retunes: runs from all zeros (violations, negative utility). */
  counts: Record<'tunes' | 'retunes' | 'emergencies' | 'activations' | 'deactivations', number>;
  log: ControllerEvent[];
}
