/**
 * Single-stream greedy decoding speed: offramp's engine running the blocks
 * one call each (as it must when ramps are looked at), the engine as it
 * decodes by default (small models take the fused graph when no ramp is
 * looked at), and a bare loop over the fused whole-model graph with the same
 * weights (the overhead floor); each with float32 and with int8 linear layers.
 * Beside them, llama.cpp on the same weights exported as GGUF (F32 beside
 * float32, Q8_0 beside int8): through node-llama-cpp, and llama.cpp's own
 * llama-bench when built: `--llama-bench DIR` (or $LLAMA_CPP_BIN) names the
 * folder holding it or build-llama-cpp.sh's OUT folder; by default the bench
 * looks in /tmp/llama.cpp-peer, where ../shared/peers/README.md builds it
 * (`../shared/peers/build-llama-cpp.sh /tmp/llama.cpp-peer`). `--llama-cpp
 * off` leaves llama.cpp out.
 *
 * On glibc the bench runs with huge pages asked for (`--huge-pages on`, the
 * default; see src/util/huge-pages.ts): it starts itself again with the
 * tunable unless GLIBC_TUNABLES already says, and llama.cpp's processes
 * inherit the same environment. `--huge-pages off` measures without.
 *
 *   npm run bench:decode [-- --models stories260K,stories110M --threads 1,2 --quantize none,int8 --repeats 5]
 *
 * Models: stories260K from ../shared/models, and random-weight synth shapes
 * (stories15M, stories110M, ...) generated once into models/prepared/.
 * Each of offramp's variants decodes in a process of its own
 * (decode-variant.ts), as llama.cpp's columns always did. Variants
 * alternate within each repeat so machine drift hits all alike;
 * the table reports medians. A measurement is `--requests` decodes
 * (tokens/s over all of them; llama-bench's `-r`): by default 8 on models
 * of width 64 or less, whose decode takes tens of milliseconds and so
 * catches the machine's hiccups whole, 1 on larger ones; node-llama-cpp
 * takes fewer where fewer of its decodes already last a second.
 *
 * Below it, issue 18's measure (peer-ratios.ts): offramp's engine at its
 * fastest thread count against each llama.cpp column at its own, the ratio
 * within each repeat.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { QUANTIZATIONS, readManifest, weightsLabel, type Quantization } from '../src/model/index.js';
import { hugePagesSet, onGlibc, PROJECT_ROOT, runAgainWithHugePages, stopWithParent } from '../src/util/index.js';
import { DECODE_VARIANTS, VariantProcess } from './decode-variant.js';
import { DEFAULT_LLAMA_CPP_OUT, findLlamaBench, llamaBenchDecode, nodeLlamaCppDecode } from './llama-cpp-decode.js';
import { exportGgufPeerModel, prepareBenchModel } from './models.js';
import { COLUMNS, formatPeerRatios, peerRatios, type DecodeSamples, type DecodeColumn } from './peer-ratios.js';
import { decodesPerMeasurement, median } from './stats.js';

const PROMPT = 'Once upon a time';
/** A measurement need not last longer than this (see decodesPerMeasurement). */
const MEASUREMENT_SECONDS = 1;
/** Unmeasured requests per engine before the repeats (see the warm-up below). */
const WARMUP_REQUESTS = 4;

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'stories260K,stories110M' },
    threads: { type: 'string', default: '1,2' },
    quantize: { type: 'string', default: QUANTIZATIONS.join(',') },
    repeats: { type: 'string', default: '5' },
    tokens: { type: 'string' },
    requests: { type: 'string' },
    'llama-cpp': { type: 'string', default: 'on' },
    'llama-bench': { type: 'string', default: process.env.LLAMA_CPP_BIN },
    out: { type: 'string', default: path.join(PROJECT_ROOT, 'bench', 'results', 'decode.json') },
    'huge-pages': { type: 'string', default: 'on' },
  },
});
if (!['on', 'off'].includes(values['huge-pages'])) throw new Error(`--huge-pages: ${JSON.stringify(values['huge-pages'])} is not on or off`);

interface Row extends DecodeSamples {
  /** The engine with every block a call of its own. */
  perBlockTokensPerSecond: number;
  /** The engine as configured by default (fused graph for small models when no ramp is looked at). */
  engineDefaultTokensPerSecond: number;
  /** A bare decode loop over the fused graph. */
  fusedTokensPerSecond: number;
  perBlockOverFused: number;
  /** llama.cpp through node-llama-cpp on the GGUF export (F32 or Q8_0); null when left out. */
  nodeLlamaCppTokensPerSecond: number | null;
  /** llama.cpp's llama-bench on the same file; null without a build. */
  llamaBenchTokensPerSecond: number | null;
  /** The same with the weights read into memory instead of mapped (`--mmap 0`). */
  llamaBenchNoMmapTokensPerSecond: number | null;
  /** Decodes per measurement. */
  requests: number;
  /** node-llama-cpp's, where fewer fill MEASUREMENT_SECONDS. */
  nodeLlamaCppRequests: number;
}

/** Every model, thread count and quantization in turn; prints the table and writes the JSON. */
async function measure(): Promise<void> {
  const rows: Row[] = [];
  const repeats = Number(values.repeats);
  const quantizations = values.quantize.split(',').map((q) => {
    if (!(QUANTIZATIONS as readonly string[]).includes(q)) throw new Error(`--quantize: ${JSON.stringify(q)} is not one of ${QUANTIZATIONS.join(', ')}`);
    return q as Quantization;
  });
  const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
  log(`GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES ?? '(unset)'}`);
  const withLlamaCpp = values['llama-cpp'] !== 'off';
  const llamaBenchDir = withLlamaCpp ? findLlamaBench(values['llama-bench']) : null;
  if (withLlamaCpp) {
    log(
      llamaBenchDir
        ? `llama-bench from ${llamaBenchDir}`
        : `no llama-bench column: none built in ${DEFAULT_LLAMA_CPP_OUT}; build it with \`../shared/peers/build-llama-cpp.sh ${DEFAULT_LLAMA_CPP_OUT}\` (about 10 minutes on 2 cores), or name a build with --llama-bench DIR (or LLAMA_CPP_BIN=DIR)`,
    );
  }
  for (const name of values.models.split(',')) {
    const builds: { quantization: Quantization; dir: string; gguf: string | null }[] = [];
    for (const quantization of quantizations) {
      const dir = (await prepareBenchModel(name, log, quantization)).dir;
      // The GGUF counterpart of each build: F32 beside float32, Q8_0 (also blocks of 32, one scale each) beside int8.
      const gguf = withLlamaCpp ? exportGgufPeerModel(name, log, quantization === 'int8' ? 'q8_0' : 'f32') : null;
      builds.push({ quantization, dir, gguf });
    }
    // Each thread count runs every quantization in turn, so float32 and int8 rows sit side by side.
    const runs = values.threads.split(',').flatMap((threads) => builds.map((build) => ({ threads: Number(threads), ...build })));
    for (const { threads, quantization, dir, gguf } of runs) {
      const weights = weightsLabel(quantization);
      const { dim } = readManifest(dir).config;
      const numTokens = Number(values.tokens ?? (dim <= 64 ? 256 : 64));
      const requests = Number(values.requests ?? (dim <= 64 ? 8 : 1));
      // Each variant in a process of its own, started one after the other (loading is not timed).
      const variants: VariantProcess[] = [];
      for (const variant of DECODE_VARIANTS) variants.push(await VariantProcess.start(dir, threads, variant, PROMPT, numTokens, requests));
      const [perBlock, engineDefault, bare] = variants as [VariantProcess, VariantProcess, VariantProcess];
      // Warm-up: a few requests' worth for each engine, so the JIT has compiled its steps (a cold engine runs
      // the first thousand or so stories260K tokens 30-40% slower), as in a server that has been running.
      for (let i = 0; i < Math.ceil(WARMUP_REQUESTS / requests); i++) for (const variant of variants) await variant.measure();
      // node-llama-cpp's warm-up decode also sets its decodes a measurement: on two threads its spinning workers make
      // it decode stories260K at about 75 tokens/s, where one 256-token decode takes 3.4 s (eight a measurement took 4.5 of a
      // 12-minute run).
      const nodeLlamaCppRequests = gguf
        ? decodesPerMeasurement(await nodeLlamaCppDecode(gguf, PROMPT, threads, numTokens), numTokens, requests, MEASUREMENT_SECONDS)
        : requests;
      const measured = Object.fromEntries(COLUMNS.map((column) => [column, [] as number[]])) as Record<DecodeColumn, number[]>;
      for (let r = 0; r < repeats; r++) {
        measured.perBlock.push(await perBlock.measure());
        measured.engineDefault.push(await engineDefault.measure());
        measured.fused.push(await bare.measure());
        if (gguf) measured.nodeLlamaCpp.push(await nodeLlamaCppDecode(gguf, PROMPT, threads, numTokens, nodeLlamaCppRequests));
        if (gguf && llamaBenchDir) {
          measured.llamaBench.push(llamaBenchDecode(llamaBenchDir, gguf, threads, numTokens, { requests }));
          measured.llamaBenchNoMmap.push(llamaBenchDecode(llamaBenchDir, gguf, threads, numTokens, { requests, mmap: false }));
        }
        const last = (column: DecodeColumn) => measured[column].at(-1)?.toFixed(1);
        const llamaCpp = `${gguf ? `, node-llama-cpp ${last('nodeLlamaCpp')}` : ''}${llamaBenchDir && gguf ? `, llama-bench ${last('llamaBench')} (--mmap 0: ${last('llamaBenchNoMmap')})` : ''}`;
        process.stderr.write(
          `bench: ${name} ${weights} threads=${threads} repeat ${r + 1}/${repeats}: per-block ${last('perBlock')}, engine default ${last('engineDefault')}, fused ${last('fused')}${llamaCpp} tokens/s\n`,
        );
      }
      rows.push({
        model: name,
        threads,
        weights,
        perBlockTokensPerSecond: median(measured.perBlock)!,
        engineDefaultTokensPerSecond: median(measured.engineDefault)!,
        fusedTokensPerSecond: median(measured.fused)!,
        perBlockOverFused: median(measured.perBlock)! / median(measured.fused)!,
        nodeLlamaCppTokensPerSecond: median(measured.nodeLlamaCpp),
        llamaBenchTokensPerSecond: median(measured.llamaBench),
        llamaBenchNoMmapTokensPerSecond: median(measured.llamaBenchNoMmap),
        requests,
        nodeLlamaCppRequests,
        samples: measured,
      });
      for (const variant of variants) await variant.stop();
    }
  }

  const cell = (x: number | null) => (x === null ? '–' : x.toFixed(1));
  const table = [
    '| model | threads | weights | engine, block by block | engine, default | bare fused-graph loop | block by block / fused | llama.cpp (node-llama-cpp) | llama.cpp (llama-bench) | llama-bench --mmap 0 |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.model} | ${r.threads} | ${r.weights} | ${r.perBlockTokensPerSecond.toFixed(1)} | ${r.engineDefaultTokensPerSecond.toFixed(1)} | ${r.fusedTokensPerSecond.toFixed(1)} | ${(100 * r.perBlockOverFused).toFixed(1)}% | ${cell(r.nodeLlamaCppTokensPerSecond)} | ${cell(r.llamaBenchTokensPerSecond)} | ${cell(r.llamaBenchNoMmapTokensPerSecond)} |`,
    ),
  ].join('\n');
  const issue18 = peerRatios(rows);
  process.stdout.write(`${table}\n\n${formatPeerRatios(issue18)}\n`);
  fs.mkdirSync(path.dirname(values.out), { recursive: true });
  fs.writeFileSync(
    values.out,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        command: `npm run bench:decode -- ${process.argv.slice(2).join(' ')}`.trim(),
        glibcTunables: process.env.GLIBC_TUNABLES ?? null,
        repeats,
        rows,
        issue18,
      },
      null,
      2,
    ),
  );
}

if (onGlibc() && !hugePagesSet(process.env)) {
  // glibc reads its tunables once, at start: run again in a process started with them.
  process.exitCode = await runAgainWithHugePages(values['huge-pages'] === 'on');
} else {
  stopWithParent();
  await measure();
}
