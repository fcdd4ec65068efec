/**
 * The layers, enforced: reads every relative import in src/ and bench/ and
 * fails on a cross-part import of a non-index file, an import against the
 * direction of flow, or a circular import.
 *
 * A part is a folder of src/ (model, exits, engine, ramps, server,
 * playground, util), the top-level `cli` (src/cli.ts, src/main.ts) or `bench`. Tests
 * beside the code may reach into other parts' files (they are white-box);
 * the direction and cycle rules hold for them too. src/util is the shared
 * leaf of one-file helpers: its files may be imported directly.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT } from '../src/util/index.js';

/** Parts each part must never import. util is the shared leaf: it imports no other part. */
const FORBIDDEN: Record<string, string[]> = {
  util: ['model', 'exits', 'engine', 'ramps', 'server', 'playground', 'cli', 'bench'],
  exits: ['model', 'engine', 'ramps', 'server', 'playground', 'cli', 'bench'],
  model: ['engine', 'server', 'exits', 'ramps', 'playground', 'cli', 'bench'],
  engine: ['ramps', 'server', 'playground', 'cli', 'bench'],
  ramps: ['server', 'playground', 'cli', 'bench'],
  playground: ['model', 'exits', 'engine', 'ramps', 'server', 'cli', 'bench'],
  server: ['cli', 'bench'],
  cli: ['bench'],
  bench: ['cli'],
};

/** Every .ts file under `dir`, as paths relative to the project root. */
function sourceFiles(dir: string): string[] {
  const entries = fs.readdirSync(path.join(PROJECT_ROOT, dir), { withFileTypes: true });
  return entries.flatMap((entry) => {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(relative);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [relative] : [];
  });
}

/** The part a project file belongs to, or null outside src/ and bench/ (test/, node_modules). */
function partOf(file: string): string | null {
  const [top, second] = file.split(path.sep);
  if (top === 'bench') return 'bench';
  if (top !== 'src' || second === undefined) return null;
  return second.endsWith('.ts') ? 'cli' : second;
}

/** The project files `file` imports (relative specifiers only; `.js` maps back to `.ts`). */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(path.join(PROJECT_ROOT, file), 'utf8');
  const specifiers = [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'(\.[^']+)'/gm), ...text.matchAll(/import\(\s*'(\.[^']+)'\s*\)/g)];
  return specifiers.map((match) => path.join(path.dirname(file), match[1]!.replace(/\.js$/, '.ts')));
}

const files = [...sourceFiles('src'), ...sourceFiles('bench')];
const graph = new Map(files.map((file) => [file, importsOf(file)]));

/** Every rule the import graph breaks, one line each. */
function violations(): string[] {
  const found: string[] = [];
  for (const [file, imports] of graph) {
    const from = partOf(file)!;
    const isTest = file.endsWith('.test.ts');
    for (const target of imports) {
      const to = partOf(target);
      if (to === null || to === from) continue;
      if (FORBIDDEN[from]?.includes(to)) found.push(`${file} imports ${target}: ${from} must not import ${to}`);
      else if (!isTest && to !== 'cli' && to !== 'util' && path.basename(target) !== 'index.ts') {
        found.push(`${file} imports ${target}: import ${to} through src/${to}/index.ts (export it there)`);
      }
    }
  }
  return found;
}

/** Import cycles, each as the chain of files that closes it. */
function cycles(): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string): void => {
    state.set(file, 'visiting');
    stack.push(file);
    for (const target of graph.get(file) ?? []) {
      if (state.get(target) === 'visiting') found.push([...stack.slice(stack.indexOf(target)), target]);
      else if (!state.has(target) && graph.has(target)) visit(target);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  return found;
}

test('every import in src/ and bench/ resolves to a file', () => {
  const missing = [...graph].flatMap(([file, imports]) =>
    imports.filter((target) => partOf(target) !== null && !fs.existsSync(path.join(PROJECT_ROOT, target))).map((target) => `${file} imports ${target}`),
  );
  assert.deepEqual(missing, []);
});

test('parts import each other only through index files, and only down the layers', () => {
  assert.deepEqual(violations(), []);
});

test('no circular imports', () => {
  assert.deepEqual(
    cycles().map((chain) => chain.join(' -> ')),
    [],
  );
});
