/**
 * What the soak records about its requests: the counts in its report, which
 * the warm-up clears in one `reset()`, and the incidents (failures), which
 * nothing clears; and how one answer is judged into both.
 *
 * @module
 */
import type { Malformed, Outcome, SoakCase } from './soak-requests.js';

/** A request by what the client does with it. */
export type Kind = 'stream' | 'whole' | 'disconnect' | 'malformed' | 'burst';

/** Something that failed (or would have, outside the fault's window). */
export interface Incident {
  atMs: number;
  kind: Kind | 'health' | 'fault';
  what: string;
  /** May be excused when it happened around the forced fault. */
  excusable: boolean;
}

/** A finished answer whose text differs from its request's solo answer. */
export interface TextMismatch {
  case: string;
  expected: string;
  got: string;
}

/** A request with no complete answer after this long counts as hung (the clients' timeout). */
export const REQUEST_TIMEOUT_MS = 60_000;

/** The report keeps this many mismatched texts in full. */
const MAX_MISMATCH_EXAMPLES = 5;

/**
 * Every count in the report. They live in one object so that the warm-up can
 * clear them all at once: each part (mismatched, hung) is cleared with the
 * whole it is part of (checked, total), so no part can outgrow its whole.
 */
export class SoakCounters {
  /** Requests of every kind, malformed ones included. */
  total = 0;
  byKind: Record<string, number> = {};
  byStatus: Record<string, number> = {};
  /** Streams answered 200: how they ended. */
  streams = { accepted: 0, finished: 0, errorFrames: 0 };
  /** Finished answers (streamed or whole) compared with their solo texts. */
  texts = { checked: 0, exact: 0, mismatched: 0, mismatches: [] as TextMismatch[] };
  disconnects = 0;
  /** Requests with no complete answer within the client's timeout. */
  hung = 0;
  malformed = { sent: 0, wrongStatus: 0 };
  bursts = { count: 0, sent: 0, rejected429: 0 };

  /** Every count back to zero, by taking a new object's fields: a count added later is cleared too. */
  reset(): void {
    Object.assign(this, new SoakCounters());
  }

  private count(kind: Kind, status: number): void {
    this.total += 1;
    this.byKind[kind] = (this.byKind[kind] ?? 0) + 1;
    this.byStatus[status] = (this.byStatus[status] ?? 0) + 1;
  }

  /**
   * Judges a generation's outcome: counts it, and files an incident for
   * anything wrong. `want` is its case's solo text.
   */
  judgeGeneration(incidents: Incident[], kind: Kind, soakCase: SoakCase, want: string | undefined, outcome: Outcome): void {
    this.count(kind, outcome.status);
    const at = outcome.statusAtMs || outcome.endAtMs;
    // The worker's crash never touches the sockets: a failed connection is never excused.
    if (outcome.failed) return void incidents.push({ atMs: outcome.endAtMs, kind, what: `connection failed: ${outcome.failed}`, excusable: false });
    if (kind === 'disconnect') {
      this.disconnects += 1;
      if (outcome.status >= 500) incidents.push({ atMs: at, kind, what: `status ${outcome.status}`, excusable: true });
      return;
    }
    if (outcome.aborted) {
      this.hung += 1;
      return void incidents.push({
        atMs: outcome.endAtMs,
        kind,
        what: `hung: no complete answer within ${REQUEST_TIMEOUT_MS / 1000} s (${soakCase.id})`,
        excusable: false,
      });
    }
    if (outcome.status === 429) {
      if (kind === 'burst') this.bursts.rejected429 += 1;
      if (!outcome.retryAfter) incidents.push({ atMs: at, kind, what: '429 without Retry-After', excusable: false });
      return;
    }
    if (outcome.status >= 500) {
      return void incidents.push({ atMs: at, kind, what: `status ${outcome.status}: ${outcome.error?.message ?? ''}`, excusable: true });
    }
    if (outcome.status !== 200)
      return void incidents.push({ atMs: at, kind, what: `status ${outcome.status} for ${soakCase.id}: ${outcome.error?.message}`, excusable: false });
    const streamed = kind !== 'whole';
    if (streamed) this.streams.accepted += 1;
    if (streamed && !outcome.done)
      return void incidents.push({ atMs: outcome.endAtMs, kind, what: `stream ended without [DONE] (${soakCase.id})`, excusable: false });
    if (outcome.error) {
      this.streams.errorFrames += 1;
      return void incidents.push({ atMs: outcome.endAtMs, kind, what: `error frame: ${outcome.error.message}`, excusable: true });
    }
    if (outcome.finishReason !== 'stop' && outcome.finishReason !== 'length') {
      return void incidents.push({ atMs: outcome.endAtMs, kind, what: `no finish_reason (${soakCase.id})`, excusable: false });
    }
    if (streamed) this.streams.finished += 1;
    this.texts.checked += 1;
    if (outcome.text === want) this.texts.exact += 1;
    else {
      this.texts.mismatched += 1;
      if (this.texts.mismatches.length < MAX_MISMATCH_EXAMPLES) this.texts.mismatches.push({ case: soakCase.id, expected: want ?? '', got: outcome.text });
      incidents.push({ atMs: outcome.endAtMs, kind, what: `text differs from its solo answer (${soakCase.id})`, excusable: false });
    }
  }

  /** Judges a malformed request's outcome: it must get its status and an error message. */
  judgeMalformed(incidents: Incident[], bad: Malformed, outcome: Outcome): void {
    this.count('malformed', outcome.status);
    this.malformed.sent += 1;
    if (outcome.status !== bad.status || !outcome.error?.message) {
      this.malformed.wrongStatus += 1;
      const what = outcome.failed ? `connection failed: ${outcome.failed}` : `status ${outcome.status}, not ${bad.status}`;
      incidents.push({ atMs: outcome.endAtMs, kind: 'malformed', what: `${bad.name}: ${what}`, excusable: false });
    }
  }
}
