/**
 * Reader and writer for safetensors files (Hugging Face's weight format):
 *
 *   u64 little-endian N | N bytes of JSON header | raw tensor bytes
 *
 * The header maps each tensor name to `{ dtype, shape, data_offsets: [begin, end] }`,
 * offsets relative to the start of the data section; `__metadata__` holds free
 * strings and is ignored. F32, F16 and BF16 tensors are read, all as float32.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ModelFormatError, type Tensor } from './checkpoint.js';

const HEADER_LENGTH_BYTES = 8;
/** A header larger than this is corruption, not a model (the Rust reader caps it at 100 MB too). */
const MAX_HEADER_BYTES = 100_000_000;
const BYTES_PER_ELEMENT = { F32: 4, F16: 2, BF16: 2 } as const;
type Dtype = keyof typeof BYTES_PER_ELEMENT;

const offset = z.number().int().nonnegative();
const HeaderEntrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([offset, offset]),
});

/**
 * Reads every tensor of one safetensors file as float32.
 *
 * The file is read tensor by tensor rather than whole, so peak memory is the
 * decoded model plus one tensor, and files over readFileSync's 2 GiB limit work.
 */
export function readSafetensors(file: string): Map<string, Tensor> {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw new ModelFormatError(file, `cannot read: ${(err as Error).message}`);
  }
  try {
    return readOpenFile(file, fd);
  } finally {
    fs.closeSync(fd);
  }
}

function readOpenFile(file: string, fd: number): Map<string, Tensor> {
  const fileBytes = fs.fstatSync(fd).size;
  if (fileBytes < HEADER_LENGTH_BYTES) throw new ModelFormatError(file, 'file is too short to be safetensors');
  const lengthBytes = Buffer.alloc(HEADER_LENGTH_BYTES);
  readFully(file, fd, lengthBytes, 0);
  const headerLength = lengthBytes.readBigUInt64LE(0);
  if (headerLength > BigInt(fileBytes - HEADER_LENGTH_BYTES)) {
    throw new ModelFormatError(file, `header length ${headerLength} exceeds the ${fileBytes}-byte file (truncated or not safetensors)`);
  }
  if (headerLength > BigInt(MAX_HEADER_BYTES)) throw new ModelFormatError(file, `header length ${headerLength} is implausibly large`);
  const dataStart = HEADER_LENGTH_BYTES + Number(headerLength);
  const headerBytes = Buffer.alloc(dataStart - HEADER_LENGTH_BYTES);
  readFully(file, fd, headerBytes, HEADER_LENGTH_BYTES);
  let header: unknown;
  try {
    header = JSON.parse(headerBytes.toString('utf8'));
  } catch (err) {
    throw new ModelFormatError(file, `header is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new ModelFormatError(file, 'header is not a JSON object');
  }

  const dataBytes = fileBytes - dataStart;
  const tensors = new Map<string, Tensor>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const parsed = HeaderEntrySchema.safeParse(raw);
    if (!parsed.success) throw new ModelFormatError(file, `bad header entry for tensor ${name}: ${z.prettifyError(parsed.error)}`);
    const {
      dtype,
      shape,
      data_offsets: [begin, end],
    } = parsed.data;
    if (!(dtype in BYTES_PER_ELEMENT)) {
      throw new ModelFormatError(file, `tensor ${name} has dtype ${dtype}; only F32, F16 and BF16 are supported`);
    }
    const numElements = shape.reduce((n, d) => n * d, 1);
    const expectedBytes = numElements * BYTES_PER_ELEMENT[dtype as Dtype];
    if (begin > end || end > dataBytes) {
      throw new ModelFormatError(file, `tensor ${name} has data_offsets [${begin}, ${end}] outside the ${dataBytes}-byte data section (truncated?)`);
    }
    if (end - begin !== expectedBytes) {
      throw new ModelFormatError(file, `tensor ${name} spans ${end - begin} bytes, but ${dtype} [${shape}] needs ${expectedBytes}`);
    }
    const raw8 = new Uint8Array(expectedBytes);
    readFully(file, fd, raw8, dataStart + begin);
    tensors.set(name, { dims: shape, data: decode(dtype as Dtype, raw8, numElements) });
  }
  return tensors;
}

/** readSync may return less than asked (and caps one call near 2 GiB), so loop. */
function readFully(file: string, fd: number, target: Uint8Array, position: number): void {
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < target.length) {
    const n = fs.readSync(fd, target, done, Math.min(CHUNK, target.length - done), position + done);
    if (n === 0) throw new ModelFormatError(file, 'unexpected end of file');
    done += n;
  }
}

/** Tensors of a model directory, and the file each came from (for error messages). */
export interface SafetensorsDir {
  tensors: Map<string, Tensor>;
  /** Tensor name -> the file holding it. */
  fileOf: Map<string, string>;
  /** model.safetensors, or the shard index: the file to name for a tensor that is missing. */
  source: string;
}

const IndexSchema = z.object({ weight_map: z.record(z.string(), z.string()) });

/**
 * Reads `model.safetensors`, or the shards listed by `model.safetensors.index.json`
 * (each shard once), from a Hugging Face model directory.
 */
export function readSafetensorsDir(dir: string): SafetensorsDir {
  const single = path.join(dir, 'model.safetensors');
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(single)) {
    const tensors = readSafetensors(single);
    return { tensors, fileOf: new Map([...tensors.keys()].map((name) => [name, single])), source: single };
  }
  if (!fs.existsSync(indexFile)) {
    throw new ModelFormatError(dir, 'no model.safetensors or model.safetensors.index.json found');
  }
  let index: z.infer<typeof IndexSchema>;
  try {
    const parsed = IndexSchema.safeParse(JSON.parse(fs.readFileSync(indexFile, 'utf8')));
    if (!parsed.success) throw new Error(parsed.error.message);
    index = parsed.data;
  } catch (err) {
    throw new ModelFormatError(indexFile, `bad shard index: ${(err as Error).message}`);
  }

  const shards = new Set(Object.values(index.weight_map));
  const tensors = new Map<string, Tensor>();
  const fileOf = new Map<string, string>();
  for (const shard of shards) {
    // Shard names come from the index: keep them inside the model directory.
    if (path.basename(shard) !== shard) throw new ModelFormatError(indexFile, `shard name ${shard} is not a plain file name`);
    const shardFile = path.join(dir, shard);
    if (!fs.existsSync(shardFile)) throw new ModelFormatError(shardFile, 'shard listed in the index is missing');
    for (const [name, tensor] of readSafetensors(shardFile)) {
      tensors.set(name, tensor);
      fileOf.set(name, shardFile);
    }
  }
  for (const [name, shard] of Object.entries(index.weight_map)) {
    if (fileOf.get(name) !== path.join(dir, shard)) {
      throw new ModelFormatError(path.join(dir, shard), `tensor ${name} listed in the index is not in this shard`);
    }
  }
  return { tensors, fileOf, source: indexFile };
}

/** Writes float32 tensors as a safetensors file (names sorted, as the reference writer does). */
export function writeSafetensors(file: string, tensors: Map<string, Tensor>): void {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  let dataBytes = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const numElements = t.dims.reduce((n, d) => n * d, 1);
    if (numElements !== t.data.length) {
      throw new Error(`writeSafetensors: tensor ${name} has ${t.data.length} values for shape [${t.dims}]`);
    }
    header[name] = { dtype: 'F32', shape: t.dims, data_offsets: [dataBytes, dataBytes + 4 * numElements] };
    dataBytes += 4 * numElements;
  }
  // Pad the header with spaces so the data section starts 8-byte aligned (allowed by the format).
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((HEADER_LENGTH_BYTES + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');

  const out = Buffer.alloc(HEADER_LENGTH_BYTES + headerBytes.length + dataBytes);
  out.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  headerBytes.copy(out, HEADER_LENGTH_BYTES);
  let at = HEADER_LENGTH_BYTES + headerBytes.length;
  for (const name of names) {
    const { data } = tensors.get(name)!;
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    at += data.byteLength;
  }
  fs.writeFileSync(file, out);
}

// --- dtype decoding -----------------------------------------------------------
// Typed arrays use the host byte order; every platform Node runs on is little-endian,
// as safetensors is. Each tensor is read into its own buffer, so alignment is never an issue.

function decode(dtype: Dtype, raw: Uint8Array, numElements: number): Float32Array {
  if (dtype === 'F32') return new Float32Array(raw.buffer, 0, numElements);
  const halves = new Uint16Array(raw.buffer, 0, numElements);
  const out = new Float32Array(numElements);
  const outBits = new Uint32Array(out.buffer);
  if (dtype === 'BF16') {
    // bfloat16 is the top half of a float32.
    for (let i = 0; i < numElements; i++) outBits[i] = halves[i]! << 16;
  } else {
    const table = f16Table();
    for (let i = 0; i < numElements; i++) outBits[i] = table[halves[i]!]!;
  }
  return out;
}

let f16ToF32Bits: Uint32Array | undefined;

/** float32 bit patterns of all 65,536 float16 values (256 KB, built once). */
function f16Table(): Uint32Array {
  if (f16ToF32Bits) return f16ToF32Bits;
  const table = new Uint32Array(65536);
  const asFloat = new Float32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0)
      asFloat[h] = sign * mantissa * 2 ** -24; // zero and subnormals
    else if (exponent === 0x1f) asFloat[h] = mantissa ? NaN : sign * Infinity;
    else asFloat[h] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  f16ToF32Bits = table;
  return table;
}
