/**
 * A request body as JSON, or a 400 that names what is wrong with it: not
 * UTF-8, empty, nested too deep, or not JSON. Bad bodies are refused here,
 * before anything parses them into objects or walks them.
 *
 * @module
 */
import type { Context } from 'hono';
import { ApiError } from './errors.js';

/**
 * Deepest nesting of arrays and objects a body may have. A chat request
 * needs 4 (body, messages, message, content parts); the margin is for
 * extension fields. Deeper bodies are refused before JSON.parse, which
 * would spend about a second of the event loop on two million `[`.
 */
export const MAX_JSON_DEPTH = 32;

/** How deep `text`'s arrays and objects nest (brackets inside strings do not count), stopping once past `limit`. */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c)
        i++; // backslash: skip the escaped character
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) {
      inString = true;
    } else if (ch === 0x5b || ch === 0x7b) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (ch === 0x5d || ch === 0x7d) {
      depth--;
    }
  }
  return deepest;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads the body (the body limit applies on the way) and parses it. */
export async function readJson(c: Context): Promise<unknown> {
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new ApiError(400, 'the request body is not valid UTF-8', { code: 'invalid_encoding' });
  }
  if (!text.trim()) throw new ApiError(400, 'the request body is empty; send a JSON object', { code: 'invalid_json' });
  if (jsonDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
    throw new ApiError(400, `the request body nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep`, { code: 'invalid_json' });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ApiError(400, `the request body is not valid JSON (${(error as Error).message})`, { code: 'invalid_json' });
  }
}
