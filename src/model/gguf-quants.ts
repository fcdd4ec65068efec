/**
 * The ggml tensor types offramp reads and writes, and their conversions to
 * and from float32 (layouts as in ggml's ggml-common.h / ggml-quants.c):
 *
 *   F32    4 bytes per value
 *   F16    IEEE half, 2 bytes
 *   BF16   bfloat16 (float32's top 16 bits), 2 bytes
 *   Q8_0   blocks of 32: fp16 scale d, then 32 int8 q;            w = d * q
 *   Q4_0   blocks of 32: fp16 scale d, then 16 bytes of nibbles;  w = d * (nibble - 8),
 *          byte j holding value j in its low nibble and value j + 16 in its high one
 *
 * Blocks run along ne[0] (a matrix's input dimension), so each row is whole blocks.
 *
 * @module
 */
export interface GgmlType {
  name: 'F32' | 'F16' | 'BF16' | 'Q8_0' | 'Q4_0';
  code: number;
  /** Values per block (1 for the float types). */
  blockSize: number;
  bytesPerBlock: number;
}

export const F32: GgmlType = { name: 'F32', code: 0, blockSize: 1, bytesPerBlock: 4 };
export const F16: GgmlType = { name: 'F16', code: 1, blockSize: 1, bytesPerBlock: 2 };
export const Q4_0: GgmlType = { name: 'Q4_0', code: 2, blockSize: 32, bytesPerBlock: 2 + 16 };
export const Q8_0: GgmlType = { name: 'Q8_0', code: 8, blockSize: 32, bytesPerBlock: 2 + 32 };
export const BF16: GgmlType = { name: 'BF16', code: 30, blockSize: 1, bytesPerBlock: 2 };

/** Every type offramp reads. */
export const GGML_TYPES: readonly GgmlType[] = [F32, F16, BF16, Q8_0, Q4_0];

/** Names of the types offramp does not read, for error messages (ggml's numbering). */
const OTHER_TYPE_NAMES: Record<number, string> = {
  3: 'Q4_1',
  6: 'Q5_0',
  7: 'Q5_1',
  9: 'Q8_1',
  10: 'Q2_K',
  11: 'Q3_K',
  12: 'Q4_K',
  13: 'Q5_K',
  14: 'Q6_K',
  15: 'Q8_K',
  16: 'IQ2_XXS',
  17: 'IQ2_XS',
  18: 'IQ3_XXS',
  19: 'IQ1_S',
  20: 'IQ4_NL',
  21: 'IQ3_S',
  22: 'IQ2_S',
  23: 'IQ4_XS',
  24: 'I8',
  25: 'I16',
  26: 'I32',
  27: 'I64',
  28: 'F64',
  29: 'IQ1_M',
  34: 'TQ1_0',
  35: 'TQ2_0',
  39: 'MXFP4',
};

export function ggmlTypeName(code: number): string {
  const known = GGML_TYPES.find((t) => t.code === code)?.name ?? OTHER_TYPE_NAMES[code];
  return known ? `${code} (${known})` : `${code} (unknown)`;
}

/** Bytes a tensor of `type` with dims `ne` takes; `fail` builds the error for an impossible shape. */
export function tensorByteLength(type: GgmlType, ne: number[], fail: (problem: string) => Error): number {
  if (ne[0]! % type.blockSize !== 0) throw fail(`rows of ${ne[0]} values are not whole ${type.name} blocks of ${type.blockSize}`);
  const count = ne.reduce((a, b) => a * b, 1);
  const bytes = (count / type.blockSize) * type.bytesPerBlock;
  if (!Number.isSafeInteger(bytes)) throw fail(`dimensions [${ne}] are too large`);
  return bytes;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24; // subnormal (or zero)
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** float32 to IEEE half, rounding to nearest even (as ggml's GGML_FP32_TO_FP16 does). */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow: infinity
  if (e <= 0) {
    if (e < -10) return sign; // underflows to zero
    const m = mantissa | 0x800000; // subnormal half: shift the implicit bit in
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let h = m >> shift;
    if (rest > half || (rest === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mantissa >> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++; // may carry into the exponent, which is right
  return sign | h;
}

/** The float32 values of `count` elements of `type` stored in `bytes`. */
export function dequantize(type: GgmlType, bytes: Uint8Array, count: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  switch (type.name) {
    case 'F32':
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
      break;
    case 'F16':
      for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
      break;
    case 'BF16':
      for (let i = 0; i < count; i++) {
        u32[0] = view.getUint16(2 * i, true) << 16;
        out[i] = f32[0]!;
      }
      break;
    case 'Q8_0':
      for (let block = 0; block < count / 32; block++) {
        const at = block * Q8_0.bytesPerBlock;
        const d = halfToFloat(view.getUint16(at, true));
        for (let j = 0; j < 32; j++) out[block * 32 + j] = d * view.getInt8(at + 2 + j);
      }
      break;
    case 'Q4_0':
      for (let block = 0; block < count / 32; block++) {
        const at = block * Q4_0.bytesPerBlock;
        const d = halfToFloat(view.getUint16(at, true));
        for (let j = 0; j < 16; j++) {
          const byte = view.getUint8(at + 2 + j);
          out[block * 32 + j] = d * ((byte & 0x0f) - 8);
          out[block * 32 + j + 16] = d * ((byte >> 4) - 8);
        }
      }
      break;
  }
  return out;
}

/** C's roundf: halves away from zero. */
const roundHalfAway = (x: number) => Math.sign(x) * Math.round(Math.abs(x));

/**
 * `values` (a whole number of 32-value blocks) in `type`'s layout, quantized
 * as ggml's reference quantizers do: Q8_0 with d = max|w| / 127, so the
 * largest value of each block gets code ±127; Q4_0 with d = -(the value of
 * largest magnitude) / 8, so that value gets code -8 exactly.
 */
export function quantize(type: GgmlType, values: Float32Array): Uint8Array {
  const bytes = new Uint8Array((values.length / type.blockSize) * type.bytesPerBlock);
  const view = new DataView(bytes.buffer);
  switch (type.name) {
    case 'F32':
      values.forEach((v, i) => view.setFloat32(4 * i, v, true));
      break;
    case 'F16':
    case 'BF16':
      throw new Error(`internal error: offramp writes F32, Q8_0 and Q4_0 tensors, not ${type.name}`);
    case 'Q8_0':
      for (let block = 0; block < values.length / 32; block++) {
        const x = values.subarray(block * 32, block * 32 + 32);
        const maxAbs = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        const d = Math.fround(maxAbs / 127);
        const inverse = d ? Math.fround(1 / d) : 0;
        const at = block * Q8_0.bytesPerBlock;
        view.setUint16(at, floatToHalf(d), true);
        x.forEach((v, j) => view.setInt8(at + 2 + j, roundHalfAway(Math.fround(v * inverse))));
      }
      break;
    case 'Q4_0':
      for (let block = 0; block < values.length / 32; block++) {
        const x = values.subarray(block * 32, block * 32 + 32);
        let extreme = 0;
        for (const v of x) if (Math.abs(v) > Math.abs(extreme)) extreme = v;
        const d = Math.fround(extreme / -8);
        const inverse = d ? Math.fround(1 / d) : 0;
        const code = (v: number) => Math.min(15, Math.trunc(Math.fround(v * inverse) + 8.5));
        const at = block * Q4_0.bytesPerBlock;
        view.setUint16(at, floatToHalf(d), true);
        for (let j = 0; j < 16; j++) view.setUint8(at + 2 + j, code(x[j]!) | (code(x[j + 16]!) << 4));
      }
      break;
  }
  return bytes;
}
