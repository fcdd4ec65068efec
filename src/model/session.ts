/**
 * onnxruntime sessions: opened with the project's settings (the execution
 * provider, threads, spinning; `createSession`) and called synchronously.
 *
 * The public `InferenceSession.run` wraps the native (synchronous) call in a
 * setImmediate and a Promise: about 30 µs per call here, a quarter of a
 * stories260K block. The engine already owns a worker thread and calls blocks
 * one after another, so it calls the native binding directly. The binding is
 * onnxruntime-node's own `dist/binding.js`, which is why package.json pins
 * onnxruntime-node to one exact version.
 *
 * @module
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import ort from 'onnxruntime-node';

type Feeds = Record<string, ort.Tensor>;
type Fetches = Record<string, ort.Tensor | null>;

interface NativeSession {
  loadModel(modelPath: string, options: ort.InferenceSession.SessionOptions): void;
  loadModel(buffer: ArrayBufferLike, byteOffset: number, byteLength: number, options: ort.InferenceSession.SessionOptions): void;
  run(feeds: Feeds, fetches: Fetches, options: object): Record<string, ort.Tensor>;
  dispose(): void;
}

interface NativeBinding {
  binding: { InferenceSession: new () => NativeSession };
  initOrt(): void;
}

const native = createRequire(import.meta.url)('onnxruntime-node/dist/binding.js') as NativeBinding;

export interface SyncSession {
  /** Runs the graph; outputs given a tensor are written into it, `null` ones are allocated. */
  run(feeds: Feeds, fetches: Fetches): Record<string, ort.Tensor>;
  release(): void;
}

/** Opens a graph file, or a graph's bytes (their external weights are found through the `model_external_initializers_file_folder_path` session option). */
export function openSession(graph: string | Uint8Array, options: ort.InferenceSession.SessionOptions): SyncSession {
  native.initOrt();
  const session = new native.binding.InferenceSession();
  if (typeof graph === 'string') session.loadModel(graph, options);
  else session.loadModel(graph.buffer, graph.byteOffset, graph.byteLength, options);
  return {
    run: (feeds, fetches) => session.run(feeds, fetches, {}),
    release: () => session.dispose(),
  };
}

export type Device = 'cpu' | 'cuda' | 'webgpu';

export interface RuntimeOptions {
  /** onnxruntime execution provider. */
  device: Device;
  /** Intra-op threads per session; 0 lets onnxruntime choose. */
  threads: number;
  /**
   * Also load the whole-model graph, for steps that need no block on its own.
   * Default: for models under FUSED_MAX_BYTES (model.ts). It holds the
   * weights a second time (onnxruntime prepacks its own copy per session)
   * for 10-30% faster decoding than block by block at the stories110M shape,
   * and far more on small models, whose time goes to per-call overhead.
   */
  fused?: boolean;
  /**
   * Turns on onnxruntime's profiler: each session graph writes a Chrome-trace
   * JSON of its calls and kernels to `<profile>-<graph>_<time>.json` when it
   * is released (bench/decode-profile.ts reads them). Off by default.
   */
  profile?: string;
  /**
   * When every session's intra-op threads spin for work instead of sleeping
   * (see Spinning). Default: the fused graph's 'always' (it runs back to
   * back, and waking a sleeping thread for each of its kernels cost a fifth
   * of a stories110M int8 token at two threads: 157 against 202 tokens/s),
   * every other session's 'never' (they take turns, and the pools of a dozen
   * block sessions spinning between their calls fought for the cores).
   */
  spinning?: Spinning;
}

/**
 * Whether a session's intra-op threads spin while they wait for work:
 * 'never', 'in-calls' (between one call's kernels, stopping when the call
 * returns: onnxruntime's session.force_spinning_stop) or 'always'.
 * bench/matvec-peer.ts measures all three.
 */
export const SPINNING = ['never', 'in-calls', 'always'] as const;
export type Spinning = (typeof SPINNING)[number];

const INSTALL_HINT: Record<Device, string> = {
  cpu: '',
  cuda: 'the CUDA execution provider is not installed: reinstall with `npm install onnxruntime-node --onnxruntime-node-install=cuda12` (needs CUDA 12 and cuDNN 9)',
  webgpu: 'the WebGPU execution provider could not start on this machine (it needs a GPU with Vulkan drivers)',
};

/** Thrown when the chosen execution provider cannot run here. */
export class DeviceError extends Error {
  override name = 'DeviceError';
}

/** Opens one graph as the model's sessions are opened: `graph` is a file, or a graph's bytes whose external weights are in `dir`. */
export function createSession(graph: string | Uint8Array, options: RuntimeOptions, dir?: string): SyncSession {
  const providers = options.device === 'cpu' ? ['cpu'] : [options.device];
  const spinning = options.spinning ?? 'never';
  const weightsFolder = dir === undefined ? {} : { model_external_initializers_file_folder_path: dir };
  // The graph's name in each file's name, so a reader can tell the sessions' files apart (onnxruntime adds only the time).
  const profile =
    options.profile === undefined
      ? {}
      : { enableProfiling: true, profileFilePrefix: `${options.profile}-${typeof graph === 'string' ? path.basename(graph, '.onnx') : 'span'}` };
  try {
    return openSession(graph, {
      executionProviders: providers,
      intraOpNumThreads: options.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      ...profile,
      extra: {
        session: { intra_op: { allow_spinning: spinning === 'never' ? '0' : '1' }, force_spinning_stop: spinning === 'in-calls' ? '1' : '0', ...weightsFolder },
      },
    });
  } catch (error) {
    if (options.device !== 'cpu')
      throw new DeviceError(`--device ${options.device}: ${INSTALL_HINT[options.device]} (${(error as Error).message.split('\n')[0]})`);
    throw error;
  }
}
