/**
 * The GGUF container (llama.cpp's model file, spec: ggml's docs/gguf.md),
 * read and written without interpreting what the keys mean:
 *
 *   magic "GGUF", uint32 version (2 or 3), uint64 tensor count, uint64 key count
 *   key/value pairs:   string key, uint32 value type, value
 *   tensor infos:      string name, uint32 n_dims, uint64 ne[n_dims], uint32 ggml type, uint64 offset
 *   padding to `general.alignment` (default 32), then the tensor data;
 *   every offset is relative to the data's start and a multiple of the alignment.
 *
 * Strings are a uint64 byte length and UTF-8 bytes; everything is
 * little-endian. `ne[0]` is the fastest-varying dimension, so a PyTorch
 * [out, in] matrix is stored with ne = [in, out].
 *
 * The reader checks every count and offset against the file's size before
 * believing it, so a damaged file is one ModelFormatError, never a huge
 * allocation or a read past the end.
 *
 * @module
 */
import fs from 'node:fs';
import { ModelFormatError } from './checkpoint.js';
import { GGML_TYPES, ggmlTypeName, tensorByteLength, type GgmlType } from './gguf-quants.js';

const MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
const VERSION = 3;
const DEFAULT_ALIGNMENT = 32;
const ALIGNMENT_KEY = 'general.alignment';

/** Metadata value types, numbered as in the spec. */
const VALUE_TYPES = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
} as const;
type ScalarType = Exclude<keyof typeof VALUE_TYPES, 'array'>;
const TYPE_NAMES = Object.fromEntries(Object.entries(VALUE_TYPES).map(([name, code]) => [code, name])) as Record<number, keyof typeof VALUE_TYPES>;

/** A metadata value as read: numbers (64-bit integers as the nearest double), strings, booleans, arrays of these. */
export type GgufValue = number | string | boolean | GgufValue[];

/** A metadata value to write, with the type it is stored as. */
export type GgufEntry =
  | { type: Exclude<ScalarType, 'string' | 'bool'>; value: number }
  | { type: 'string'; value: string }
  | { type: 'bool'; value: boolean }
  | { type: 'array'; itemType: Exclude<ScalarType, 'string' | 'bool'>; values: ArrayLike<number> }
  | { type: 'array'; itemType: 'string'; values: readonly string[] };

export interface GgufTensorInfo {
  name: string;
  /** ne[0] first: the fastest-varying dimension. */
  ne: number[];
  type: GgmlType;
  /** Absolute position of the tensor's bytes in the file. */
  fileOffset: number;
  byteLength: number;
}

export interface GgufHeader {
  file: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
}

/** fatal: a string that is not UTF-8 means the offsets went astray. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Reads forward through a file, a window at a time, failing clearly at its end. */
class FileCursor {
  private buffer = Buffer.alloc(0);
  private bufferStart = 0;
  offset = 0;

  constructor(
    private readonly file: string,
    private readonly fd: number,
    readonly size: number,
  ) {}

  /** Makes `n` bytes from the current offset readable; `what` names them if the file ends first. */
  private need(n: number, what: string): Buffer {
    if (this.offset + n > this.size) {
      throw new ModelFormatError(this.file, `truncated: ${what} at byte ${this.offset} needs ${n} bytes, the file ends at ${this.size}`);
    }
    const end = this.bufferStart + this.buffer.length;
    if (this.offset < this.bufferStart || this.offset + n > end) {
      this.bufferStart = this.offset;
      this.buffer = Buffer.alloc(Math.min(this.size - this.offset, Math.max(n, 1 << 20)));
      fs.readSync(this.fd, this.buffer, 0, this.buffer.length, this.offset);
    }
    const at = this.offset - this.bufferStart;
    this.offset += n;
    return this.buffer.subarray(at, at + n);
  }

  u32(what: string): number {
    return this.need(4, what).readUInt32LE(0);
  }

  /** A uint64 that must be a count or offset: exact as a JS number. */
  u64(what: string): number {
    const value = this.need(8, what).readBigUInt64LE(0);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ModelFormatError(this.file, `corrupt: ${what} is ${value}`);
    return Number(value);
  }

  string(what: string): string {
    const length = this.u64(`${what}'s length`);
    try {
      return UTF8.decode(this.need(length, what));
    } catch (error) {
      if (error instanceof ModelFormatError) throw error;
      throw new ModelFormatError(this.file, `corrupt: ${what} at byte ${this.offset - length} is not UTF-8`);
    }
  }

  scalar(type: ScalarType, what: string): number | string | boolean {
    switch (type) {
      case 'uint8':
        return this.need(1, what).readUInt8(0);
      case 'int8':
        return this.need(1, what).readInt8(0);
      case 'uint16':
        return this.need(2, what).readUInt16LE(0);
      case 'int16':
        return this.need(2, what).readInt16LE(0);
      case 'uint32':
        return this.u32(what);
      case 'int32':
        return this.need(4, what).readInt32LE(0);
      case 'float32':
        return this.need(4, what).readFloatLE(0);
      case 'bool':
        return this.need(1, what).readUInt8(0) !== 0;
      case 'string':
        return this.string(what);
      case 'uint64':
        return Number(this.need(8, what).readBigUInt64LE(0));
      case 'int64':
        return Number(this.need(8, what).readBigInt64LE(0));
      case 'float64':
        return this.need(8, what).readDoubleLE(0);
    }
  }

  value(typeCode: number, what: string): GgufValue {
    const type = TYPE_NAMES[typeCode];
    if (type === undefined) throw new ModelFormatError(this.file, `corrupt: ${what} has value type ${typeCode}, which GGUF does not define`);
    if (type !== 'array') return this.scalar(type, what);
    const itemCode = this.u32(`${what}'s item type`);
    const count = this.u64(`${what}'s length`);
    // Every item takes at least one byte: a count beyond the file is damage, not a reason to allocate.
    if (count > this.size - this.offset) throw new ModelFormatError(this.file, `corrupt: ${what} claims ${count} items, more than the file holds`);
    const items = new Array<GgufValue>(count);
    for (let i = 0; i < count; i++) items[i] = this.value(itemCode, `${what}[${i}]`);
    return items;
  }
}

const alignUp = (n: number, alignment: number) => Math.ceil(n / alignment) * alignment;

/**
 * Reads a GGUF file's metadata and tensor table (not the tensor data).
 * Throws ModelFormatError for anything but a well-formed GGUF v2/v3 whose
 * tensors are all of a type offramp reads and all inside the file.
 */
export function readGgufHeader(file: string): GgufHeader {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    throw new ModelFormatError(file, `cannot read (${(error as Error).message})`);
  }
  try {
    const cursor = new FileCursor(file, fd, fs.fstatSync(fd).size);
    if (cursor.size < 4 || cursor.u32('the magic') !== MAGIC) throw new ModelFormatError(file, 'not a GGUF file (it does not start with "GGUF")');
    const version = cursor.u32('the version');
    if (version !== 2 && version !== 3) throw new ModelFormatError(file, `GGUF version ${version} is not supported (only 2 and 3)`);
    const tensorCount = cursor.u64('the tensor count');
    const keyCount = cursor.u64('the key count');
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < keyCount; i++) {
      const key = cursor.string(`key ${i}`);
      metadata.set(key, cursor.value(cursor.u32(`${key}'s type`), key));
    }
    const alignment = metadata.get(ALIGNMENT_KEY) ?? DEFAULT_ALIGNMENT;
    if (typeof alignment !== 'number' || !Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) {
      throw new ModelFormatError(file, `corrupt: ${ALIGNMENT_KEY} is ${JSON.stringify(alignment)}, not a positive multiple of 8`);
    }
    const infos: { name: string; ne: number[]; typeCode: number; offset: number }[] = [];
    for (let i = 0; i < tensorCount; i++) {
      const name = cursor.string(`tensor ${i}'s name`);
      const numDims = cursor.u32(`${name}'s dimension count`);
      if (numDims < 1 || numDims > 4) throw new ModelFormatError(file, `corrupt: tensor ${name} has ${numDims} dimensions (GGUF allows 1 to 4)`);
      const ne = Array.from({ length: numDims }, (_, d) => cursor.u64(`${name}'s dimension ${d}`));
      infos.push({ name, ne, typeCode: cursor.u32(`${name}'s type`), offset: cursor.u64(`${name}'s offset`) });
    }
    const dataStart = alignUp(cursor.offset, alignment);
    const tensors = infos.map(({ name, ne, typeCode, offset }): GgufTensorInfo => {
      const type = GGML_TYPES.find((t) => t.code === typeCode);
      if (!type) {
        throw new ModelFormatError(
          file,
          `tensor ${name} has ggml type ${ggmlTypeName(typeCode)}, which offramp does not read (it reads ${GGML_TYPES.map((t) => t.name).join(', ')})`,
        );
      }
      if (offset % alignment !== 0)
        throw new ModelFormatError(file, `corrupt: tensor ${name}'s offset ${offset} is not a multiple of the alignment ${alignment}`);
      const byteLength = tensorByteLength(type, ne, (problem) => new ModelFormatError(file, `tensor ${name}: ${problem}`));
      const fileOffset = dataStart + offset;
      if (fileOffset + byteLength > cursor.size) {
        throw new ModelFormatError(
          file,
          `tensor ${name}'s data (bytes ${fileOffset} to ${fileOffset + byteLength}) lies beyond the end of the file (${cursor.size} bytes): truncated or corrupt`,
        );
      }
      return { name, ne, type, fileOffset, byteLength };
    });
    return { file, version, metadata, tensors };
  } finally {
    fs.closeSync(fd);
  }
}

/** A tensor's raw bytes as stored. */
export function readTensorBytes(header: GgufHeader, tensor: GgufTensorInfo): Buffer {
  const bytes = Buffer.alloc(tensor.byteLength);
  const fd = fs.openSync(header.file, 'r');
  try {
    fs.readSync(fd, bytes, 0, bytes.length, tensor.fileOffset);
  } finally {
    fs.closeSync(fd);
  }
  return bytes;
}

/** A tensor to write: its dims ne[0] first, its ggml type, and its bytes in that type's layout. */
export interface GgufTensorToWrite {
  name: string;
  ne: number[];
  type: GgmlType;
  data: Uint8Array;
}

/** Serializes GGUF metadata and tensor tables into growing chunks. */
class Writer {
  readonly chunks: Buffer[] = [];
  length = 0;

  private push(buffer: Buffer): void {
    this.chunks.push(buffer);
    this.length += buffer.length;
  }

  u32(value: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value);
    this.push(b);
  }

  u64(value: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(value));
    this.push(b);
  }

  string(value: string): void {
    const bytes = Buffer.from(value, 'utf8');
    this.u64(bytes.length);
    this.push(bytes);
  }

  number(type: Exclude<ScalarType, 'string' | 'bool'>, value: number): void {
    const b = Buffer.alloc(type === 'uint64' || type === 'int64' || type === 'float64' ? 8 : type.endsWith('8') ? 1 : type.endsWith('16') ? 2 : 4);
    switch (type) {
      case 'uint8':
        b.writeUInt8(value);
        break;
      case 'int8':
        b.writeInt8(value);
        break;
      case 'uint16':
        b.writeUInt16LE(value);
        break;
      case 'int16':
        b.writeInt16LE(value);
        break;
      case 'uint32':
        b.writeUInt32LE(value);
        break;
      case 'int32':
        b.writeInt32LE(value);
        break;
      case 'float32':
        b.writeFloatLE(value);
        break;
      case 'uint64':
        b.writeBigUInt64LE(BigInt(value));
        break;
      case 'int64':
        b.writeBigInt64LE(BigInt(value));
        break;
      case 'float64':
        b.writeDoubleLE(value);
        break;
    }
    this.push(b);
  }

  entry(entry: GgufEntry): void {
    this.u32(VALUE_TYPES[entry.type]);
    if (entry.type === 'string') return this.string(entry.value);
    if (entry.type === 'bool') return this.push(Buffer.from([entry.value ? 1 : 0]));
    if (entry.type !== 'array') return this.number(entry.type, entry.value);
    this.u32(VALUE_TYPES[entry.itemType]);
    this.u64(entry.values.length);
    if (entry.itemType === 'string') for (const s of entry.values) this.string(s);
    else for (let i = 0; i < entry.values.length; i++) this.number(entry.itemType, entry.values[i]!);
  }
}

/**
 * Writes a GGUF v3 file: `metadata` in order, then the tensors in order,
 * each aligned to 32 bytes (the default alignment, so no `general.alignment`
 * key is needed). Written beside `file` and renamed into place, so a failure
 * leaves nothing behind.
 */
export function writeGguf(file: string, metadata: ReadonlyMap<string, GgufEntry>, tensors: readonly GgufTensorToWrite[]): void {
  const header = new Writer();
  header.u32(MAGIC);
  header.u32(VERSION);
  header.u64(tensors.length);
  header.u64(metadata.size);
  for (const [key, entry] of metadata) {
    header.string(key);
    header.entry(entry);
  }
  let offset = 0;
  const offsets = tensors.map((t) => {
    const at = alignUp(offset, DEFAULT_ALIGNMENT);
    offset = at + t.data.length;
    return at;
  });
  tensors.forEach((t, i) => {
    header.string(t.name);
    header.u32(t.ne.length);
    for (const n of t.ne) header.u64(n);
    header.u32(t.type.code);
    header.u64(offsets[i]!);
  });
  const partial = `${file}.partial`;
  try {
    const fd = fs.openSync(partial, 'w');
    try {
      for (const chunk of header.chunks) fs.writeSync(fd, chunk);
      const dataStart = alignUp(header.length, DEFAULT_ALIGNMENT);
      fs.writeSync(fd, new Uint8Array(dataStart - header.length));
      let written = 0;
      tensors.forEach((t, i) => {
        fs.writeSync(fd, new Uint8Array(offsets[i]! - written));
        fs.writeSync(fd, t.data);
        written = offsets[i]! + t.data.length;
      });
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(partial, file);
  } catch (error) {
    fs.rmSync(partial, { force: true });
    throw error;
  }
}
