/**
 * The model layer: importers that compile checkpoints into per-block ONNX
 * graphs, and the runtime that runs them one block at a time.
 *
 * @module
 */
export { blockMacs, ModelFormatError, type Checkpoint, type ModelConfig, type Tensor } from './checkpoint.js';
export { KvCache } from './kv-cache.js';
export {
  describeRamps,
  WEIGHTS_FILE,
  type RampReport,
  isPreparedModel,
  QUANTIZATIONS,
  quantizationSuffix,
  readManifest,
  weightsLabel,
  type Manifest,
  type Quantization,
  type RampTraining,
} from './manifest.js';
export { Model, type BlockRows, type SpanBuffers, type SpanRampResult } from './model.js';
export { createSession, DeviceError, SPINNING, type Device, type RuntimeOptions, type Spinning } from './session.js';
export { LinearIO, writeLinearGraph, type LinearGraph } from './linear-graph.js';
export { prepareModel, type PrepareOptions, type RampTrainer, type TrainRampsMode } from './prepare.js';
export { exportRamps, writeTrainedRamps } from './ramps-store.js';
export {
  CONTEXT_WEIGHTS,
  contextConfidence,
  contextEvidence,
  contextMatch,
  EARLIER_CONTEXT_WEIGHTS,
  fitContext,
  type ContextEvidence,
  type ContextMatch,
  type ContextSamples,
} from './context-math.js';
export {
  Adam,
  exitableShare,
  ffnStart,
  initialParams,
  paramLayout,
  rampLogits,
  rampLossAndGrad,
  RampTrainScratch,
  shuffled,
  type FfnStart,
  type FrozenHead,
} from './ramp-math.js';
export {
  featureMoments,
  foldStandardization,
  initialProbe,
  probeConfidence,
  probeFeatureCount,
  probeFeatures,
  probeLossAndGrad,
  ProbeScratch,
  standardize,
} from './probe-math.js';
export { RAMP_VOCAB, StoredWeights, type RampConfidence, type SpanEnd } from './graphs.js';
export { loadPrompts, PROMPTS_FILE, PromptSchema, storyPrompts, type Prompt } from './prompts.js';
export { exportHfOnnx, HF_ONNX_MODEL } from './export-hf.js';
export { exportGguf, GGUF_TENSOR_TYPES, type GgufTensorType } from './gguf-export.js';
export { readPreparedCheckpoint } from './prepared-checkpoint.js';
export { defaultQuantization } from './resolve.js';
export { IncrementalDecoder, TextTokenizer } from './tokenizer.js';
export { importLlama2c } from './llama2c.js';
export { DownloadError, importCheckpoint, resolveModel, type ResolveOptions } from './resolve.js';
export { SYNTH_SHAPES, synthCheckpoint, synthTokenizer, type SynthShape } from './synth.js';
