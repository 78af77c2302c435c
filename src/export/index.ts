// Export of a pre-trained encoder: timm safetensors, ONNX (onnxruntime, transformers.js) and a static web page.
export { exportEncoder, type ExportOptions } from './safetensors';
export { exportOnnx, onnxModelOf, onnxFileName, type OnnxOptions, type OnnxModelBytes, type OnnxExportResult } from './onnx-export';
export { exportWeb, onnxruntimeWeb, type WebExportOptions, type WebExportResult } from './web-export';
export { vitToOnnx, encoderWeights, OPSET, type VitOnnxOptions, type EncoderWeights, type WeightArray } from './vit-onnx';
export { evalPreprocessing, type EvalPreprocessing } from './preprocessing';
export { encodeModel, decodeModel, type ModelProto } from './onnx-proto';
export type { FloatType } from './onnx-graph';
