import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SseStream } from './sse.js';

async function readAll(body: ReadableStream<Uint8Array>): Promise<string[]> {
  const chunks: string[] = [];
  const decoder = new TextDecoder();
  for await (const chunk of body) chunks.push(decoder.decode(chunk));
  return chunks;
}

test('SSE frames: one data line each, several frames of one send in one chunk, [DONE] last', async () => {
  const sse = new SseStream(() => assert.fail('not cancelled'));
  sse.send({ a: 1 });
  sse.send({ text: 'two\nlines' }, [3]);
  sse.done();
  sse.send({ late: true });
  assert.deepEqual(await readAll(sse.body), ['data: {"a":1}\n\n', 'data: {"text":"two\\nlines"}\n\ndata: [3]\n\n', 'data: [DONE]\n\n']);
});

test('SSE: a cancelled body (the client left) calls back once, and later frames go nowhere', async () => {
  let cancels = 0;
  const sse = new SseStream(() => cancels++);
  const reader = sse.body.getReader();
  sse.send({ a: 1 });
  await reader.cancel();
  sse.send({ b: 2 });
  sse.done();
  assert.equal(cancels, 1);
});
