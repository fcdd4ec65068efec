/**
 * int8 block quantization of linear-layer weights, in the layout of
 * onnxruntime's contrib op `com.microsoft::MatMulNBits` with `bits: 8`:
 *
 *   codes   uint8 [out, ceil(in / 32), 32]   row n of W ([out, in]), in blocks of 32
 *   scales  float [out * ceil(in / 32)]      one per block
 *
 * w ≈ (code - 128) * scale, with 128 the op's default zero point (no
 * zero_points input) and a symmetric scale max|w| / 127 per block, so codes
 * span 1..255. A row whose `in` is not a multiple of 32 is padded with zeros
 * (code 128), which add nothing to the product.
 *
 * @module
 */
import type { Tensor } from './checkpoint.js';

/** Weights per scale. 32 keeps the error of one outlier local; it is also what MatMulNBits' int8 kernels are fastest with here. */
export const INT8_BLOCK_SIZE = 32;

/** The zero point MatMulNBits assumes for 8 bits when no zero_points input is given. */
export const INT8_ZERO_POINT = 128;

export interface Int8Weight {
  /** The codes' shape: [out, blocksPerRow, INT8_BLOCK_SIZE]. */
  dims: [number, number, number];
  /** [out, blocksPerRow, INT8_BLOCK_SIZE] */
  codes: Uint8Array;
  /** [out * blocksPerRow] */
  scales: Float32Array;
}

/** Quantizes a weight stored [out, in] (PyTorch's nn.Linear layout). */
export function quantizeInt8(weight: Tensor): Int8Weight {
  const [outFeatures, inFeatures] = weight.dims as [number, number];
  const blocks = Math.ceil(inFeatures / INT8_BLOCK_SIZE); // the last one zero-padded
  const codes = new Uint8Array(outFeatures * blocks * INT8_BLOCK_SIZE).fill(INT8_ZERO_POINT);
  const scales = new Float32Array(outFeatures * blocks);
  for (let row = 0; row < outFeatures; row++) {
    for (let block = 0; block < blocks; block++) {
      const from = row * inFeatures + block * INT8_BLOCK_SIZE;
      const to = row * inFeatures + Math.min(inFeatures, (block + 1) * INT8_BLOCK_SIZE);
      let maxAbs = 0;
      for (let i = from; i < to; i++) maxAbs = Math.max(maxAbs, Math.abs(weight.data[i]!));
      // Rounded to float32 first: codes are computed against the scale the kernel will read.
      const scale = Math.fround(maxAbs / 127);
      const index = row * blocks + block;
      scales[index] = scale;
      if (scale === 0) continue; // an all-zero block (or one below float32's range) stays at the zero point
      // |w| <= maxAbs, so |w / scale| rounds to at most 127: codes stay within 1..255.
      const out = index * INT8_BLOCK_SIZE;
      for (let i = from; i < to; i++) codes[out + i - from] = INT8_ZERO_POINT + Math.round(weight.data[i]! / scale);
    }
  }
  return { dims: [outFeatures, blocks, INT8_BLOCK_SIZE], codes, scales };
}
