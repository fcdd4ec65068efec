/**
 * The chat playground in a real headless Chromium (playwright-core, the
 * system's /usr/bin/chromium) against the real server on stories260K:
 * the page loads with nothing from elsewhere, streams tokens progressively
 * in ramp colors, chats over several turns, stops on Escape (the server
 * frees the slot), shows errors in plain words and keeps working.
 *
 * Screenshots go to test-artifacts/. With OFFRAMP_UPDATE_SCREENSHOT=1 the
 * README's docs/playground.png is rewritten too (it is committed, so a
 * plain test run leaves it alone).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ServeConfigSchema, startServer } from '../src/server/index.js';
import { metric, until } from './http.js';
import { requireSharedModels, sharedModelPath } from './shared.js';

const CHROMIUM = process.env.OFFRAMP_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The project root (from test/ and from dist/test/). */
function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}
const ROOT = projectRoot();
const ARTIFACTS = path.join(ROOT, 'test-artifacts');

/** Types a prompt and presses Enter; resolves once the new reply has ended, with how it ended and its token count. */
async function sendAndWait(page: Page, prompt: string): Promise<{ state: string; tokens: number }> {
  const before = await page.locator('.message-reply').count();
  await page.focus('#prompt');
  await page.fill('#prompt', prompt);
  await page.keyboard.press('Enter');
  const reply = page.locator('.message-reply').nth(before);
  await reply.locator('.status').waitFor({ timeout: 20_000 });
  return { state: (await reply.getAttribute('data-state')) ?? '', tokens: await reply.locator('.tok').count() };
}

test('the playground in headless Chromium on stories260K', { timeout: 90_000 }, async (t: TestContext) => {
  if (!requireSharedModels(t)) return;
  if (!fs.existsSync(CHROMIUM)) {
    const message = `${CHROMIUM} not found (apt-get install chromium): playground test skipped`;
    if (process.env.CI === 'true') throw new Error(message);
    t.skip(message);
    return;
  }
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'offramp-playground-test-'));
  process.env.OFFRAMP_CACHE_DIR = cache;
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const server = await startServer(
    ServeConfigSchema.parse({
      model: sharedModelPath('stories260K', 'stories260K.bin'),
      tokenizer: sharedModelPath('stories260K', 'tok512.bin'),
      port: 0,
      debugRoutes: true,
    }),
  );
  let browser: Browser | null = null;
  t.after(async () => {
    await browser?.close();
    await server.stop(1000);
    fs.rmSync(cache, { recursive: true, force: true });
  });
  await server.ready;

  await t.test('serves the page, its modules and eventsource-parser, and nothing else', async () => {
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    const parser = await fetch(`${server.url}/playground/vendor/eventsource-parser.js`);
    assert.match(parser.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.match(await parser.text(), /function createParser/);
    for (const hidden of ['/playground/routes.ts', '/playground/tsconfig.json', '/playground/..%2F..%2Fpackage.json', '/playground/.hidden.js']) {
      assert.equal((await fetch(`${server.url}${hidden}`)).status, 404, hidden);
    }
  });

  await t.test('the browser modules type-check against the DOM (src/playground/tsconfig.json)', async () => {
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    await promisify(execFile)(process.execPath, [tsc, '-p', path.join(ROOT, 'src', 'playground')]).catch((error: Error & { stdout?: string }) => {
      assert.fail(`tsc -p src/playground failed:\n${error.stdout ?? String(error)}`);
    });
  });

  await t.test('error answers in plain words, for each status the server uses', async () => {
    // api.js is a browser module, but it imports nothing Node lacks: the words can be checked here directly.
    const api = (await import(pathToFileURL(path.join(ROOT, 'src', 'playground', 'api.js')).href)) as {
      describeError(status: number, error: { message?: string; code?: string | null }, retryAfter: string | null): string;
    };
    const words = (status: number, code: string | null = null, retryAfter: string | null = null) =>
      api.describeError(status, { message: 'details', code }, retryAfter);
    assert.equal(words(429, 'queue_full', '2'), 'The server is busy: too many requests at once. Try again in 2 s.');
    assert.match(words(429, 'queue_timeout'), /waited too long for a free slot/);
    assert.match(words(400, 'context_length_exceeded'), /^Too long for this model/);
    assert.match(words(400, 'invalid_value'), /^The server refused this request as invalid \(details\)/);
    assert.match(words(401, 'invalid_api_key'), /needs an API key/);
    assert.match(words(413), /too large/);
    assert.match(words(503, 'model_loading'), /loading the model/);
    assert.match(words(500), /failed \(HTTP 500\)/);
  });

  // On stories260K the controller rightly keeps the ramps nearly shut, so colours would have nothing
  // to show: force the ramp after block 4 open (POST /debug/exits), after a little traffic for feedback.
  // Sampled, unseeded requests: greedy and seeded ones asked to exit decode lossless (the server's rule).
  const forceExits = async (exits: object) => {
    const res = await fetch(`${server.url}/debug/exits`, { method: 'POST', body: JSON.stringify(exits) });
    assert.equal(res.status, 202, await res.text());
  };
  await forceExits({ ramps: [{ layer: 3, threshold: 0.5 }] });
  await Promise.all(
    ['Once upon a time', 'Tom and his dog', 'The sun was hot and', 'Lily wanted to'].map(async (prompt) => {
      const res = await fetch(`${server.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt, max_tokens: 150, temperature: 0.8 }) });
      assert.equal(res.status, 200);
      await res.text();
    }),
  );

  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: { width: 1280, height: 820 } });
  const page = await context.newPage();
  const requests: string[] = [];
  const chatBodies: { messages: { role: string; content: string }[] }[] = [];
  const pageErrors: string[] = [];
  page.on('request', (request) => {
    requests.push(request.url());
    if (request.url().endsWith('/v1/chat/completions')) chatBodies.push(request.postDataJSON() as (typeof chatBodies)[number]);
  });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(`${server.url}/`);
  await page.locator('#model option').first().waitFor({ state: 'attached' });

  await t.test('every control has a label, and stories260K starts in completion mode', async () => {
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll('input, select, textarea')]
        .filter((el) => (el as HTMLInputElement).labels?.length === 0)
        .map((el) => el.id || el.outerHTML),
    );
    assert.deepEqual(unlabelled, []);
    assert.equal(await page.inputValue('#model'), 'stories260K');
    assert.equal(await page.locator('input[name="mode"]:checked').getAttribute('value'), 'completion');
    assert.equal(await page.locator('#prompt-label').innerText(), 'Text to continue');
  });

  await t.test('keyboard: Tab goes from the prompt to the buttons, then to the settings', async () => {
    await page.focus('#prompt');
    const order: string[] = [];
    for (let i = 0; i < 3; i++) {
      await page.keyboard.press('Tab');
      order.push(await page.evaluate(() => document.activeElement?.id || (document.activeElement as HTMLInputElement | null)?.name || ''));
    }
    // Stop is disabled while nothing streams, so Tab skips it.
    assert.deepEqual(order, ['send', 'clear', 'mode']);
  });

  await t.test('completion: tokens arrive progressively, each a colored span with its exit in data attributes', async () => {
    // Counts DOM updates that added tokens, and the tokens on screen at each.
    await page.evaluate(() => {
      const seen: number[] = [];
      (window as unknown as { tokenUpdates: number[] }).tokenUpdates = seen;
      new MutationObserver(() => seen.push(document.querySelectorAll('.message-reply:last-of-type .tok').length)).observe(
        document.getElementById('transcript')!,
        {
          childList: true,
          subtree: true,
        },
      );
    });
    await page.fill('#temperature', '0.8');
    await page.fill('#max-tokens', '200');
    const { state, tokens } = await sendAndWait(page, 'Once upon a time');
    assert.equal(state, 'done');
    assert.ok(tokens >= 150, `${tokens} tokens`);
    const updates = await page.evaluate(() => (window as unknown as { tokenUpdates: number[] }).tokenUpdates.filter((n) => n > 0));
    const partial = new Set(updates.filter((n) => n > 0 && n < tokens));
    assert.ok(partial.size >= 3, `tokens appeared in ${partial.size} steps before the end: ${updates.join(',')}`);

    const spans = await page.locator('.message-reply .tok').evaluateAll((els) =>
      els.map((el) => ({
        exit: (el as HTMLElement).dataset.exit,
        layer: (el as HTMLElement).dataset.layer,
        title: (el as HTMLElement).title,
        color: getComputedStyle(el).backgroundColor,
      })),
    );
    for (const span of spans) {
      assert.ok(span.exit === 'full' || span.exit === 'ramp', JSON.stringify(span));
      if (span.exit === 'ramp') {
        assert.match(span.layer ?? '', /^\d+$/);
        assert.match(span.title, new RegExp(`after block ${span.layer}`));
      } else {
        assert.equal(span.layer, undefined);
        assert.match(span.title, /full model/);
      }
      assert.notEqual(span.color, 'rgba(0, 0, 0, 0)', 'every token is tinted');
    }
    const fullColors = new Set(spans.filter((s) => s.exit === 'full').map((s) => s.color));
    assert.ok(fullColors.size <= 1, 'the full model has one color');
    for (const span of spans.filter((s) => s.exit === 'ramp')) assert.ok(!fullColors.has(span.color), 'ramps are colored apart from the full model');
    const ramps = spans.filter((s) => s.exit === 'ramp').length;
    t.diagnostic(`${ramps} of ${spans.length} tokens came from ramps`);
    assert.ok(ramps >= spans.length / 10, `${ramps} of ${spans.length} tokens came from ramps: the forced ramp should stream many`);
    assert.ok(spans.some((s) => s.exit === 'full'));

    const stats = await page.locator('.message-reply .stats-line').innerText();
    assert.match(stats, /TTFT \d/);
    assert.match(stats, /\d+ tok\/s/);
    assert.match(stats, /ITL p50 \d/);
    assert.match(stats, /full model \d+%/);
    assert.match(await page.locator('#legend').innerText(), /full model/);
    await until('the controller chart has drawn', async () => (await page.locator('#chart polyline').count()) > 0);
    assert.match(await page.locator('#chart-summary').innerText(), /agreement|no feedback/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'playground-completion.png') });
    if (process.env.OFFRAMP_UPDATE_SCREENSHOT === '1') {
      await page.setViewportSize({ width: 1100, height: 780 });
      fs.mkdirSync(path.join(ROOT, 'docs'), { recursive: true });
      await page.screenshot({ path: path.join(ROOT, 'docs', 'playground.png') });
      await page.setViewportSize({ width: 1280, height: 820 });
    }
  });

  await t.test("lossless: the mode goes with the request; verified drafts wear their ramp's colour, and the text is the full model's", async () => {
    await forceExits({ draft: { layer: 3, minConfidence: 0.3, maxDraft: 8 } });
    await page.selectOption('#early-exit', 'lossless');
    await page.fill('#temperature', '0');
    await page.fill('#max-tokens', '100');
    const prompt = 'Tom and his dog';
    const { state } = await sendAndWait(page, prompt);
    assert.equal(state, 'done');
    const spans = await page
      .locator('.message-reply')
      .last()
      .locator('.tok')
      .evaluateAll((els) =>
        els.map((el) => ({
          exit: (el as HTMLElement).dataset.exit,
          layer: (el as HTMLElement).dataset.layer,
          title: (el as HTMLElement).title,
          text: el.textContent ?? '',
          color: getComputedStyle(el).borderBottomColor,
        })),
      );
    const drafts = spans.filter((s) => s.exit === 'draft');
    t.diagnostic(`${drafts.length} of ${spans.length} tokens were drafted by a ramp and verified`);
    assert.ok(drafts.length >= spans.length / 10, `${drafts.length} of ${spans.length} tokens were verified drafts`);
    for (const draft of drafts) {
      assert.equal(draft.layer, '3');
      assert.match(draft.title, /drafted after block 3.*verified by the full model/);
    }
    const off = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify({ prompt, max_tokens: 100, temperature: 0, early_exit: 'off' }),
    });
    const { choices } = (await off.json()) as { choices: { text: string }[] };
    assert.equal(spans.map((s) => s.text).join(''), choices[0]!.text, "lossless text is exits off's");
    await page.selectOption('#early-exit', 'on');
  });

  await t.test('chat: a system prompt and the history go with each turn', async () => {
    await page.getByLabel('Chat').check();
    assert.equal(await page.locator('#prompt-label').innerText(), 'Message');
    await page.fill('#system', 'You tell short stories.');
    await page.fill('#max-tokens', '30');
    const first = await sendAndWait(page, 'Tell me about a cat.');
    assert.equal(first.state, 'done');
    const second = await sendAndWait(page, 'And then?');
    assert.equal(second.state, 'done');
    const last = chatBodies.at(-1)!;
    assert.deepEqual(
      last.messages.map((m) => m.role),
      ['system', 'user', 'assistant', 'user'],
    );
    assert.equal(last.messages[1]!.content, 'Tell me about a cat.');
    assert.ok(last.messages[2]!.content.length > 0, 'the first reply is in the history');
    await page.screenshot({ path: path.join(ARTIFACTS, 'playground-chat.png') });
  });

  await t.test('Escape stops a reply mid-stream, and the server frees the slot', async () => {
    await page.getByLabel('Completion').check();
    // No Max tokens: the rest of the 512-position context. Even so stories260K can write all 505 tokens
    // before a busy browser's Escape reaches the server: slowed steps keep the reply going until it does.
    await page.fill('#max-tokens', '');
    server.engine.injectFault({ kind: 'slow', stepMs: 20 });
    const abortedSelector = 'offramp:request_success_total{model_name="stories260K",finished_reason="abort"}';
    const aborted = (await metric(server.url, abortedSelector)) || 0; // absent (NaN) until the first abort
    const before = await page.locator('.message-reply').count();
    await page.fill('#prompt', 'Tom and his dog');
    await page.keyboard.press('Enter');
    const reply = page.locator('.message-reply').nth(before);
    // Escape is pressed from inside the page, on the frame that shows the 10th token, so that it comes
    // while the reply is still going however fast the server is (a round trip from here may come too late).
    const stopWasEnabled = await page.waitForFunction(
      (n) => {
        if ((document.querySelectorAll('.message-reply')[n]?.querySelectorAll('.tok').length ?? 0) < 10) return false;
        const enabled = !(document.querySelector('#stop') as HTMLButtonElement).disabled;
        document.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true }));
        return { enabled };
      },
      before,
      { polling: 'raf' },
    );
    assert.deepEqual(await stopWasEnabled.jsonValue(), { enabled: true });
    await reply.locator('.status').waitFor();
    assert.equal(await reply.getAttribute('data-state'), 'stopped');
    assert.match(await reply.locator('.status').innerText(), /^Stopped by you/);
    const tokens = await reply.locator('.tok').count();
    assert.ok(tokens < 400, `${tokens} tokens: stopped well before the end of the context`);
    await until('the server saw the abort', async () => (await metric(server.url, abortedSelector)) === aborted + 1);
    await until('the slot is free', async () => (await metric(server.url, 'offramp:num_requests_running')) === 0);
    server.engine.injectFault({ kind: 'slow', stepMs: 0 });
    assert.equal(await reply.locator('.tok').count(), tokens, 'nothing arrives after Stop');
    assert.equal(await page.locator('#stop').isDisabled(), true);
    assert.equal(await page.locator('#send').isEnabled(), true);
  });

  await t.test('errors are shown in plain words, and the page keeps working', async () => {
    await page.fill('#max-tokens', '100000');
    const tooLong = await sendAndWait(page, 'Once upon a time');
    assert.equal(tooLong.state, 'error');
    const alert = page.locator('.message-reply').last().locator('[role="alert"]');
    assert.match(await alert.innerText(), /^Too long for this model/);

    await page.fill('#max-tokens', '20');
    await page.fill('#temperature', '5');
    const invalid = await sendAndWait(page, 'Once upon a time');
    assert.equal(invalid.state, 'error');
    assert.match(await page.locator('.message-reply').last().locator('[role="alert"]').innerText(), /refused this request as invalid.*temperature/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'playground-error.png') });

    await page.fill('#temperature', '0');
    const after = await sendAndWait(page, 'Once upon a time');
    assert.equal(after.state, 'done');
    assert.equal(after.tokens > 0, true);
  });

  await t.test('readable on a narrow screen: no sideways scrolling', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `${overflow} px of sideways scrolling`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'playground-narrow.png') });
  });

  await t.test('the page fetched nothing from elsewhere and raised no errors', () => {
    const foreign = requests.filter((url) => !url.startsWith(`${server.url}/`) && !url.startsWith('data:'));
    assert.deepEqual(foreign, []);
    assert.deepEqual(pageErrors, []);
  });
});
