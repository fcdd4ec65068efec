// @ts-check
/**
 * The conversation on screen: the person's messages, and replies built
 * token by token, each token a <span> colored for the emitter that
 * produced it, with its layer and confidence in data attributes and in a
 * hover title.
 *
 * @module
 */
import { colorFor, emitterName } from './palette.js';

/**
 * A token's hover text.
 * @param {number | null} layer
 * @param {number | null} confidence
 * @param {boolean} verified a lossless draft the full model verified
 */
function tokenTitle(layer, confidence, verified) {
  if (layer === null) return 'full model (no early exit)';
  const conf = confidence === null ? 'confidence not reported' : `confidence ${confidence.toFixed(3)}`;
  if (verified) return `${emitterName(layer)}: drafted after block ${layer}, ${conf}; verified by the full model (lossless)`;
  return `${emitterName(layer)}: exited after block ${layer}, ${conf}`;
}

/** One reply being streamed into the transcript. */
export class ReplyView {
  /**
   * @param {HTMLElement} article the reply's element, already in the transcript
   * @param {() => void} follow keeps the newest text in view
   */
  constructor(article, follow) {
    this.article = article;
    this.follow = follow;
    this.body = /** @type {HTMLElement} */ (article.querySelector('.text'));
    this.stats = /** @type {HTMLElement} */ (article.querySelector('.stats'));
    /** The reply's text so far (what goes back into the chat history). */
    this.text = '';
  }

  /**
   * Appends one streamed token.
   * @param {string} text
   * @param {number | null} layer
   * @param {number | null} confidence
   * @param {boolean} [verified] a lossless draft the full model verified
   */
  token(text, layer, confidence, verified = false) {
    const span = document.createElement('span');
    span.className = 'tok';
    span.textContent = text;
    span.dataset.exit = layer === null ? 'full' : verified ? 'draft' : 'ramp';
    if (layer !== null) span.dataset.layer = String(layer);
    if (confidence !== null) span.dataset.confidence = confidence.toFixed(4);
    span.style.setProperty('--c', colorFor(layer));
    span.title = tokenTitle(layer, confidence, verified);
    this.body.append(span);
    this.text += text;
    this.follow();
  }

  /**
   * Marks the reply over: `state` is 'done', 'stopped' or 'error'; `note` says how, in words.
   * @param {'done' | 'stopped' | 'error'} state
   * @param {string} note
   */
  end(state, note) {
    this.article.dataset.state = state;
    this.article.setAttribute('aria-busy', 'false');
    const status = document.createElement('p');
    status.className = `status status-${state}`;
    if (state === 'error') status.setAttribute('role', 'alert');
    status.textContent = note;
    this.article.append(status);
    this.follow();
  }
}

export class Transcript {
  /** @param {HTMLElement} container the role="log" element */
  constructor(container) {
    this.container = container;
    this.emptyNote = container.querySelector('.empty-note');
    /** Follow new text unless the person scrolled up to read. */
    this.stick = true;
    container.addEventListener('scroll', () => (this.stick = this.atBottom()), { passive: true });
  }

  /** Scrolls to the newest text, unless the person scrolled away from it. */
  follow() {
    if (this.stick) this.container.scrollTop = this.container.scrollHeight;
  }

  /** True when the view is at (or near) the bottom: then new text scrolls into view. */
  atBottom() {
    const c = this.container;
    return c.scrollHeight - c.scrollTop - c.clientHeight < 48;
  }

  /**
   * Adds an element at the end.
   * @param {HTMLElement} element
   */
  append(element) {
    this.emptyNote?.remove();
    this.container.append(element);
    this.follow();
  }

  /**
   * The person's turn (chat) or the text to continue (completion).
   * @param {'user' | 'system' | 'prompt'} role
   * @param {string} text
   */
  addMessage(role, text) {
    const article = document.createElement('article');
    article.className = `message message-${role}`;
    const who = document.createElement('h3');
    who.className = 'who';
    who.textContent = role === 'user' ? 'You' : role === 'system' ? 'System' : 'Text to continue';
    const body = document.createElement('div');
    body.className = 'text';
    body.textContent = text;
    article.append(who, body);
    this.append(article);
  }

  /**
   * Starts a reply.
   * @param {string} title "Assistant" or "Continuation"
   */
  startReply(title) {
    const article = document.createElement('article');
    article.className = 'message message-reply';
    article.setAttribute('aria-busy', 'true');
    article.dataset.state = 'streaming';
    const who = document.createElement('h3');
    who.className = 'who';
    who.textContent = title;
    const body = document.createElement('div');
    body.className = 'text';
    const stats = document.createElement('div');
    stats.className = 'stats';
    article.append(who, body, stats);
    this.append(article);
    return new ReplyView(article, () => this.follow());
  }

  /**
   * An error that is not part of a reply (the models list failed to load).
   * @param {string} message
   */
  addError(message) {
    const p = document.createElement('p');
    p.className = 'status status-error';
    p.setAttribute('role', 'alert');
    p.textContent = message;
    this.append(p);
  }

  clear() {
    this.container.replaceChildren();
    this.stick = true;
    if (this.emptyNote) this.container.append(this.emptyNote);
  }
}
