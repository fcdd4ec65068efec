/**
 * Writing tensors into one binary file that ONNX graphs read as external
 * data: weights.bin, and ramps.bin beside it.
 *
 * @module
 */
import fs from 'node:fs';
import type { WeightRef } from './onnx.js';

/** Alignment of every tensor in the file, in bytes. */
const ALIGN = 64;

/** A tensor as written to weights.bin: float32, or int8 codes as uint8 (int32: ramps.bin's token ids). */
export interface StoredTensor {
  dims: number[];
  data: Float32Array | Uint8Array | Int32Array;
}

/** Writes the tensors back to back, aligned, and returns where each landed. */
export function writeWeights(file: string, tensors: Map<string, StoredTensor>): Record<string, WeightRef> {
  const refs: Record<string, WeightRef> = {};
  const fd = fs.openSync(file, 'w');
  try {
    let offset = 0;
    for (const [name, t] of tensors) {
      const padding = (ALIGN - (offset % ALIGN)) % ALIGN;
      if (padding) fs.writeSync(fd, new Uint8Array(padding));
      offset += padding;
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      fs.writeSync(fd, bytes);
      const type = t.data instanceof Uint8Array ? 'uint8' : t.data instanceof Int32Array ? 'int32' : 'float';
      refs[name] = { offset, byteLength: bytes.length, dims: t.dims, type };
      offset += bytes.length;
    }
  } finally {
    fs.closeSync(fd);
  }
  return refs;
}
