/**
 * Is onnxruntime's one-row matrix-vector product the limit? A graph of
 * nothing but linear layers (y = W x for one row x [1, K], W [N, K], built
 * and stored as the model's are: src/model/linear-graph.ts) against
 * llama.cpp's ggml computing the same products (bench/ggml-matvec.c, F32
 * beside float32, Q8_0 beside int8), at stories110M's shapes: the fused
 * wqkv (768 -> 2304), w1/w3 (768 -> 4096), w2 (2048 -> 768) and the head
 * (768 -> 32000, run as the model runs it: Gemm in float32).
 *
 *   npm run build && node dist/bench/matvec-peer.js [--threads 1,2] [--quantize none,int8] [--repeats 5] [--llama-cpp DIR|off] [--out FILE.json]
 *
 * Each layer shape runs as a single product and as 12 products in one graph
 * (12 weights of their own: a token's worth of that shape). A single
 * product's few megabytes stay in the CPU's caches from call to call, so it
 * times the kernel more than the memory; the 12-product graph streams from
 * memory as a token does, and is the fair match for llama.cpp, which
 * computes a token as one graph of many products. A product with N = 8
 * shows each engine's fixed cost per call. onnxruntime runs with the
 * model's session options (createSession) at each intra-op spinning setting
 * (SPINNING: 'never' is the model's). Medians over calls (about a third of a
 * second of them), then over repeats; the engines alternate within each
 * repeat. Weights are random (the same distribution, not the same bytes, on
 * both sides: only the bytes read matter to the speed), written to a
 * temporary folder.
 *
 * The ggml column needs gcc and a llama.cpp build (ggml's headers and
 * libraries beside llama-bench): `--llama-cpp DIR` (or $LLAMA_CPP_BIN) names
 * it as bench:decode's `--llama-bench` does (findLlamaBench); by default
 * /tmp/llama.cpp-peer, where ../shared/peers/README.md builds it;
 * `--llama-cpp off` leaves it out.
 * Below the table: the machine's streaming reference, bench/matvec.c
 * (llama2.c's float32 loop over stories110M's weights) at each thread count.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import {
  createSession,
  LinearIO,
  QUANTIZATIONS,
  SPINNING,
  SYNTH_SHAPES,
  weightsLabel,
  writeLinearGraph,
  type Quantization,
  type Spinning,
  type Tensor,
} from '../src/model/index.js';
import { PROJECT_ROOT, Rng } from '../src/util/index.js';
import { DEFAULT_LLAMA_CPP_OUT, findLlamaBench } from './llama-cpp-decode.js';
import { median } from './stats.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '1,2' },
    quantize: { type: 'string', default: QUANTIZATIONS.join(',') },
    repeats: { type: 'string', default: '5' },
    'llama-cpp': { type: 'string', default: process.env.LLAMA_CPP_BIN },
    out: { type: 'string', default: path.join(PROJECT_ROOT, 'bench', 'results', 'matvec-peer.json') },
  },
});
const threadCounts = values.threads.split(',').map((t) => {
  if (!/^[1-9]\d*$/.test(t)) throw new Error(`--threads: ${JSON.stringify(t)} is not a positive whole number (e.g. --threads 1,2)`);
  return Number(t);
});
const repeats = Number(values.repeats);
const quantizations = values.quantize.split(',').map((q) => {
  if (!(QUANTIZATIONS as readonly string[]).includes(q)) throw new Error(`--quantize: ${JSON.stringify(q)} is not one of ${QUANTIZATIONS.join(', ')}`);
  return q as Quantization;
});
const log = (line: string) => process.stderr.write(`matvec-peer: ${line}\n`);

/** Time each engine spends per measurement, so short products get many calls and long ones a few. */
const MEASURE_US = 300_000;

interface Shape {
  name: string;
  inFeatures: number; // K
  outFeatures: number; // N
  products: number;
  head?: boolean;
}
const { dim, hiddenDim, numHeads, numKvHeads, headDim, vocabSize, numLayers } = SYNTH_SHAPES.stories110M;
const layerShapes = [
  { name: 'wqkv', inFeatures: dim, outFeatures: (numHeads + 2 * numKvHeads) * headDim },
  { name: 'w13', inFeatures: dim, outFeatures: 2 * hiddenDim },
  { name: 'w2', inFeatures: hiddenDim, outFeatures: dim },
];
const SHAPES: Shape[] = [
  { name: 'fixed cost', inFeatures: dim, outFeatures: 8, products: 1 },
  ...layerShapes.flatMap((s) => [1, numLayers].map((products) => ({ ...s, products }))),
  { name: 'head', inFeatures: dim, outFeatures: vocabSize, products: 1, head: true },
];

/** Whether gcc is on PATH (it builds the ggml program and the streaming reference); says what is missing when not. */
function haveGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    log('no gcc on PATH: no ggml column and no streaming reference (install gcc to get them)');
    return false;
  }
}

/** Compiles bench/ggml-matvec.c against the llama.cpp build whose tools are in `binDir` (findLlamaBench). */
function buildGgmlMatvec(binDir: string, outDir: string): string {
  const include = path.resolve(binDir, '..', '..', 'ggml', 'include');
  if (!fs.existsSync(path.join(include, 'ggml-cpu.h'))) {
    throw new Error(`no ggml headers at ${include}: name build-llama-cpp.sh's OUT folder (or its llama.cpp/build/bin) with --llama-cpp`);
  }
  const bin = path.join(outDir, 'ggml-matvec');
  const source = path.join(PROJECT_ROOT, 'bench', 'ggml-matvec.c');
  const libs = ['-lggml', '-lggml-base', '-lggml-cpu'];
  execFileSync('gcc', ['-O2', source, `-I${include}`, `-L${binDir}`, ...libs, `-Wl,-rpath,${binDir}`, '-o', bin]);
  return bin;
}

/** bench/matvec.c's GB/s at `threads` (OpenMP): llama2.c's loop streaming stories110M's float32 weights. */
function streamingReference(outDir: string, threads: number): number {
  const bin = path.join(outDir, 'matvec');
  if (!fs.existsSync(bin)) execFileSync('gcc', ['-Ofast', '-march=native', '-fopenmp', path.join(PROJECT_ROOT, 'bench', 'matvec.c'), '-o', bin]);
  const line = execFileSync(bin, { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) } });
  const gbps = /\(([\d.]+) GB\/s\)/.exec(line)?.[1];
  if (gbps === undefined) throw new Error(`bench/matvec.c printed no GB/s: ${line}`);
  return Number(gbps);
}

/** Median µs per call of `run`, over `calls` calls. */
function timeCalls(run: () => void, calls: number): number {
  const us: number[] = [];
  for (let c = 0; c < calls; c++) {
    const start = performance.now();
    run();
    us.push((performance.now() - start) * 1000);
  }
  return median(us)!;
}

/** [rows, cols], uniform in [-scale, scale). */
function randomTensor(rng: Rng, rows: number, cols: number, scale: number): Tensor {
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = scale * (2 * rng.next() - 1);
  return { dims: [rows, cols], data };
}

interface Row {
  shape: string;
  inFeatures: number;
  outFeatures: number;
  products: number;
  /** 'float32' or 'int8' (onnxruntime: MatMul, or Gemm for the head / MatMulNBits; ggml: F32 / Q8_0). */
  weights: string;
  threads: number;
  /** Weight bytes one graph reads in onnxruntime (int8: codes and float32 scales, 36 bytes per 32 weights). */
  ortBytes: number;
  /** Median µs per call by intra-op spinning ('never' is how the model runs); null where not measured (one thread). */
  ortUs: Record<Spinning, number | null>;
  /** ggml's weight bytes (Q8_0: codes and float16 scales, 34 bytes per 32 weights); null without ggml. */
  ggmlBytes: number | null;
  ggmlUs: number | null;
}

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-matvec-'));
const rows: Row[] = [];
const streaming: { threads: number; gbPerSecond: number }[] = [];
try {
  const gcc = haveGcc();
  const withGgml = gcc && values['llama-cpp'] !== 'off';
  const llamaCppDir = withGgml ? findLlamaBench(values['llama-cpp']) : null;
  if (withGgml && !llamaCppDir) {
    log(
      `no ggml column: no llama.cpp build in ${DEFAULT_LLAMA_CPP_OUT}; build it with \`../shared/peers/build-llama-cpp.sh ${DEFAULT_LLAMA_CPP_OUT}\` (about 10 minutes on 2 cores), or name one with --llama-cpp DIR (or LLAMA_CPP_BIN=DIR)`,
    );
  }
  const ggmlMatvec = llamaCppDir ? buildGgmlMatvec(llamaCppDir, workDir) : null;
  if (ggmlMatvec) log(`ggml from ${llamaCppDir}`);
  if (gcc) for (const threads of threadCounts) streaming.push({ threads, gbPerSecond: streamingReference(workDir, threads) });

  const rng = new Rng(0);
  for (const shape of SHAPES) {
    const { inFeatures: k, outFeatures: n, products } = shape;
    for (const quantization of quantizations) {
      const weights = weightsLabel(quantization);
      const graphDir = fs.mkdtempSync(path.join(workDir, 'graph-'));
      const { graph, weightBytes } = writeLinearGraph(
        graphDir,
        Array.from({ length: products }, () => randomTensor(rng, n, k, 0.05)),
        quantization,
        shape.head,
      );
      const x = new ort.Tensor('float32', randomTensor(rng, 1, k, 1).data, [1, k]);
      // Outputs bound in place, as the engine binds its own.
      const fetches = Object.fromEntries(
        Array.from({ length: products }, (_, i) => [LinearIO.output(i), new ort.Tensor('float32', new Float32Array(n), [1, n])]),
      );
      for (const threads of threadCounts) {
        // At one thread onnxruntime starts no intra-op threads, so there is nothing to spin: the model's setting only.
        const sessions = (threads > 1 ? SPINNING : SPINNING.slice(0, 1)).map((spinning) => {
          const session = createSession(graph, { device: 'cpu', threads, spinning }, graphDir);
          const call = () => void session.run({ [LinearIO.input]: x }, fetches);
          timeCalls(call, 5); // warm-up
          return { spinning, session, call };
        });
        // The model's setting sizes the measurement: about MEASURE_US of calls.
        const calls = Math.max(10, Math.min(5000, Math.round(MEASURE_US / timeCalls(sessions[0]!.call, 5))));
        let ggmlBytes: number | null = null;
        const engines: { name: string; spinning: Spinning | null; measure: () => number; us: number[] }[] = sessions.map((s) => ({
          name: `onnxruntime, spinning ${s.spinning}`,
          spinning: s.spinning,
          measure: () => timeCalls(s.call, calls),
          us: [],
        }));
        if (ggmlMatvec) {
          const args = [k, n, products, quantization === 'int8' ? 'q8_0' : 'f32', threads, calls].map(String);
          const measure = () => {
            const [micros, bytes] = execFileSync(ggmlMatvec, args, { encoding: 'utf8' }).trim().split(' ').map(Number);
            ggmlBytes = bytes!;
            return micros!;
          };
          engines.push({ name: 'ggml', spinning: null, measure, us: [] });
        }
        for (let r = 0; r < repeats; r++) {
          // Each repeat starts with the next engine, so none always follows the same one.
          for (let e = 0; e < engines.length; e++) {
            const engine = engines[(r + e) % engines.length]!;
            engine.us.push(engine.measure());
          }
          const line = engines.map((e) => `${e.name} ${e.us.at(-1)!.toFixed(1)}`).join(', ');
          log(`${shape.name} x${products} ${weights} threads=${threads} repeat ${r + 1}/${repeats}: ${line} µs`);
        }
        for (const s of sessions) s.session.release();
        const ortUs: Record<Spinning, number | null> = { never: null, 'in-calls': null, always: null };
        for (const e of engines) if (e.spinning) ortUs[e.spinning] = median(e.us)!;
        const ggml = engines.find((e) => e.spinning === null);
        rows.push({
          shape: shape.name,
          inFeatures: k,
          outFeatures: n,
          products,
          weights,
          threads,
          ortBytes: weightBytes,
          ortUs,
          ggmlBytes,
          ggmlUs: ggml ? median(ggml.us) : null,
        });
      }
      fs.rmSync(graphDir, { recursive: true, force: true });
    }
  }
} finally {
  fs.rmSync(workDir, { recursive: true, force: true });
}

/** "µs (GB/s)" */
const cell = (bytes: number | null, micros: number | null) =>
  bytes === null || micros === null ? '–' : `${micros.toFixed(1)} (${(bytes / micros / 1000).toFixed(1)})`;
const table = [
  `| product (K -> N) | weights | threads | MB a graph | ${SPINNING.map((s) => `onnxruntime, spinning ${s}`).join(' | ')} | ggml | onnxruntime (never) / ggml |`,
  `|---|---|---:|---:|${SPINNING.map(() => '---:|').join('')}---:|---:|`,
  ...rows.map((r) => {
    const product = `${r.shape} ${r.inFeatures} -> ${r.outFeatures}${r.products > 1 ? ` x${r.products}` : ''}`;
    const spins = SPINNING.map((s) => cell(r.ortBytes, r.ortUs[s])).join(' | ');
    const ratio = r.ggmlUs === null || r.ortUs.never === null ? '–' : `${(r.ortUs.never / r.ggmlUs).toFixed(2)}x`;
    return `| ${product} | ${r.weights} | ${r.threads} | ${(r.ortBytes / 1e6).toFixed(2)} | ${spins} | ${cell(r.ggmlBytes, r.ggmlUs)} | ${ratio} |`;
  }),
].join('\n');
const reference = streaming.map((s) => `${s.threads} thread${s.threads > 1 ? 's' : ''} ${s.gbPerSecond.toFixed(1)} GB/s`).join(', ');
const referenceLine = streaming.length ? `\nStreaming reference (bench/matvec.c, llama2.c's float32 loop over stories110M's weights): ${reference}\n` : '';
process.stdout.write(`Median µs per graph (GB/s of weights read)\n\n${table}\n${referenceLine}`);
fs.mkdirSync(path.dirname(values.out), { recursive: true });
fs.writeFileSync(
  values.out,
  JSON.stringify(
    { date: new Date().toISOString(), command: `node dist/bench/matvec-peer.js ${process.argv.slice(2).join(' ')}`.trim(), repeats, streaming, rows },
    null,
    2,
  ),
);
