// @ts-check
/**
 * Live statistics of one reply, as the browser sees it: time to first
 * token (send → first content chunk), tokens per second after the first,
 * inter-token latency (gaps between content chunks), and the share of
 * tokens each emitter produced.
 *
 * @module
 */
import { colorFor, emitterName } from './palette.js';

/**
 * @param {number[]} sorted ascending
 * @param {number} q in [0, 1]
 */
function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

/** @param {number} ms */
const formatMs = (ms) => (Number.isFinite(ms) ? (ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`) : '–');

export class ReplyStats {
  /** @param {number} sentMs performance.now() when the request went out */
  constructor(sentMs) {
    this.sentMs = sentMs;
    /** @type {number | null} */
    this.firstMs = null;
    this.lastMs = sentMs;
    /** Content chunks seen: one per token the server streamed (a chunk may hold a held-back character or two). */
    this.tokens = 0;
    /** @type {number[]} gaps between consecutive content chunks, ms */
    this.gapsMs = [];
    /** @type {Map<number | null, number>} tokens per emitter (null: full model) */
    this.byEmitter = new Map();
  }

  /**
   * Records a content chunk that arrived at `nowMs`.
   * @param {number | null} layer
   * @param {number} nowMs
   */
  token(layer, nowMs) {
    if (this.firstMs === null) this.firstMs = nowMs;
    else this.gapsMs.push(nowMs - this.lastMs);
    this.lastMs = nowMs;
    this.tokens += 1;
    this.byEmitter.set(layer, (this.byEmitter.get(layer) ?? 0) + 1);
  }

  /** The numbers, for display and tests. */
  summary() {
    const ttftMs = this.firstMs === null ? NaN : this.firstMs - this.sentMs;
    const spanMs = this.firstMs === null ? 0 : this.lastMs - this.firstMs;
    const tokensPerSecond = this.tokens > 1 && spanMs > 0 ? ((this.tokens - 1) * 1000) / spanMs : NaN;
    const sorted = [...this.gapsMs].sort((a, b) => a - b);
    const shares = [...this.byEmitter.entries()]
      .sort(([a], [b]) => (a === null ? 1 : b === null ? -1 : a - b))
      .map(([layer, count]) => ({ layer, share: count / this.tokens }));
    return { ttftMs, tokensPerSecond, itlP50Ms: quantile(sorted, 0.5), itlP90Ms: quantile(sorted, 0.9), tokens: this.tokens, shares };
  }

  /**
   * Writes the summary into `element`: a line of numbers and a bar of shares.
   * @param {HTMLElement} element
   */
  render(element) {
    const s = this.summary();
    // A reply that failed or was stopped before its first token has nothing to measure.
    if (s.tokens === 0) return void element.replaceChildren();
    const line = document.createElement('p');
    line.className = 'stats-line';
    const rate = Number.isFinite(s.tokensPerSecond) ? `${s.tokensPerSecond.toFixed(0)} tok/s` : '– tok/s';
    const shares = s.shares.map(({ layer, share }) => `${emitterName(layer)} ${(share * 100).toFixed(0)}%`).join(' · ');
    line.textContent = `TTFT ${formatMs(s.ttftMs)} · ${rate} · ITL p50 ${formatMs(s.itlP50Ms)}, p90 ${formatMs(s.itlP90Ms)} · ${s.tokens} tokens${shares ? ` · ${shares}` : ''}`;

    const bar = document.createElement('div');
    bar.className = 'share-bar';
    bar.setAttribute('aria-hidden', 'true');
    for (const { layer, share } of s.shares) {
      const part = document.createElement('span');
      part.style.setProperty('--c', colorFor(layer));
      part.style.width = `${share * 100}%`;
      part.title = `${emitterName(layer)}: ${(share * 100).toFixed(1)}%`;
      bar.append(part);
    }
    element.replaceChildren(line, bar);
  }
}
