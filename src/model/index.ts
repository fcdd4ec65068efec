/**
 * The model layer: importers that compile checkpoints into per-block ONNX
 * graphs, and the runtime that runs them one block at a time.
 *
 * @module
 */
export { ModelFormatError, type Checkpoint, type ModelConfig, type Tensor } from './checkpoint.js';
export { KvCache } from './kv-cache.js';
export { describeRamps, isPreparedModel, QUANTIZATIONS, quantizationSuffix, readManifest, weightsLabel, type Manifest, type Quantization, type RampTraining } from './manifest.js';
export { DeviceError, Model, type BlockRows, type Device, type RuntimeOptions } from './model.js';
export { prepareModel, type PrepareOptions, type TrainRampsMode } from './prepare.js';
export { formatRampReport, trainRamps, TRAIN_RAMPS_DEFAULTS, type TrainRampsOptions } from './train-ramps.js';
export { exportHfOnnx, HF_ONNX_MODEL } from './export-hf.js';
export { IncrementalDecoder, TextTokenizer } from './tokenizer.js';
export { importCheckpoint, PROJECT_ROOT, resolveModel, type ResolveOptions } from './resolve.js';
