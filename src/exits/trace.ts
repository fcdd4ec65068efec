/**
 * Exit traces: what every candidate ramp said about every generated token,
 * recorded once by the engine with all candidate ramps evaluated, then
 * replayed through any controller without a model (like vLLM's scheduler
 * tests feed hand-made outputs).
 *
 * Format `offramp-exit-trace/1`, JSON Lines:
 *
 *     {"format":"offramp-exit-trace/1","model":"stories260K","numLayers":5,
 *      "candidateLayers":[0,1,2,3],"costs":{"blockMs":[...],"rampMs":0.02},
 *      "confidence":"margin"}
 *     {"ramps":[{"layer":0,"confidence":0.12,"argmax":410},...],"final":403}
 *     ...
 *
 * The header comes first; `confidence` (the ConfidenceKind used) is optional.
 * Each later line is one generated token, in generation order: one entry per
 * candidate ramp (increasing layer) with its confidence and argmax, and the
 * full model's argmax. Blank lines are ignored.
 *
 * @module
 */
import fs from 'node:fs';
import { z } from 'zod';
import type { ExitController } from './controller.js';
import { CostsSchema } from './options.js';
import { savedMs, type RampScore } from './types.js';

export const TRACE_FORMAT = 'offramp-exit-trace/1';

export const TraceHeaderSchema = z.object({
  format: z.literal(TRACE_FORMAT),
  model: z.string(),
  numLayers: z.number().int().min(2),
  candidateLayers: z.array(z.number().int().min(0)),
  costs: CostsSchema,
  confidence: z.enum(['margin', 'max-prob', 'entropy', 'probe']).optional(),
});
export type TraceHeader = z.infer<typeof TraceHeaderSchema>;

export const TraceTokenSchema = z.object({
  ramps: z.array(z.object({ layer: z.number().int().min(0), confidence: z.number().min(0).max(1), argmax: z.number().int().min(0) })),
  final: z.number().int().min(0),
});
export type TraceToken = z.infer<typeof TraceTokenSchema>;

export interface Trace {
  header: TraceHeader;
  tokens: TraceToken[];
}

/** A malformed trace; the message names the source and line. */
export class TraceFormatError extends Error {
  override name = 'TraceFormatError';
}

/** Parses trace text. @throws TraceFormatError */
export function parseTrace(text: string, source = 'trace'): Trace {
  const lines = text.split('\n');
  let header: TraceHeader | null = null;
  const tokens: TraceToken[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new TraceFormatError(`${source}:${i + 1}: not JSON`);
    }
    const parsed = header === null ? TraceHeaderSchema.safeParse(json) : TraceTokenSchema.safeParse(json);
    if (!parsed.success) {
      const what = header === null ? `header (expected format "${TRACE_FORMAT}")` : 'token line';
      throw new TraceFormatError(`${source}:${i + 1}: bad ${what}: ${parsed.error.issues.map((e) => `${e.path.join('.')} ${e.message}`).join('; ')}`);
    }
    if (header === null) header = parsed.data as TraceHeader;
    else tokens.push(parsed.data as TraceToken);
  });
  if (header === null) throw new TraceFormatError(`${source}: empty, no header`);
  return { header, tokens };
}

/** Reads and parses a trace file. @throws TraceFormatError */
export function readTrace(path: string): Trace {
  return parseTrace(fs.readFileSync(path, 'utf8'), path);
}

/** The trace as JSON Lines text. */
export function formatTrace(trace: Trace): string {
  return [trace.header, ...trace.tokens].map((line) => JSON.stringify(line)).join('\n') + '\n';
}

export function writeTrace(path: string, trace: Trace): void {
  fs.writeFileSync(path, formatTrace(trace));
}

/**
 * Appends tokens to a trace file as they are generated (synchronous writes:
 * the engine's worker records a line per token and a crash keeps what was written).
 */
export class TraceWriter {
  private fd: number | null;

  constructor(path: string, header: TraceHeader) {
    this.fd = fs.openSync(path, 'w');
    fs.writeSync(this.fd, JSON.stringify(TraceHeaderSchema.parse(header)) + '\n');
  }

  write(token: TraceToken): void {
    if (this.fd === null) throw new Error('TraceWriter: write after close');
    fs.writeSync(this.fd, JSON.stringify(token) + '\n');
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

export interface ReplayOptions {
  /**
   * Model the FREE catch-up: feedback for exited tokens is held back until a
   * token that reaches the full model (or until this many are pending), then
   * delivered in order, as the engine's deep pass would. 0 (default): each
   * token's feedback arrives at once.
   */
  maxDeferred?: number;
}

export interface ReplayDecision {
  exitLayer: number | null;
  /** Whether the streamed token equalled the full model's. */
  agrees: boolean;
}

export interface ReplayResult {
  decisions: ReplayDecision[];
  /** Share of streamed tokens equal to the full model's (1 for an empty trace). */
  agreement: number;
  /** Share of tokens streamed from a ramp. */
  exitRate: number;
  /** Latency saved over the trace by exits, in ms, at the header's costs. */
  savedMs: number;
}

/**
 * Feeds a trace through `controller` token by token, as the engine would:
 * each token exits at the first active ramp that clears its threshold, and
 * its feedback covers every ramp active at that moment.
 */
export function replay(controller: ExitController, trace: Trace, options: ReplayOptions = {}): ReplayResult {
  const maxDeferred = options.maxDeferred ?? 0;
  const decisions: ReplayDecision[] = [];
  const pending: { ramps: RampScore[]; exitLayer: number | null }[] = [];
  let correct = 0;
  let exited = 0;
  let saved = 0;
  for (const token of trace.tokens) {
    const ramps: RampScore[] = [];
    let exitLayer: number | null = null;
    let streamed = token.final;
    for (const { layer } of controller.activeRamps()) {
      const score = token.ramps.find((r) => r.layer === layer);
      if (!score) continue; // the trace did not evaluate this layer
      ramps.push({ layer, confidence: score.confidence, agrees: score.argmax === token.final });
      if (exitLayer === null && controller.exitAt(layer, score.confidence)) {
        exitLayer = layer;
        streamed = score.argmax;
      }
    }
    const agrees = streamed === token.final;
    decisions.push({ exitLayer, agrees });
    if (agrees) correct++;
    if (exitLayer !== null) {
      exited++;
      saved += savedMs(trace.header.costs, exitLayer);
    }
    pending.push({ ramps, exitLayer });
    if (exitLayer === null || pending.length >= Math.max(1, maxDeferred)) for (const rec of pending.splice(0)) controller.record(rec);
  }
  for (const rec of pending.splice(0)) controller.record(rec);
  const n = trace.tokens.length;
  return { decisions, agreement: n === 0 ? 1 : correct / n, exitRate: n === 0 ? 0 : exited / n, savedMs: saved };
}
