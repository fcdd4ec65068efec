/**
 * Damaged or unsupported GGUF files on the command line: one clear line,
 * exit 2, and no prepared directory (or half of one) left behind.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { runCli, tempDir } from './helpers.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

/** stories260K.gguf's bytes with the 4 bytes `after` the first occurrence of `marker` replaced. */
function patched(original: Buffer, marker: string, after: number, bytes: Buffer): Buffer {
  const copy = Buffer.from(original);
  const at = copy.indexOf(Buffer.from(marker, 'utf8'));
  assert.ok(at >= 0, `${marker} is in the file`);
  bytes.copy(copy, at + marker.length + after);
  return copy;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

test('bad GGUF files: one line each, exit 2, nothing left behind', (t) => {
  if (!requireSharedModels(t)) return;
  const good = fs.readFileSync(sharedModelPath('stories260K', 'stories260K.gguf'));
  const dir = tempDir(t);
  const cases: [string, Buffer, RegExp][] = [
    ['truncated', good.subarray(0, 1000), /truncated: .* needs \d+ bytes, the file ends at 1000$/],
    ['wrong magic', Buffer.concat([Buffer.from('GGML'), good.subarray(4)]), /not a GGUF file/],
    // token_embd.weight's info: name, then n_dims (4 bytes), ne (2 x 8), then its type.
    [
      'unknown tensor type',
      patched(good, 'token_embd.weight', 4 + 16, u32(12)),
      /tensor token_embd.weight has ggml type 12 \(Q4_K\), which offramp does not read/,
    ],
    ['data out of bounds', good.subarray(0, good.length - 100), /tensor \S+'s data \(bytes \d+ to \d+\) lies beyond the end of the file/],
    // general.architecture's value: type (4 bytes), length (8), then "llama".
    ['unknown architecture', patched(good, 'general.architecture', 4 + 8, Buffer.from('mamba')), /GGUF architecture "mamba" is not supported/],
  ];
  for (const [name, bytes, message] of cases) {
    const file = path.join(dir, `${name.replaceAll(' ', '-')}.gguf`);
    fs.writeFileSync(file, bytes);
    const out = path.join(dir, `${name.replaceAll(' ', '-')}-prepared`);
    const result = runCli(['prepare', file, '--out', out]);
    assert.equal(result.status, 2, `${name}: ${result.stderr}`);
    const lines = result.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `${name}: one line, got ${result.stderr}`);
    assert.match(lines[0]!, /^offramp: error: /, name);
    assert.match(lines[0]!, message, name);
    assert.ok(!fs.existsSync(out), `${name}: no output directory`);
    assert.deepEqual(
      fs.readdirSync(dir).filter((f) => f.includes('prepared')),
      [],
      `${name}: no partial directory`,
    );
  }
});
