/**
 * mulberry32: a small, fast, seedable generator. Same seed, same stream —
 * what reproducible sampling and deterministic random weights both need.
 *
 * @module
 */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  nextUint32(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  static randomSeed(): number {
    return (Math.random() * 4294967296) >>> 0;
  }
}
