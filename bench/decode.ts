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
 * catches the machine's hiccups whole, 1 on larger ones.
 *
 * Below it, issue 18's measure: per model and weights, offramp's engine
 * (default) at its fastest thread count against each llama.cpp column at
 * its own, as the ratio within each repeat (the two measured a few seconds
 * apart where the thread counts agree), median and range over the repeats.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { QUANTIZATIONS, readManifest, weightsLabel, type Quantization } from '../src/model/index.js';
import { hugePagesSet, onGlibc, PROJECT_ROOT, runAgainWithHugePages, stopWithParent } from '../src/util/index.js';
import { DECODE_VARIANTS, VariantProcess } from './decode-variant.js';
import { DEFAULT_LLAMA_CPP_OUT, findLlamaBench, llamaBenchDecode, nodeLlamaCppDecode } from './llama-cpp-decode.js';
import { exportGgufPeerModel, prepareBenchModel } from './models.js';
import { median, summarize } from './stats.js';

const PROMPT = 'Once upon a time';
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

interface Row {
  model: string;
  threads: number;
  /** 'float32' or 'int8' linear layers. */
  weights: string;
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
  /** Each repeat's tokens/s per column (empty where the column was left out): what the medians and ratios come from. */
  samples: Record<Column, number[]>;
}

const COLUMNS = ['perBlock', 'engineDefault', 'fused', 'nodeLlamaCpp', 'llamaBench', 'llamaBenchNoMmap'] as const;
type Column = (typeof COLUMNS)[number];

/** The llama.cpp columns issue 18 measures offramp against, and how the tables name them. */
const PEERS = [
  { column: 'llamaBench', label: 'llama-bench' },
  { column: 'llamaBenchNoMmap', label: 'llama-bench --mmap 0' },
  { column: 'nodeLlamaCpp', label: 'node-llama-cpp' },
] as const satisfies readonly { column: Column; label: string }[];

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
      if (gguf) await nodeLlamaCppDecode(gguf, PROMPT, threads, 8);
      const measured = Object.fromEntries(COLUMNS.map((column) => [column, [] as number[]])) as Record<Column, number[]>;
      for (let r = 0; r < repeats; r++) {
        measured.perBlock.push(await perBlock.measure());
        measured.engineDefault.push(await engineDefault.measure());
        measured.fused.push(await bare.measure());
        if (gguf) measured.nodeLlamaCpp.push(await nodeLlamaCppDecode(gguf, PROMPT, threads, numTokens, requests));
        if (gguf && llamaBenchDir) {
          measured.llamaBench.push(llamaBenchDecode(llamaBenchDir, gguf, threads, numTokens, { requests }));
          measured.llamaBenchNoMmap.push(llamaBenchDecode(llamaBenchDir, gguf, threads, numTokens, { requests, mmap: false }));
        }
        const last = (column: Column) => measured[column].at(-1)?.toFixed(1);
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
  const issue18 = issue18Measure(rows);
  process.stdout.write(`${table}\n\n${formatIssue18(issue18)}\n`);
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

/** One engine's run at its fastest thread count: which, and its tokens/s per repeat. */
interface FastestRun {
  threads: number;
  median: number;
  samples: number[];
}

/** Issue 18's measure for one model and weights: offramp's engine against each llama.cpp column, each at its fastest thread count. */
interface Issue18Row {
  model: string;
  weights: string;
  offramp: FastestRun;
  peers: { label: string; peer: FastestRun; ratio: { median: number; min: number; max: number } }[];
}

/** Of `rows` (one model and weights, one row per thread count), the run whose `column` has the highest median; null where nothing was measured. */
function fastest(rows: Row[], column: Column): FastestRun | null {
  const runs = rows
    .filter((r) => r.samples[column].length > 0)
    .map((r) => ({ threads: r.threads, median: median(r.samples[column])!, samples: r.samples[column] }));
  return runs.reduce<FastestRun | null>((best, run) => (best && best.median >= run.median ? best : run), null);
}

/** Issue 18's measure (see the module comment) for every model and weights of `rows`. */
function issue18Measure(rows: Row[]): Issue18Row[] {
  const groups = new Map<string, Row[]>();
  for (const row of rows) {
    const key = `${row.model} ${row.weights}`;
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  return [...groups.values()].map((group) => {
    const offramp = fastest(group, 'engineDefault')!;
    const peers = PEERS.flatMap(({ column, label }) => {
      const peer = fastest(group, column);
      if (!peer) return [];
      const ratios = summarize(offramp.samples.map((tokensPerSecond, r) => tokensPerSecond / peer.samples[r]!))!;
      return [{ label, peer, ratio: { median: ratios.p50, min: ratios.min, max: ratios.max } }];
    });
    return { model: group[0]!.model, weights: group[0]!.weights, offramp, peers };
  });
}

/** Issue 18's measure as the Markdown table printed under the bench's own. */
function formatIssue18(measure: Issue18Row[]): string {
  const run = (r: FastestRun) => `${r.median.toFixed(1)} (${r.threads} thread${r.threads === 1 ? '' : 's'})`;
  const labels = PEERS.map((p) => p.label);
  return [
    "Issue 18's measure: offramp's engine (default) at its fastest thread count against each llama.cpp column at its own; ratio within each repeat, median (range)",
    '',
    `| model | weights | offramp | ${labels.map((l) => `${l} | ratio`).join(' | ')} |`,
    `|---|---|---:|${labels.map(() => '---:|---:|').join('')}`,
    ...measure.map((m) => {
      const cells = labels.map((label) => {
        const p = m.peers.find((x) => x.label === label);
        return p ? `${run(p.peer)} | ${p.ratio.median.toFixed(2)}x (${p.ratio.min.toFixed(2)}–${p.ratio.max.toFixed(2)})` : '– | –';
      });
      return `| ${m.model} | ${m.weights} | ${run(m.offramp)} | ${cells.join(' | ')} |`;
    }),
  ].join('\n');
}

if (onGlibc() && !hugePagesSet(process.env)) {
  // glibc reads its tunables once, at start: run again in a process started with them.
  process.exitCode = await runAgainWithHugePages(values['huge-pages'] === 'on');
} else {
  stopWithParent();
  await measure();
}
