/**
 * Trained ramps on disk: `ramps.bin` (every ramp's tensors, the candidate
 * token ids and their head rows), one `ramp_{layer}.onnx` per ramp, and the
 * manifest's `trainedRamps` section saying how they were trained. Written
 * beside a prepared model's weights; `offramp train-ramps` replaces them
 * without touching the rest of the directory.
 *
 * Ramps also ship with the default model: `models/NAME.ramps/` holds
 * `ramps.bin` and `ramps.json` (the manifest section, and the fingerprint of
 * the checkpoint they were trained on). Compiling a checkpoint with that
 * fingerprint installs them instead of training again, so a first start
 * serves in seconds.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { PROJECT_ROOT } from '../util/project-root.js';
import type { Checkpoint } from './checkpoint.js';
import { buildFusedGraph, buildTrainedRampGraph } from './graphs.js';
import { MANIFEST_FILE, RAMPS_FILE, TrainedRampsSchema, WEIGHTS_FILE, type Manifest, type RampTraining, type TrainedRamps } from './manifest.js';
import type { WeightRef } from './onnx.js';
import { probeFeatureCount, probeLayout } from './probe-math.js';
import { paramLayout } from './ramp-math.js';
import { writeWeights, type StoredTensor } from './weights-file.js';

/** What training produced: the candidates and each ramp's parameters (ramp-math.ts's and probe-math.ts's layouts). */
export interface FittedRamps {
  /** Token ids the ramps score, most frequent first. */
  candidates: Int32Array;
  /** [candidates, dim]: the head's rows of those tokens. */
  candidateRows: Float32Array;
  /** The MLP's width, and the probe's. */
  hidden: number;
  probeHidden: number;
  /** Per ramp: the block index it reads, its flat parameters, its probe's and its context model's weights. */
  ramps: { layer: number; params: Float32Array; probe: Float32Array; context: ArrayLike<number> }[];
  /** The lookahead head's flat parameters (ramp-math.ts's layout) and its input's embedding weight; null: none trained. */
  lookahead: { params: Float32Array; embeddingScale: number } | null;
  training: RampTraining;
}

/** The fused graph with the lookahead head's guess as one more output (see buildFusedGraph). */
const LOOKAHEAD_GRAPH = 'fused_lookahead.onnx';

/** Writes `fitted` into the prepared model `dir`, replacing its trained ramps; returns the updated manifest (written last). */
export function writeTrainedRamps(dir: string, manifest: Manifest, fitted: FittedRamps): Manifest {
  const dim = manifest.config.dim;
  const { hidden, probeHidden } = fitted;
  const layout = paramLayout(dim, hidden);
  const features = probeFeatureCount(dim);
  const probeAt = probeLayout(features, probeHidden);
  const tensors = new Map<string, StoredTensor>();
  tensors.set('candidates', { dims: [fitted.candidates.length], data: fitted.candidates });
  tensors.set('candidate_rows', { dims: [fitted.candidates.length, dim], data: fitted.candidateRows });
  /** A map's tensors (ramp-math.ts's layout) under `prefix`. */
  const setMap = (prefix: string, params: Float32Array) => {
    const part = (from: number, length: number) => params.slice(from, from + length);
    tensors.set(`${prefix}.bias`, { dims: [dim], data: part(layout.bias, dim) });
    tensors.set(`${prefix}.up`, { dims: [hidden, dim], data: part(layout.up, hidden * dim) });
    tensors.set(`${prefix}.up_bias`, { dims: [hidden], data: part(layout.upBias, hidden) });
    tensors.set(`${prefix}.linear`, { dims: [hidden, dim], data: part(layout.linear, hidden * dim) });
    tensors.set(`${prefix}.down`, { dims: [dim, hidden], data: part(layout.down, dim * hidden) });
    tensors.set(`${prefix}.rest_row`, { dims: [1, dim], data: part(layout.restRow, dim) });
    tensors.set(`${prefix}.rest_bias`, { dims: [1], data: part(layout.restBias, 1) });
  };
  for (const { layer, params, probe } of fitted.ramps) {
    setMap(String(layer), params);
    const probePart = (from: number, length: number) => probe.slice(from, from + length);
    tensors.set(`${layer}.probe_weight`, { dims: [probeHidden, features], data: probePart(probeAt.weight, probeHidden * features) });
    tensors.set(`${layer}.probe_bias`, { dims: [probeHidden], data: probePart(probeAt.bias, probeHidden) });
    tensors.set(`${layer}.probe_out`, { dims: [probeHidden, 1], data: probePart(probeAt.out, probeHidden) });
    tensors.set(`${layer}.probe_out_bias`, { dims: [1], data: probePart(probeAt.outBias, 1) });
  }
  if (fitted.lookahead) setMap('lookahead', fitted.lookahead.params);
  const partial = path.join(dir, `${RAMPS_FILE}.partial`);
  const refs = writeWeights(partial, tensors);
  const ref = (name: string): WeightRef => refs[name]!;
  const mapRefs = (prefix: string) => ({
    bias: ref(`${prefix}.bias`),
    up: ref(`${prefix}.up`),
    upBias: ref(`${prefix}.up_bias`),
    linear: ref(`${prefix}.linear`),
    down: ref(`${prefix}.down`),
    restRow: ref(`${prefix}.rest_row`),
    restBias: ref(`${prefix}.rest_bias`),
  });
  const trainedRamps: TrainedRamps = {
    file: RAMPS_FILE,
    form: 'glu',
    hidden,
    probeHidden,
    candidates: ref('candidates'),
    candidateRows: ref('candidate_rows'),
    ramps: fitted.ramps.map(({ layer, context }) => ({
      layer,
      graph: `ramp_${layer}.onnx`,
      ...mapRefs(String(layer)),
      probe: {
        weight: ref(`${layer}.probe_weight`),
        bias: ref(`${layer}.probe_bias`),
        out: ref(`${layer}.probe_out`),
        outBias: ref(`${layer}.probe_out_bias`),
      },
      context: Array.from(context),
    })),
    ...(fitted.lookahead && { lookahead: { graph: LOOKAHEAD_GRAPH, embeddingScale: fitted.lookahead.embeddingScale, ...mapRefs('lookahead') } }),
    training: fitted.training,
  };
  fs.renameSync(partial, path.join(dir, RAMPS_FILE));
  return installRampGraphs(dir, manifest, trainedRamps);
}

/** Writes the ramp graphs for `trainedRamps` (whose ramps.bin is in place) and the manifest that names them. */
function installRampGraphs(dir: string, manifest: Manifest, trainedRamps: TrainedRamps): Manifest {
  const lookup = (name: string): WeightRef => {
    const found = manifest.weights[name];
    if (!found) throw new Error(`internal error: ramp graph needs weight ${name}, which was not stored`);
    return found;
  };
  for (const ramp of trainedRamps.ramps) {
    const graph = buildTrainedRampGraph(
      manifest.config,
      ramp.layer,
      lookup,
      { ...ramp, candidateRows: trainedRamps.candidateRows },
      WEIGHTS_FILE,
      trainedRamps.file,
    );
    fs.writeFileSync(path.join(dir, ramp.graph), graph);
  }
  const { lookahead } = trainedRamps;
  if (lookahead) {
    const head = {
      weights: { ...lookahead, candidateRows: trainedRamps.candidateRows },
      embeddingScale: lookahead.embeddingScale,
      rampsFile: trainedRamps.file,
    };
    fs.writeFileSync(path.join(dir, lookahead.graph), buildFusedGraph(manifest.config, lookup, WEIGHTS_FILE, head));
  }
  const updated: Manifest = { ...manifest, trainedRamps };
  const manifestPartial = path.join(dir, `${MANIFEST_FILE}.partial`);
  fs.writeFileSync(manifestPartial, JSON.stringify(updated, null, 2));
  fs.renameSync(manifestPartial, path.join(dir, MANIFEST_FILE));
  return updated;
}

/** A checkpoint's identity for shipped ramps: sha256 of its config and every tensor (by name), whatever file format it came in. */
export function checkpointFingerprint(ckpt: Checkpoint): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(ckpt.config));
  for (const name of [...ckpt.tensors.keys()].sort()) {
    const t = ckpt.tensors.get(name)!;
    hash.update(`${name}:${t.dims.join('x')}\n`);
    hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return hash.digest('hex');
}

const SHIPPED_RAMPS_JSON = 'ramps.json';

const ShippedRampsSchema = z.object({ checkpoint: z.string(), trainedRamps: TrainedRampsSchema });

/** Where ramps that ship with the repository live: models/NAME.ramps/. */
export const SHIPPED_RAMPS_DIR = path.join(PROJECT_ROOT, 'models');

/** Copies the trained ramps of the prepared model `dir` to `outDir` (ramps.bin, ramps.json), to ship with `ckpt`. */
export function exportRamps(dir: string, manifest: Manifest, ckpt: Checkpoint, outDir: string): void {
  if (!manifest.trainedRamps) throw new Error(`${dir} has no trained ramps to export`);
  fs.mkdirSync(outDir, { recursive: true });
  fs.copyFileSync(path.join(dir, manifest.trainedRamps.file), path.join(outDir, RAMPS_FILE));
  const shipped = { checkpoint: checkpointFingerprint(ckpt), trainedRamps: { ...manifest.trainedRamps, file: RAMPS_FILE } };
  fs.writeFileSync(path.join(outDir, SHIPPED_RAMPS_JSON), `${JSON.stringify(shipped, null, 2)}\n`);
}

/**
 * Installs shipped ramps trained on `ckpt` (a models/NAME.ramps/ folder whose
 * fingerprint matches) into the prepared model `dir`. Returns the updated
 * manifest and where they came from, or null when none match.
 */
export function installShippedRamps(
  dir: string,
  manifest: Manifest,
  ckpt: Checkpoint,
  shippedDir = SHIPPED_RAMPS_DIR,
): { manifest: Manifest; from: string } | null {
  if (!fs.existsSync(shippedDir)) return null;
  let fingerprint: string | null = null;
  for (const entry of fs
    .readdirSync(shippedDir)
    .filter((name) => name.endsWith('.ramps'))
    .sort()) {
    const from = path.join(shippedDir, entry);
    const parsed = ShippedRampsSchema.safeParse(JSON.parse(fs.readFileSync(path.join(from, SHIPPED_RAMPS_JSON), 'utf8')));
    // Cheap checks first: hashing a large checkpoint's weights takes a while.
    const fits = parsed.success && parsed.data.trainedRamps.candidateRows.dims[1] === manifest.config.dim;
    if (!fits || parsed.data.trainedRamps.ramps.some((r) => !manifest.rampCandidates.includes(r.layer))) continue;
    fingerprint ??= checkpointFingerprint(ckpt);
    if (parsed.data.checkpoint !== fingerprint) continue;
    fs.copyFileSync(path.join(from, RAMPS_FILE), path.join(dir, parsed.data.trainedRamps.file));
    return { manifest: installRampGraphs(dir, manifest, parsed.data.trainedRamps), from };
  }
  return null;
}

/** The candidate token ids of `dir`'s trained ramps. */
export function readCandidates(dir: string, ramps: TrainedRamps): Int32Array {
  const { offset, byteLength } = ramps.candidates;
  const bytes = fs.readFileSync(path.join(dir, ramps.file)).subarray(offset, offset + byteLength);
  return new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}
