// @ts-check
/**
 * One color per emitter: the full model, and each ramp by the block it
 * exits after. Colors come from the Okabe–Ito palette (told apart with
 * the common color-vision deficiencies); the legend lists those in use.
 *
 * @module
 */

/** The full model's color: neutral, since most tokens come from it until the controller earns its thresholds. */
export const FULL_MODEL_COLOR = '#8a94a6';

/** Ramp colors, by layer (cycling past seven ramps). */
const RAMP_COLORS = ['#e69f00', '#56b4e9', '#009e73', '#cc79a7', '#0072b2', '#d55e00', '#f0e442'];

/**
 * The color of whoever emitted a token.
 * @param {number | null} layer the ramp's block, or null for the full model
 */
export function colorFor(layer) {
  return layer === null ? FULL_MODEL_COLOR : (RAMP_COLORS[layer % RAMP_COLORS.length] ?? FULL_MODEL_COLOR);
}

/**
 * A short name: "full model" or "ramp L2" (the ramp after block 2, 0-based as the server counts).
 * @param {number | null} layer
 */
export function emitterName(layer) {
  return layer === null ? 'full model' : `ramp L${layer}`;
}

/** The legend: the full model, and every ramp seen in a reply or reported active by the controller. */
export class Legend {
  /** @param {HTMLElement} list a <ul> */
  constructor(list) {
    this.list = list;
    /** @type {Set<number>} */
    this.layers = new Set();
    this.render();
  }

  /**
   * Adds ramps; re-renders only when one is new.
   * @param {Iterable<number>} layers
   */
  add(layers) {
    const before = this.layers.size;
    for (const layer of layers) this.layers.add(layer);
    if (this.layers.size !== before) this.render();
  }

  render() {
    /** @type {(number | null)[]} */
    const emitters = [...[...this.layers].sort((a, b) => a - b), null];
    this.list.replaceChildren(
      ...emitters.map((layer) => {
        const item = document.createElement('li');
        const swatch = document.createElement('span');
        swatch.className = 'swatch';
        swatch.style.setProperty('--c', colorFor(layer));
        item.append(swatch, layer === null ? 'full model (no exit)' : `ramp after block ${layer} (L${layer})`);
        return item;
      }),
    );
  }
}
