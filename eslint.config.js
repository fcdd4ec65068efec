// ESLint flat config. TypeScript (src, test, bench: the root tsconfig) gets typescript-eslint's type-aware
// recommended rules; the playground's browser modules (plain JS with JSDoc types, type-checked by
// `npx tsc -p src/playground`) get the plain recommended rules. Formatting is Prettier's job
// (.prettierrc.json): neither preset has formatting rules, so the two never disagree.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'models/', 'scratch/', 'test-artifacts/', 'bench/results/'] },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // node:test's test()/describe() return promises that the runner itself awaits; everything else must be awaited or voided.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] }] },
      ],
      // `const { log: _log, ...rest } = options` is how we drop fields from an object.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true, argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Shapes are written as `[${dims}]` on purpose (arrays join with commas); objects still may not become "[object Object]".
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowArray: true, allowBoolean: true, allowNullish: true, allowNumber: true, allowRegExp: true },
      ],
      // Off: `async` without `await` is deliberate here: it fits a Promise-returning interface (Target.snapshot, the CLI's command
      // table) so that throws become rejections, and `async function*` is how the fake engines in the tests make an AsyncIterable.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // House style (../shared/STYLE.md): only src/main.ts may call process.exit (23).
    files: ['**/*.ts'],
    ignores: ['src/main.ts'],
    rules: {
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'exit', message: 'Only src/main.ts may call process.exit; set process.exitCode or throw.' },
      ],
    },
  },
  {
    // House style: bench/ is never imported by src (19); src/exits is pure logic with no onnxruntime (24).
    files: ['src/**/*.ts'],
    ignores: ['src/exits/**'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['**/bench/**'], message: 'src never imports bench/.' }] }] },
  },
  {
    files: ['src/exits/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [{ name: 'onnxruntime-node', message: 'src/exits is pure logic: no onnxruntime.' }],
          patterns: [{ group: ['**/bench/**'], message: 'src never imports bench/.' }],
        },
      ],
    },
  },
  {
    files: ['src/playground/**/*.js'],
    extends: [js.configs.recommended],
    languageOptions: { sourceType: 'module', globals: globals.browser },
  },
  {
    files: ['eslint.config.js'],
    extends: [js.configs.recommended],
    languageOptions: { sourceType: 'module', globals: globals.node },
  },
);
