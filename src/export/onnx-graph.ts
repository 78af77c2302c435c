// A small builder for ONNX graphs: nodes are added one by one and return the names of their
// outputs, so layer code reads like the forward pass it describes. Floating-point weights and
// constants are stored in the graph's compute type (float32 or float16).
import { float32ToFloat16Bytes } from '../io/half-float';
import {
  AttributeProto,
  AttributeType,
  DataType,
  DataTypeCode,
  Dimension,
  GraphProto,
  IR_VERSION,
  ModelProto,
  NodeProto,
  TensorProto,
  ValueInfoProto,
} from './onnx-proto';

/** The weight and compute type of an exported ONNX model. */
export type FloatType = 'float32' | 'float16';

export const ONNX_FLOAT: Record<FloatType, DataTypeCode> = { float32: DataType.FLOAT, float16: DataType.FLOAT16 };

/** A dimension of a graph input or output: a size or a symbolic name such as 'batch'. */
export type Dim = number | string;

export const attr = {
  int: (name: string, i: number): AttributeProto => ({ name, type: AttributeType.INT, i }),
  float: (name: string, f: number): AttributeProto => ({ name, type: AttributeType.FLOAT, f }),
  ints: (name: string, ints: number[]): AttributeProto => ({ name, type: AttributeType.INTS, ints }),
};

/** float16's largest finite value; a float32 at or above 65520 rounds to Inf. */
const FLOAT16_MAX = 65504;

function floatBytes(values: Float32Array, type: FloatType, name: string): Uint8Array {
  if (type === 'float16') {
    const bytes = float32ToFloat16Bytes(values);
    // a finite weight that becomes Inf (as PyTorch's .half() makes it) turns the model's outputs into Inf or NaN: refused
    const dv = new DataView(bytes.buffer);
    for (let i = 0; i < values.length; i++) {
      if ((dv.getUint16(i * 2, true) & 0x7fff) === 0x7c00 && Number.isFinite(values[i])) {
        throw new Error(
          `${name}: value ${values[i]} (index ${i}) is beyond float16's range (±${FLOAT16_MAX}) and would be stored as Inf; export with --dtype float32`,
        );
      }
    }
    return bytes;
  }
  return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
}

function valueInfo(name: string, type: DataTypeCode, dims: Dim[], doc?: string): ValueInfoProto {
  const dim: Dimension[] = dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d }));
  return { name, ...(doc ? { doc_string: doc } : {}), type: { tensor_type: { elem_type: type, shape: { dim } } } };
}

export class GraphBuilder {
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly names = new Set<string>();
  private readonly opCount = new Map<string, number>();
  /** Prefix of the names of new nodes and values (e.g. 'blocks.0.attn'). */
  scope = '';

  constructor(readonly floatType: FloatType) {}

  private unique(base: string): string {
    let name = base;
    for (let i = 1; this.names.has(name); i++) name = `${base}_${i}`;
    this.names.add(name);
    return name;
  }

  /** A graph input. */
  input(name: string, type: DataTypeCode, dims: Dim[]): string {
    const unique = this.unique(name);
    this.inputs.push(valueInfo(unique, type, dims));
    return unique;
  }

  /** Makes `value` a graph output called `name`. */
  output(value: string, name: string, type: DataTypeCode, dims: Dim[], doc?: string): void {
    if (this.names.has(name)) throw new Error(`graph output ${name} clashes with a value of the same name`);
    this.names.add(name);
    this.nodes.push({ op_type: 'Identity', name: this.unique(`${name}/Identity`), input: [value], output: [name], attribute: [] });
    this.outputs.push(valueInfo(name, type, dims, doc));
  }

  /** A weight tensor, stored in the graph's float type under its own name. */
  weight(name: string, dims: number[], values: Float32Array): string {
    const size = dims.reduce((a, b) => a * b, 1);
    if (values.length !== size) throw new Error(`weight ${name}: ${values.length} values for shape [${dims.join(', ')}]`);
    if (this.names.has(name)) throw new Error(`weight ${name} is already in the graph`);
    this.names.add(name);
    this.initializers.push({ name, dims, data_type: ONNX_FLOAT[this.floatType], raw_data: floatBytes(values, this.floatType, `weight ${name}`) });
    return name;
  }

  /** A float constant in the graph's float type (a scalar when dims is []). */
  constant(values: number[], dims: number[] = []): string {
    const name = this.unique(this.scoped(`const_${values.length === 1 ? values[0] : 'v'}`));
    this.initializers.push({
      name,
      dims,
      data_type: ONNX_FLOAT[this.floatType],
      raw_data: floatBytes(Float32Array.from(values), this.floatType, `constant ${name}`),
    });
    return name;
  }

  /** A 1-D int64 constant (shapes, axes, indices); a scalar when `scalar` is set. */
  int64s(values: number[], scalar = false): string {
    const name = this.unique(this.scoped(`i64_${values.join('_').replace(/-/g, 'm')}`));
    const raw = new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer);
    this.initializers.push({ name, dims: scalar ? [] : [values.length], data_type: DataType.INT64, raw_data: raw });
    return name;
  }

  private scoped(name: string): string {
    return this.scope ? `${this.scope}/${name}` : name;
  }

  /** Adds one node with a single output and returns the output's name. */
  node(op: string, inputs: string[], attributes: AttributeProto[] = []): string {
    return this.nodeN(op, inputs, 1, attributes)[0];
  }

  /** Adds one node with `outputs` outputs. */
  nodeN(op: string, inputs: string[], outputs: number, attributes: AttributeProto[] = []): string[] {
    const n = (this.opCount.get(op) ?? 0) + 1;
    this.opCount.set(op, n);
    const name = this.unique(this.scoped(`${op}_${n}`));
    const out = Array.from({ length: outputs }, (_, i) => this.unique(outputs === 1 ? `${name}:out` : `${name}:out${i}`));
    this.nodes.push({ op_type: op, name, input: inputs, output: out, attribute: attributes });
    return out;
  }

  /** The finished model for the default ONNX domain at `opset`. */
  model(o: { name: string; opset: number; producer: string; version: string; doc?: string; metadata?: Record<string, string> }): ModelProto {
    const graph: GraphProto = {
      name: o.name,
      node: this.nodes,
      initializer: this.initializers,
      input: this.inputs,
      output: this.outputs,
      ...(o.doc ? { doc_string: o.doc } : {}),
    };
    return {
      ir_version: IR_VERSION,
      producer_name: o.producer,
      producer_version: o.version,
      opset_import: [{ domain: '', version: o.opset }],
      graph,
      ...(o.doc ? { doc_string: o.doc } : {}),
      metadata_props: Object.entries(o.metadata ?? {}).map(([key, value]) => ({ key, value })),
    };
  }
}
