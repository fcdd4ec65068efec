/**
 * onnxruntime sessions called synchronously.
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
