/**
 * Reused activation buffers by purpose and size: decoding asks for the same
 * few every step, and a fresh Float32Array per call is measurable garbage at
 * small model sizes.
 *
 * @module
 */
export class Buffers {
  private readonly byKey = new Map<string, Float32Array>();

  /** A buffer of `length` floats for `purpose`; its contents are whatever the last user left. */
  get(purpose: string, length: number): Float32Array {
    const key = `${purpose}:${length}`;
    let buffer = this.byKey.get(key);
    if (!buffer) {
      if (this.byKey.size >= 256) this.byKey.clear(); // prompt chunks come in many lengths
      buffer = new Float32Array(length);
      this.byKey.set(key, buffer);
    }
    return buffer;
  }
}
