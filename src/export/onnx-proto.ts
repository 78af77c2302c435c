// ONNX's protobuf messages, encoded and decoded with protobufjs from the official schema text
// (onnx.proto beside this file: ONNX 1.12, IR version 8, as Debian's libonnx-dev ships it).
// The plain objects below use the schema's own field names (snake_case).
import { readFileSync } from 'node:fs';
import * as protobuf from 'protobufjs';
import { exportAsset } from './assets';

/** TensorProto.DataType values used here. */
export const DataType = { FLOAT: 1, INT64: 7, FLOAT16: 10 } as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

/** AttributeProto.AttributeType values used here. */
export const AttributeType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, INTS: 7 } as const;

/** The IR version of the vendored schema. */
export const IR_VERSION = 8;

export interface TensorProto {
  name: string;
  dims: number[];
  data_type: DataTypeCode;
  /** Little-endian element bytes. */
  raw_data: Uint8Array;
}

export interface AttributeProto {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorProto;
  ints?: number[];
}

export interface NodeProto {
  op_type: string;
  name: string;
  input: string[];
  output: string[];
  attribute: AttributeProto[];
}

/** One dimension: a fixed size or a named symbolic one (e.g. 'batch'). */
export interface Dimension {
  dim_value?: number;
  dim_param?: string;
}

export interface ValueInfoProto {
  name: string;
  doc_string?: string;
  type: { tensor_type: { elem_type: DataTypeCode; shape: { dim: Dimension[] } } };
}

export interface GraphProto {
  name: string;
  node: NodeProto[];
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  doc_string?: string;
}

/** ONNX's ModelProto as a plain object with the schema's snake_case field names: what vitToOnnx builds, encodeModel writes and decodeModel returns. */
export interface ModelProto {
  ir_version: number;
  producer_name: string;
  producer_version: string;
  opset_import: { domain: string; version: number }[];
  graph: GraphProto;
  doc_string?: string;
  metadata_props?: { key: string; value: string }[];
}

let modelType: protobuf.Type | null = null;

function modelProtoType(): protobuf.Type {
  if (!modelType) {
    const root = protobuf.parse(readFileSync(exportAsset('onnx.proto'), 'utf8'), { keepCase: true }).root;
    modelType = root.lookupType('onnx.ModelProto');
  }
  return modelType;
}

/** protobuf's hard limit on one message; larger models would need ONNX's external-data files. */
const MAX_MESSAGE_BYTES = 2 ** 31 - 1;

/** Serialises a model to the bytes of a .onnx file. */
export function encodeModel(model: ModelProto): Uint8Array {
  // halving the weights is advice only for float32 ones: a float16 model over the limit has no smaller dtype
  const halve = model.graph.initializer.some((t) => t.data_type === DataType.FLOAT) ? '; export with --dtype float16' : '';
  const bytes = model.graph.initializer.reduce((n, t) => n + t.raw_data.length, 0);
  if (bytes >= MAX_MESSAGE_BYTES) {
    throw new Error(`the weights take ${(bytes / 2 ** 30).toFixed(2)} GiB, over protobuf's 2 GiB limit for one .onnx file${halve}`);
  }
  // the whole message counts (names, nodes, metadata and the tags around each weight), not only the
  // weights: measured before protobufjs copies the weights into a buffer of that size
  const size = encodedLength(model);
  if (size > MAX_MESSAGE_BYTES) {
    throw new Error(`the model takes ${size} bytes (${(size / 2 ** 30).toFixed(2)} GiB), over protobuf's 2 GiB limit for one .onnx file${halve}`);
  }
  const T = modelProtoType();
  return T.encode(T.fromObject(model)).finish();
}

/** Bytes of a varint holding `n`. */
function varintLength(n: number): number {
  let k = 1;
  for (; n >= 128; k++) n = Math.floor(n / 128);
  return k;
}

/**
 * The length of `model`'s encoding, computed from the encodings of its messages with every weight
 * replaced by one byte (no weight is copied): each weight adds its bytes and the growth of the length
 * varints in front of it, of its TensorProto and of the graph.
 */
function encodedLength(model: ModelProto): number {
  const M = modelProtoType();
  const G = M.root.lookupType('onnx.GraphProto');
  const Tn = M.root.lookupType('onnx.TensorProto');
  const oneByte = new Uint8Array(1);
  const initializer = model.graph.initializer.map((t) => ({ ...t, raw_data: oneByte }));
  let growth = 0;
  for (const [i, t] of model.graph.initializer.entries()) {
    const before = Tn.encode(Tn.fromObject(initializer[i])).finish().length;
    const after = before - 2 + varintLength(t.raw_data.length) + t.raw_data.length;
    growth += after - before + varintLength(after) - varintLength(before);
  }
  const graph = { ...model.graph, initializer };
  const graphBefore = G.encode(G.fromObject(graph)).finish().length;
  const modelBefore = M.encode(M.fromObject({ ...model, graph })).finish().length;
  return modelBefore + growth + varintLength(graphBefore + growth) - varintLength(graphBefore);
}

/** Parses .onnx bytes back into plain objects (for tests and inspection). */
export function decodeModel(bytes: Uint8Array): ModelProto {
  const T = modelProtoType();
  return T.toObject(T.decode(bytes), { longs: Number, arrays: true }) as ModelProto;
}
