// @ts-check
/**
 * A live chart of the exit controller, drawn by hand in SVG from GET /exits
 * polled: windowed agreement against the accuracy constraint (top), and
 * each active ramp's threshold (bottom, in its legend color). The text
 * summary under it says the same in words (and is the chart's label).
 *
 * @module
 */
import { fetchExits } from './api.js';
import { colorFor, emitterName } from './palette.js';

/** @typedef {import('./api.js').ExitsState} ExitsState */
/** @typedef {{ agreement: number | null, accuracy: number, thresholds: Map<number, number> }} Sample */

const SVG_NS = 'http://www.w3.org/2000/svg';
const WIDTH = 320;
/** Samples kept: about two minutes at the idle polling rate. */
const HISTORY = 120;
const TOP = { y0: 14, y1: 78 };
const BOTTOM = { y0: 108, y1: 170 };
const LEFT = 34;

/**
 * @param {string} tag
 * @param {Record<string, string | number>} attrs
 * @param {string} [text]
 */
function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** @param {number} v */
const percent = (v) => `${(v * 100).toFixed(1)}%`;

export class ControllerChart {
  /**
   * @param {SVGSVGElement} chart
   * @param {HTMLElement} summary
   * @param {(layers: number[]) => void} onRamps told the active ramps after each poll (for the legend)
   */
  constructor(chart, summary, onRamps) {
    this.chart = chart;
    this.summary = summary;
    this.onRamps = onRamps;
    /** @type {Sample[]} */
    this.samples = [];
    /** Poll often while a reply streams, slowly otherwise. */
    this.fast = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.poll();
    });
  }

  /** @param {boolean} fast */
  setFast(fast) {
    this.fast = fast;
    if (fast) this.poll();
  }

  /** Polls now and schedules the next poll (skipped while the tab is hidden). */
  async poll() {
    clearTimeout(this.timer);
    if (document.hidden) return;
    try {
      this.update(await fetchExits(AbortSignal.timeout(5000)));
    } catch (error) {
      this.summary.textContent = `Controller state unavailable: ${error instanceof Error ? error.message : String(error)}`;
    }
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.poll(), this.fast ? 250 : 1000);
  }

  /** @param {ExitsState} state */
  update(state) {
    if (!state.enabled) {
      this.summary.textContent = 'Early exits are off on this server (offramp serve --early-exit off): every token comes from the full model.';
      this.chart.replaceChildren();
      return;
    }
    const ramps = state.ramps ?? [];
    this.onRamps(ramps.map((r) => r.layer));
    this.samples.push({
      agreement: state.windowedAgreement ?? null,
      accuracy: state.accuracy ?? 0.99,
      thresholds: new Map(ramps.map((r) => [r.layer, r.threshold])),
    });
    if (this.samples.length > HISTORY) this.samples.shift();
    this.draw();
    const agreement = state.windowedAgreement == null ? 'no feedback yet' : `${percent(state.windowedAgreement)} agreement with the full model`;
    const rampText = ramps.length
      ? ramps.map((r) => `${emitterName(r.layer)} threshold ${r.threshold.toFixed(3)}, exits ${percent(r.exitRate)}`).join('; ')
      : 'no active ramps';
    const full = state.fullModelRate == null ? '' : `; full model ${percent(state.fullModelRate)}`;
    this.summary.textContent = `${agreement} (constraint ${percent(state.accuracy ?? 0.99)}), over ${state.tokens ?? 0} tokens seen. ${rampText}${full}.`;
  }

  /** x of sample i, newest at the right edge. */
  x(/** @type {number} */ i) {
    return LEFT + ((WIDTH - LEFT - 6) * (i + HISTORY - this.samples.length)) / (HISTORY - 1);
  }

  draw() {
    const agreements = this.samples.flatMap((s) => (s.agreement === null ? [] : [s.agreement]));
    const accuracy = this.samples.at(-1)?.accuracy ?? 0.99;
    // Agreement lives near 1: zoom to the band that holds the constraint and every sample.
    const aMin = Math.max(0, Math.floor(Math.min(accuracy - (1 - accuracy), ...agreements) * 100) / 100);
    const yA = (/** @type {number} */ v) => TOP.y1 - ((v - aMin) / (1 - aMin)) * (TOP.y1 - TOP.y0);
    const thresholds = this.samples.flatMap((s) => [...s.thresholds.values()]);
    const tMax = Math.max(0.01, ...thresholds) * 1.15;
    const yT = (/** @type {number} */ v) => BOTTOM.y1 - (v / tMax) * (BOTTOM.y1 - BOTTOM.y0);

    const parts = [
      svg('text', { x: 2, y: 9, class: 'chart-title' }, 'windowed agreement'),
      svg('text', { x: 2, y: TOP.y0 + 4, class: 'chart-axis' }, '100%'),
      svg('text', { x: 2, y: TOP.y1, class: 'chart-axis' }, `${Math.round(aMin * 100)}%`),
      svg('line', { x1: LEFT, x2: WIDTH - 6, y1: yA(accuracy), y2: yA(accuracy), class: 'chart-constraint' }),
      svg('text', { x: WIDTH - 6, y: yA(accuracy) - 3, class: 'chart-axis', 'text-anchor': 'end' }, `constraint ${percent(accuracy)}`),
      svg('text', { x: 2, y: BOTTOM.y0 - 6, class: 'chart-title' }, 'ramp thresholds (1 − confidence)'),
      svg('text', { x: 2, y: BOTTOM.y0 + 4, class: 'chart-axis' }, tMax.toFixed(2)),
      svg('text', { x: 2, y: BOTTOM.y1, class: 'chart-axis' }, '0'),
      svg('line', { x1: LEFT, x2: WIDTH - 6, y1: BOTTOM.y1, y2: BOTTOM.y1, class: 'chart-baseline' }),
      svg('line', { x1: LEFT, x2: WIDTH - 6, y1: TOP.y1, y2: TOP.y1, class: 'chart-baseline' }),
    ];
    const agreementPoints = this.samples.flatMap((s, i) => (s.agreement === null ? [] : [`${this.x(i).toFixed(1)},${yA(s.agreement).toFixed(1)}`]));
    if (agreementPoints.length) parts.push(svg('polyline', { points: agreementPoints.join(' '), class: 'chart-agreement' }));
    const layers = new Set(this.samples.flatMap((s) => [...s.thresholds.keys()]));
    for (const layer of layers) {
      // A ramp's line breaks while it is inactive: one polyline per run of samples that have it.
      /** @type {string[][]} */
      const runs = [[]];
      this.samples.forEach((s, i) => {
        const t = s.thresholds.get(layer);
        if (t === undefined) runs.push([]);
        else runs.at(-1)?.push(`${this.x(i).toFixed(1)},${yT(t).toFixed(1)}`);
      });
      for (const run of runs.filter((r) => r.length)) {
        const line = svg('polyline', { points: run.join(' '), class: 'chart-threshold', stroke: colorFor(layer) });
        line.append(svg('title', {}, `${emitterName(layer)} threshold`));
        parts.push(line);
      }
    }
    this.chart.replaceChildren(...parts);
  }
}
