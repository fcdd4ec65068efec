/**
 * Whether a lossless sequence drafts from its own text (prompt lookup) at
 * a step: drafting pays while enough of its drafts hold, and the text
 * decides that as it goes.
 *
 * A verifying pass over d drafted positions costs more than a fused step
 * (on stories260K about 230 + 14·d µs against 168), so drafts pay only
 * while the full model keeps about half a draft per pass on average: a
 * sequence whose recent passes keep fewer stops drafting. Its text may
 * start repeating itself later (a story opening is new, its middle tells
 * again what the opening did), so a closed gate still lets one step in
 * PROBE_FIRST draft, and waits twice as long after each probe that kept
 * nothing, up to PROBE_MAX steps: text that never repeats costs at most
 * one failed pass in 64 steps.
 *
 * On the greedy continuations of prompts.json, replayed with those costs,
 * this keeps 1.21x of the 1.21x that drafting at every match gives; the
 * gate it replaces (closed for good after 12 drafts with under 30% kept)
 * kept 1.11x, because a story's first drafts are its worst.
 *
 * @module
 */

/** Recent passes weigh more: each pass's tally decays by this much per later pass. */
const DECAY = 0.8;
/** Below this many drafts kept per pass (decayed), the gate closes. */
const MIN_ACCEPTED_PER_PASS = 0.5;
/** The first passes of a sequence always draft: fewer than this many (decayed) say too little. */
const TRIAL_PASSES = 3;
/** A closed gate lets a step draft after this many closed steps, twice as many after each probe that kept nothing, up to PROBE_MAX. */
const PROBE_FIRST = 4;
const PROBE_MAX = 64;

export class ContextDraftGate {
  private passes = 0;
  private accepted = 0;
  private closedSteps = 0;
  private wait = PROBE_FIRST;
  private probing = false;

  /** Whether the sequence drafts from its text this step; asked once per step. */
  opens(): boolean {
    this.probing = false;
    if (this.passes < TRIAL_PASSES || this.accepted >= MIN_ACCEPTED_PER_PASS * this.passes) {
      this.closedSteps = 0;
      this.wait = PROBE_FIRST;
      return true;
    }
    if (++this.closedSteps < this.wait) return false;
    this.closedSteps = 0;
    this.probing = true;
    return true;
  }

  /** The outcome of a pass that verified drafts from the text: how many of them held. */
  record(accepted: number): void {
    if (this.probing) this.wait = accepted > 0 ? PROBE_FIRST : Math.min(PROBE_MAX, 2 * this.wait);
    this.passes = DECAY * this.passes + 1;
    this.accepted = DECAY * this.accepted + accepted;
  }
}
