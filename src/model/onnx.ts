/**
 * A small ONNX graph writer on protobufjs.
 *
 * Only the part of onnx.proto that offramp writes is declared here (field
 * numbers as in onnx/onnx.proto3). Weights never live inside a graph: every
 * initializer points into one shared `weights.bin` through ONNX external data,
 * so each tensor is stored once however many graphs use it.
 *
 * @module
 */
import protobuf from 'protobufjs';

const ONNX_SUBSET = `
syntax = "proto3";
package onnx;
message StringStringEntryProto { string key = 1; string value = 2; }
message OperatorSetIdProto { string domain = 1; int64 version = 2; }
message TensorShapeProto {
  message Dimension { oneof value { int64 dim_value = 1; string dim_param = 2; } }
  repeated Dimension dim = 1;
}
message TypeProto {
  message Tensor { int32 elem_type = 1; TensorShapeProto shape = 2; }
  oneof value { Tensor tensor_type = 1; }
}
message ValueInfoProto { string name = 1; TypeProto type = 2; }
message TensorProto {
  repeated int64 dims = 1;
  int32 data_type = 2;
  repeated float float_data = 4;
  repeated int64 int64_data = 7;
  string name = 8;
  bytes raw_data = 9;
  repeated StringStringEntryProto external_data = 13;
  int32 data_location = 14;
}
message AttributeProto {
  string name = 1;
  float f = 2;
  int64 i = 3;
  bytes s = 4;
  TensorProto t = 5;
  repeated float floats = 7;
  repeated int64 ints = 8;
  int32 type = 20;
}
message NodeProto {
  repeated string input = 1;
  repeated string output = 2;
  string name = 3;
  string op_type = 4;
  repeated AttributeProto attribute = 5;
  string domain = 7;
}
message GraphProto {
  repeated NodeProto node = 1;
  string name = 2;
  repeated TensorProto initializer = 5;
  repeated ValueInfoProto input = 11;
  repeated ValueInfoProto output = 12;
}
message ModelProto {
  int64 ir_version = 1;
  string producer_name = 2;
  GraphProto graph = 7;
  repeated OperatorSetIdProto opset_import = 8;
}
`;

const modelProto = protobuf.parse(ONNX_SUBSET).root.lookupType('onnx.ModelProto');

/** ONNX element types used by offramp (TensorProto.DataType). */
export const DataType = { float: 1, uint8: 2, int8: 3, int32: 6, int64: 7, float16: 10 } as const;
export type ElementType = keyof typeof DataType;

const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

/** A dimension is a fixed size or a symbolic name (`'batch'`, `'seq'`). */
export type Dim = number | string;

/** Where one tensor lies in the shared weights file. */
export interface WeightRef {
  offset: number; // bytes from the start of the weights file
  byteLength: number;
  dims: number[];
  type: ElementType;
}

export type AttributeValue = number | string | number[] | { floats: number[] } | { int: number } | { float: number };

interface Attribute {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  floats?: number[];
  ints?: number[];
  t?: object;
}

function attribute(name: string, value: AttributeValue): Attribute {
  if (typeof value === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: AttributeType.INTS, ints: value };
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: AttributeType.INT, i: value } : { name, type: AttributeType.FLOAT, f: value };
  }
  if ('floats' in value) return { name, type: AttributeType.FLOATS, floats: value.floats };
  if ('int' in value) return { name, type: AttributeType.INT, i: value.int };
  return { name, type: AttributeType.FLOAT, f: value.float };
}

function valueInfo(name: string, type: ElementType, dims: Dim[]): object {
  return {
    name,
    type: {
      tensorType: {
        elemType: DataType[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/**
 * Builds one graph node by node. `node()` returns its output names, so a
 * forward pass reads top to bottom like a function body.
 */
export class GraphBuilder {
  private readonly nodes: object[] = [];
  private readonly initializers: object[] = [];
  private readonly inputs: object[] = [];
  private readonly outputs: object[] = [];
  private readonly usedNames = new Set<string>();
  private counter = 0;

  constructor(
    readonly name: string,
    private readonly weightsFile: string,
  ) {}

  /** Declares a graph input; declaring the same name again (blocks sharing one graph) is a no-op. */
  input(name: string, type: ElementType, dims: Dim[]): string {
    if (this.usedNames.has(name)) return name;
    this.usedNames.add(name);
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  output(name: string, type: ElementType, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, type, dims));
  }

  /** Bytes of the external weights the graph reads (a session may hold a copy of them). */
  weightBytes = 0;

  /** An initializer whose bytes live in the shared weights file (or in `file`, beside it). */
  weight(name: string, ref: WeightRef, file = this.weightsFile): string {
    if (this.usedNames.has(name)) return name;
    this.usedNames.add(name);
    this.weightBytes += ref.byteLength;
    this.initializers.push({
      name,
      dims: ref.dims,
      dataType: DataType[ref.type],
      dataLocation: 1, // EXTERNAL
      externalData: [
        { key: 'location', value: file },
        { key: 'offset', value: String(ref.offset) },
        { key: 'length', value: String(ref.byteLength) },
      ],
    });
    return name;
  }

  /** A small constant stored inside the graph (shapes, axes, scalars). */
  constant(values: number[], type: 'int64' | 'float' = 'int64', dims: number[] = [values.length]): string {
    const name = `const_${this.counter++}`;
    this.initializers.push(
      type === 'int64' ? { name, dims, dataType: DataType.int64, int64Data: values } : { name, dims, dataType: DataType.float, floatData: values },
    );
    return name;
  }

  /**
   * Adds a node. `outputs` is a count (names are generated) or explicit names.
   * An empty string in `inputs` marks an omitted optional input.
   */
  node(opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, outputs: number | string[] = 1, domain = ''): string[] {
    const names = typeof outputs === 'number' ? Array.from({ length: outputs }, (_, k) => `${opType.toLowerCase()}_${this.counter}_${k}`) : outputs;
    this.nodes.push({
      name: `${opType}_${this.counter++}`,
      opType,
      domain,
      input: inputs,
      output: names,
      attribute: Object.entries(attributes).map(([key, value]) => attribute(key, value)),
    });
    return names;
  }

  /** Shorthand for single-output nodes. */
  op(opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, domain = ''): string {
    return this.node(opType, inputs, attributes, 1, domain)[0]!;
  }

  /** Serialized ModelProto bytes. */
  toBytes(opset = 17): Uint8Array {
    const model = {
      irVersion: 8,
      producerName: 'offramp',
      opsetImport: [
        { domain: '', version: opset },
        { domain: 'com.microsoft', version: 1 },
      ],
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    };
    const error = modelProto.verify(model);
    if (error) throw new Error(`internal error: invalid ONNX graph ${this.name}: ${error}`);
    return modelProto.encode(modelProto.fromObject(model)).finish();
  }
}
