/**
 * The model layer: importers that compile checkpoints into per-block ONNX
 * graphs, and the runtime that runs them one block at a time.
 *
 * @module
 */
export { ModelFormatError, type Checkpoint, type ModelConfig, type Tensor } from './checkpoint.js';
export { KvCache } from './kv-cache.js';
export { isPreparedModel, QUANTIZATIONS, quantizationSuffix, readManifest, weightsLabel, type Manifest, type Quantization } from './manifest.js';
export { DeviceError, Model, type BlockRows, type Device, type RuntimeOptions } from './model.js';
export { prepareModel, type PrepareOptions } from './prepare.js';
export { exportHfOnnx, HF_ONNX_MODEL } from './export-hf.js';
export { exportGguf, GGUF_TENSOR_TYPES, type GgufTensorType } from './gguf-export.js';
export { readPreparedCheckpoint } from './prepared-checkpoint.js';
export { defaultQuantization } from './resolve.js';
export { IncrementalDecoder, TextTokenizer } from './tokenizer.js';
export { importCheckpoint, PROJECT_ROOT, resolveModel, type ResolveOptions } from './resolve.js';
