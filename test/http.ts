/**
 * Helpers for tests that talk to a real server over HTTP: scraping
 * /metrics, waiting for a condition, reading an SSE stream.
 */
import { createParser } from 'eventsource-parser';

/** One series of /metrics (an unlabelled gauge, or a labelled series given its full selector); NaN when absent. */
export async function metric(url: string, selector: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${selector} `));
  return line === undefined ? NaN : Number(line.slice(selector.length + 1));
}

/** Polls `check` until it holds; throws after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/**
 * Reads an SSE response: resolves once its first frame is in, with a promise
 * of every frame's data when the stream ends (wrapped: an async function
 * would flatten a bare promise).
 */
export async function sseFrames(res: Response): Promise<{ frames: Promise<string[]> }> {
  const frames: string[] = [];
  const parser = createParser({ onEvent: (event) => frames.push(event.data) });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  while (frames.length === 0) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.feed(decoder.decode(value, { stream: true }));
  }
  const rest = async (): Promise<string[]> => {
    for (let r = await reader.read(); !r.done; r = await reader.read()) parser.feed(decoder.decode(r.value, { stream: true }));
    return frames;
  };
  return { frames: rest() };
}
