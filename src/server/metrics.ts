/**
 * What /metrics shows, named like vLLM's series with an `offramp:` prefix so
 * existing dashboards carry over. Latencies are measured on the HTTP side,
 * as a client sees them (engine events arriving), in seconds.
 *
 * @module
 */
import type { EngineStats, FinishReason, Usage } from '../engine/index.js';
import type { ControllerState, DraftState } from '../exits/index.js';
import { Registry, type Labels } from './prometheus.js';

// Buckets: vLLM's, extended downwards, because a tiny model on a CPU decodes in well under a millisecond.
const TTFT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const ITL_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5];
const E2E_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120];

/** Occupancy as the HTTP side counts it; used when the engine reports no stats of its own. */
export interface HttpCounts {
  /** Accepted and not yet finished. */
  inFlight: number;
  /** Of those, the ones whose first engine event has arrived. */
  started: number;
  /** Engine restarts after a failure so far (a running total). */
  engineRestarts?: number;
}

/** One request's clock: call `token()` per engine token event and `finish()` once. */
export interface RequestTimer {
  /** A token arrived, from ramp `exitLayer` (null: the full model). */
  token(exitLayer: number | null): void;
  finish(reason: FinishReason, usage: Usage): void;
}

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly running = this.registry.gauge('offramp:num_requests_running', 'Requests holding a batch slot in the engine.');
  private readonly waiting = this.registry.gauge('offramp:num_requests_waiting', 'Requests accepted and waiting for a batch slot.');
  private readonly freeSlots = this.registry.gauge('offramp:num_free_slots', 'Batch (KV cache) slots free in the engine.');
  private readonly inFlight = this.registry.gauge('offramp:num_requests_in_flight', 'HTTP requests accepted and not yet answered in full.');
  private readonly ttft = this.registry.histogram('offramp:time_to_first_token_seconds', 'Time from request arrival to its first token.', TTFT_BUCKETS);
  private readonly itl = this.registry.histogram('offramp:inter_token_latency_seconds', 'Time between consecutive tokens of a request.', ITL_BUCKETS);
  private readonly e2e = this.registry.histogram('offramp:e2e_request_latency_seconds', 'Time from request arrival to its last token.', E2E_BUCKETS);
  private readonly promptTokens = this.registry.counter('offramp:prompt_tokens_total', 'Prompt tokens processed.');
  private readonly generationTokens = this.registry.counter('offramp:generation_tokens_total', 'Tokens generated.');
  private readonly exitTokens = this.registry.counter(
    'offramp:generation_tokens_by_exit_total',
    'Tokens streamed, by the block whose early-exit ramp released them ("full": the whole model).',
  );
  private readonly agreement = this.registry.gauge(
    'offramp:exit_windowed_agreement',
    "Share of recent streamed tokens equal to the full model's argmax (the early-exit constraint's measure).",
  );
  private readonly thresholds = this.registry.gauge('offramp:exit_threshold', 'Current threshold of each active early-exit ramp, by layer (0: never exits).');
  private readonly exitRates = this.registry.gauge('offramp:exit_rate', 'Share of recent tokens streamed from each active ramp, by layer.');
  private readonly activeRamps = this.registry.gauge('offramp:exit_active_ramps', 'Early-exit ramps active now.');
  private readonly draftPlan = this.registry.gauge(
    'offramp:lossless_draft_min_confidence',
    "Lossless mode: the least confidence that drafts, by the drafting ramp's layer and the longest run (no series: nothing drafts).",
  );
  private readonly acceptance = this.registry.gauge(
    'offramp:lossless_acceptance',
    'Lossless mode: share of drafts the full model accepted, by ramp layer ("context": drafts from the text itself; "lookahead": guesses of the lookahead head).',
  );
  private readonly acceptedRun = this.registry.gauge(
    'offramp:lossless_mean_accepted_run',
    'Lossless mode: drafts accepted per verified run, by ramp layer ("context": drafts from the text itself; "lookahead": guesses of the lookahead head).',
  );
  private readonly draftedShare = this.registry.gauge(
    'offramp:lossless_drafted_token_share',
    "Lossless mode: share of lossless requests' tokens that were verified drafts.",
  );
  private readonly msPerToken = this.registry.gauge(
    'offramp:lossless_ms_per_token',
    'Lossless mode: expected milliseconds per token, by plan ("draft": the drafting plan\'s estimate, "off": without drafting).',
  );
  private readonly success = this.registry.counter('offramp:request_success_total', 'Requests finished, by finish reason.');
  private readonly rejected = this.registry.counter('offramp:requests_rejected_total', 'Requests refused before generation, by HTTP status.');
  private readonly restarts = this.registry.counter('offramp:engine_restarts_total', 'Times the engine worker was restarted after a failure.');
  private restartsSeen = 0;
  private readonly busy = this.registry.counter(
    'offramp:engine_busy_seconds_total',
    "Seconds the engine thread spent running steps; its rate is the engine's utilization (near 1: the engine is what limits throughput).",
  );
  private busySeen = 0;
  /** One label object per (model, exit layer), so that counting a token builds none. */
  private readonly tokenLabels = new Map<string, { model: Labels; byExit: Map<number | null, Labels> }>();

  /** Starts timing a request that arrived at `arrivedMs` (performance.now()). */
  startRequest(model: string, arrivedMs: number): RequestTimer {
    const { model: labels, byExit } = this.labelsFor(model);
    let lastTokenMs = -1;
    let finished = false;
    return {
      token: (exitLayer) => {
        let exitLabels = byExit.get(exitLayer);
        if (!exitLabels) byExit.set(exitLayer, (exitLabels = { ...labels, exit_layer: exitLayer === null ? 'full' : String(exitLayer) }));
        this.exitTokens.inc(exitLabels);
        const now = performance.now();
        if (lastTokenMs < 0) this.ttft.observe((now - arrivedMs) / 1000, labels);
        else this.itl.observe((now - lastTokenMs) / 1000, labels);
        lastTokenMs = now;
      },
      finish: (reason, usage) => {
        if (finished) return;
        finished = true;
        this.e2e.observe((performance.now() - arrivedMs) / 1000, labels);
        this.promptTokens.inc(labels, usage.promptTokens);
        this.generationTokens.inc(labels, usage.completionTokens);
        this.success.inc({ ...labels, finished_reason: reason });
      },
    };
  }

  private labelsFor(model: string): { model: Labels; byExit: Map<number | null, Labels> } {
    let entry = this.tokenLabels.get(model);
    if (!entry) this.tokenLabels.set(model, (entry = { model: { model_name: model }, byExit: new Map() }));
    return entry;
  }

  /** Counts a request answered with an error status before it ran. */
  reject(status: number): void {
    this.rejected.inc({ status: String(status) });
  }

  /** The exposition, with the gauges read now: the engine's own stats when it has them, else the HTTP side's counts. */
  render(engine: EngineStats | null, http: HttpCounts): string {
    this.inFlight.set(http.inFlight);
    const restarts = http.engineRestarts ?? 0;
    this.restarts.inc({}, Math.max(0, restarts - this.restartsSeen));
    this.restartsSeen = Math.max(restarts, this.restartsSeen);
    if (engine) {
      this.running.set(engine.running);
      this.waiting.set(engine.waiting);
      this.freeSlots.set(engine.freeSlots);
      // A smaller total than last seen is a restarted worker's, counted from its own start (a new worker
      // that has already passed the old total by the next scrape is undercounted: rare, and only once).
      this.busy.inc({}, engine.busySeconds >= this.busySeen ? engine.busySeconds - this.busySeen : engine.busySeconds);
      this.busySeen = engine.busySeconds;
      if (engine.exits) this.setExitGauges(engine.exits);
      if (engine.lossless) this.setDraftGauges(engine.lossless);
    } else {
      this.running.set(http.started);
      this.waiting.set(http.inFlight - http.started);
    }
    return this.registry.render();
  }

  private setDraftGauges(drafts: DraftState): void {
    const { plan } = drafts;
    this.draftPlan.clear();
    if (plan) this.draftPlan.set(plan.minConfidence, { layer: String(plan.layer), max_draft: String(plan.maxDraft) });
    this.acceptance.clear();
    this.acceptedRun.clear();
    for (const { layer, acceptance, meanAcceptedRun } of [
      ...drafts.ramps,
      { layer: 'context', ...drafts.context },
      { layer: 'lookahead', ...drafts.lookahead },
    ]) {
      if (acceptance !== null) this.acceptance.set(acceptance, { layer: String(layer) });
      if (meanAcceptedRun !== null) this.acceptedRun.set(meanAcceptedRun, { layer: String(layer) });
    }
    if (drafts.tokens > 0) this.draftedShare.set(drafts.draftedTokens / drafts.tokens);
    this.msPerToken.clear();
    if (plan?.msPerToken) this.msPerToken.set(plan.msPerToken, { plan: 'draft' });
    if (drafts.baselineMsPerToken !== null) this.msPerToken.set(drafts.baselineMsPerToken, { plan: 'off' });
  }

  private setExitGauges(exits: ControllerState): void {
    if (exits.windowedAgreement !== null) this.agreement.set(exits.windowedAgreement);
    this.activeRamps.set(exits.ramps.length);
    this.thresholds.clear();
    this.exitRates.clear();
    for (const ramp of exits.ramps) {
      this.thresholds.set(ramp.threshold, { layer: String(ramp.layer) });
      this.exitRates.set(ramp.exitRate, { layer: String(ramp.layer) });
    }
  }
}
