// @ts-check
/**
 * The playground's wiring: settings, the chat history, sending and
 * stopping, keyboard shortcuts. Talking to the server is api.js's job,
 * drawing tokens transcript.js's, numbers stats.js's, the controller
 * chart chart.js's.
 *
 * @module
 */
import { listModels, Problem, setApiKey, streamCompletion } from './api.js';
import { ControllerChart } from './chart.js';
import { Legend } from './palette.js';
import { ReplyStats } from './stats.js';
import { Transcript } from './transcript.js';

/** @typedef {'chat' | 'completion'} Mode */
/** @typedef {{ role: 'system' | 'user' | 'assistant', content: string }} Message */

/**
 * @template {Element} T
 * @param {string} id
 * @param {new (...args: never[]) => T} kind
 * @returns {T}
 */
function byId(id, kind) {
  const el = document.getElementById(id);
  if (!(el instanceof kind)) throw new Error(`the page has no #${id} ${kind.name}`);
  return el;
}

const ui = {
  transcript: byId('transcript', HTMLElement),
  composer: byId('composer', HTMLFormElement),
  prompt: byId('prompt', HTMLTextAreaElement),
  promptLabel: byId('prompt-label', HTMLLabelElement),
  send: byId('send', HTMLButtonElement),
  stop: byId('stop', HTMLButtonElement),
  clear: byId('clear', HTMLButtonElement),
  settings: byId('settings', HTMLFormElement),
  model: byId('model', HTMLSelectElement),
  systemRow: byId('system-row', HTMLElement),
  system: byId('system', HTMLTextAreaElement),
  temperature: byId('temperature', HTMLInputElement),
  topP: byId('top-p', HTMLInputElement),
  maxTokens: byId('max-tokens', HTMLInputElement),
  earlyExit: byId('early-exit', HTMLSelectElement),
  apiKey: byId('api-key', HTMLInputElement),
  legend: byId('legend', HTMLUListElement),
  chart: byId('chart', SVGSVGElement),
  chartSummary: byId('chart-summary', HTMLElement),
};

const API_KEY_STORAGE = 'offramp.apiKey';

const transcript = new Transcript(ui.transcript);
const legend = new Legend(ui.legend);
const chart = new ControllerChart(ui.chart, ui.chartSummary, (layers) => legend.add(layers));

/** The chat so far, without the system prompt (read from its box at each send). */
/** @type {Message[]} */
let history = [];
/** The reply in flight, if any. */
/** @type {{ controller: AbortController } | null} */
let current = null;

/**
 * Chat or plain continuation for a model. llama2.c's TinyStories models
 * (stories15M, stories260K, …) are base models that were never taught to
 * chat: they continue a story well and answer a chat transcript poorly, so
 * the page starts them in completion mode. Anything else starts in chat.
 * @param {string} modelId
 * @returns {Mode}
 */
export function defaultModeFor(modelId) {
  return /^stories/i.test(modelId) ? 'completion' : 'chat';
}

/** @returns {Mode} */
function mode() {
  const checked = ui.settings.querySelector('input[name="mode"]:checked');
  return checked instanceof HTMLInputElement && checked.value === 'completion' ? 'completion' : 'chat';
}

/** @param {Mode} value */
function setMode(value) {
  for (const input of ui.settings.querySelectorAll('input[name="mode"]')) {
    if (input instanceof HTMLInputElement) input.checked = input.value === value;
  }
  showMode();
}

function showMode() {
  const chat = mode() === 'chat';
  ui.systemRow.hidden = !chat;
  ui.promptLabel.textContent = chat ? 'Message' : 'Text to continue';
  ui.prompt.placeholder = chat ? 'Tell me a story about a cat.' : 'Once upon a time';
}

/**
 * A number field's value, or undefined when it is empty or not a number (the server's default then applies).
 * @param {HTMLInputElement} input
 */
function numberField(input) {
  const value = input.valueAsNumber;
  return Number.isFinite(value) ? value : undefined;
}

/** The request fields every send shares; the server validates them and says what is wrong. */
function sampling() {
  /** @type {Record<string, unknown>} */
  const fields = { model: ui.model.value || undefined, early_exit: ui.earlyExit.value };
  const temperature = numberField(ui.temperature);
  const topP = numberField(ui.topP);
  const maxTokens = numberField(ui.maxTokens);
  if (temperature !== undefined) fields.temperature = temperature;
  if (topP !== undefined) fields.top_p = topP;
  if (maxTokens !== undefined) fields.max_tokens = maxTokens;
  return fields;
}

/** @param {boolean} busy */
function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
  ui.transcript.setAttribute('aria-busy', String(busy));
  chart.setFast(busy);
}

/**
 * How a finished reply ended, in words.
 * @param {string} reason
 * @param {number | null} tokens
 */
function finishNote(reason, tokens) {
  const count = tokens === null ? '' : ` (${tokens} tokens)`;
  if (reason === 'length') return `Reached Max tokens${count}.`;
  return `Finished: the model ended its text or hit a stop string${count}.`;
}

/** Sends the prompt box's text and streams the reply into the transcript. */
async function send() {
  if (current) return;
  const text = ui.prompt.value;
  if (!text.trim()) {
    ui.prompt.focus();
    return;
  }
  const chat = mode() === 'chat';
  /** @type {'/v1/chat/completions' | '/v1/completions'} */
  let path;
  /** @type {Record<string, unknown>} */
  let body;
  /** @type {Message} */
  const turn = { role: 'user', content: text };
  if (chat) {
    const system = ui.system.value.trim();
    /** @type {Message[]} */
    const messages = [...(system ? [/** @type {Message} */ ({ role: 'system', content: system })] : []), ...history, turn];
    path = '/v1/chat/completions';
    body = { ...sampling(), messages };
    transcript.addMessage('user', text);
    ui.prompt.value = '';
  } else {
    path = '/v1/completions';
    body = { ...sampling(), prompt: text };
    // The text stays in the box: run it again, or edit it and continue.
    transcript.addMessage('prompt', text);
  }
  const reply = transcript.startReply(chat ? 'Assistant' : 'Continuation');
  const stats = new ReplyStats(performance.now());
  let drawPending = false;
  const drawStats = () => {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      stats.render(reply.stats);
    });
  };

  const controller = new AbortController();
  current = { controller };
  setBusy(true);
  try {
    for await (const event of streamCompletion(path, body, controller.signal)) {
      if (event.type === 'token') {
        stats.token(event.layer, performance.now());
        reply.token(event.text, event.layer, event.confidence, event.verified);
        if (event.layer !== null) legend.add([event.layer]);
        drawStats();
      } else {
        reply.end('done', finishNote(event.reason, event.completionTokens));
      }
    }
    if (chat) history.push(turn, { role: 'assistant', content: reply.text });
  } catch (error) {
    if (controller.signal.aborted) {
      reply.end('stopped', `Stopped by you after ${stats.tokens} tokens.`);
      // What was shown stays part of the conversation, as in other chat apps.
      if (chat && reply.text) history.push(turn, { role: 'assistant', content: reply.text });
    } else {
      const message = error instanceof Problem ? error.message : `Something went wrong in the page: ${error instanceof Error ? error.message : String(error)}`;
      reply.end('error', message);
      // The turn did not happen: give its text back to edit and resend.
      if (chat && !ui.prompt.value) ui.prompt.value = text;
    }
  } finally {
    stats.render(reply.stats);
    current = null;
    setBusy(false);
    if (document.activeElement === ui.stop || document.activeElement === document.body) ui.prompt.focus();
  }
}

function stop() {
  current?.controller.abort();
}

/** Loads the models list; while the server is still loading the model (503), tries again. */
async function loadModels() {
  for (let attempt = 0; ; attempt++) {
    try {
      const models = await listModels();
      ui.model.replaceChildren(...models.map((m) => new Option(m.id, m.id)));
      const first = models[0];
      if (first) {
        setMode(defaultModeFor(first.id));
        if (first.max_model_len) ui.maxTokens.max = String(first.max_model_len);
      }
      return;
    } catch (error) {
      const retry = error instanceof Problem && (error.status === 503 || error.status === 0) && attempt < 120;
      if (!retry) {
        transcript.addError(error instanceof Error ? error.message : String(error));
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  void send();
});
ui.prompt.addEventListener('keydown', (event) => {
  // Enter sends; Shift+Enter is a new line; Enter that confirms an IME composition is left alone.
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && current) {
    event.preventDefault();
    stop();
  }
});
ui.stop.addEventListener('click', stop);
ui.clear.addEventListener('click', () => {
  stop();
  history = [];
  transcript.clear();
  ui.prompt.focus();
});
ui.settings.addEventListener('change', showMode);
ui.apiKey.addEventListener('change', () => {
  setApiKey(ui.apiKey.value);
  // Kept for this tab only (sessionStorage), so that a reload does not ask again.
  sessionStorage.setItem(API_KEY_STORAGE, ui.apiKey.value);
  if (ui.model.options.length === 0) void loadModels();
  void chart.poll();
});
ui.settings.addEventListener('submit', (event) => event.preventDefault());

ui.apiKey.value = sessionStorage.getItem(API_KEY_STORAGE) ?? '';
setApiKey(ui.apiKey.value);
showMode();
void loadModels();
void chart.poll();
ui.prompt.focus();
