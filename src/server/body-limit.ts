/**
 * The request body size limit, as a middleware: bodies over `maxBytes` are
 * answered 413 and never buffered.
 *
 * Why not hono's bodyLimit: it reads `c.req.raw.body` even when the
 * Content-Length already says "too large", which turns @hono/node-server's
 * request into a web stream that the server can then no longer drain after
 * the 413; it closes the socket instead, and the client (undici: "other
 * side closed") often loses the 413 it was sent. Here a declared length is
 * judged from the header alone, and a chunked body that runs over is read to
 * its end (discarded) before answering, so the connection stays usable.
 *
 * @module
 */
import type { MiddlewareHandler } from 'hono';

/** How much of an oversized chunked body is read (and discarded) before giving up on keeping the connection. */
const MAX_DISCARD_BYTES = 64 * 1024 * 1024;

/**
 * Refuses bodies over `maxBytes` by throwing `tooLarge()`; a body that fits
 * and has no Content-Length is buffered so handlers can read it as usual.
 */
export function bodyLimit(maxBytes: number, tooLarge: () => Error): MiddlewareHandler {
  return async (c, next) => {
    if (c.req.method === 'GET' || c.req.method === 'HEAD' || c.req.method === 'OPTIONS') return next();
    const declared = c.req.header('content-length');
    if (declared !== undefined && c.req.header('transfer-encoding') === undefined) {
      if (Number(declared) > maxBytes) throw tooLarge();
      return next();
    }
    const body = c.req.raw.body;
    if (!body) return next();
    const reader = body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      size += r.value.length;
      if (size <= maxBytes) chunks.push(r.value);
      else if (size > MAX_DISCARD_BYTES) {
        // Too much to swallow: give up on this connection.
        await reader.cancel();
        break;
      }
    }
    if (size > maxBytes) throw tooLarge();
    const buffer = new Uint8Array(size);
    let offset = 0;
    for (const chunk of chunks) {
      buffer.set(chunk, offset);
      offset += chunk.length;
    }
    c.req.raw = new Request(c.req.raw, { body: buffer });
    return next();
  };
}
