/**
 * Serves the chat playground: `/` is the page, `/playground/<file>` its
 * static files, `/playground/vendor/eventsource-parser.js` the installed
 * eventsource-parser's browser-ready ESM build. Nothing is fetched from
 * elsewhere at run time, and the Content-Security-Policy says so to the
 * browser.
 *
 * The files are read from `src/playground/` under the project root at
 * request time, so the compiled server (dist/src/playground/routes.js)
 * finds the same folder as the sources do, and no build step copies them.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hono, type Context } from 'hono';
import { PROJECT_ROOT } from '../util/index.js';

/** The only kinds of file served, by extension: never the .ts sources or tsconfig. */
const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Plain names in the folder itself: no slashes, no dot-files, so no way out of it. */
const FILE_NAME = /^[a-z0-9][a-z0-9-]*\.[a-z]+$/;

/** The page's folder: src/playground under the project root. */
export const PLAYGROUND_DIR = path.join(PROJECT_ROOT, 'src', 'playground');

/** eventsource-parser's ESM build (dist/index.js): one self-contained file with no imports. */
function eventsourceParserFile(): string {
  return fileURLToPath(import.meta.resolve('eventsource-parser'));
}

/**
 * The page's CSP: only this origin, plus the page's inline import map by
 * hash (an import map cannot be an external file).
 */
function contentSecurityPolicy(html: string): string {
  const hashes = [...html.matchAll(/<script type="importmap">([\s\S]*?)<\/script>/g)].map(
    (m) =>
      `'sha256-${createHash('sha256')
        .update(m[1] ?? '')
        .digest('base64')}'`,
  );
  return [
    `default-src 'self'`,
    `script-src 'self' ${hashes.join(' ')}`,
    `img-src 'self' data:`,
    `object-src 'none'`,
    `base-uri 'none'`,
    `form-action 'none'`,
  ].join('; ');
}

/** The API's own 404 body (as app.ts's notFound writes it). */
function notFound(c: Context): Response {
  return c.json({ error: { message: `Invalid URL (${c.req.method} ${c.req.path})`, type: 'invalid_request_error', param: null, code: 'not_found' } }, 404);
}

/** Small files read per request: a reload picks up an edit; no-cache still lets the browser revalidate. */
function fileResponse(c: Context, body: string, contentType: string, extraHeaders: Record<string, string> = {}): Response {
  return c.body(body, 200, { 'content-type': contentType, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff', ...extraHeaders });
}

/** A page file by its served types, or a 404. */
async function sendFile(c: Context, file: string): Promise<Response> {
  const type = CONTENT_TYPES[path.extname(file)];
  const body = type ? await fs.promises.readFile(file, 'utf8').catch(() => null) : null;
  return type && body !== null ? fileResponse(c, body, type) : notFound(c);
}

/**
 * The playground's routes, to mount on the API app: `app.route('/', playgroundRoutes())`.
 *
 * @example
 * const app = new Hono();
 * app.route('/', playgroundRoutes());
 * (await app.request('/')).headers.get('content-type'); // 'text/html; charset=utf-8'
 */
export function playgroundRoutes(dir: string = PLAYGROUND_DIR): Hono {
  const routes = new Hono();
  routes.get('/', async (c) => {
    const html = await fs.promises.readFile(path.join(dir, 'index.html'), 'utf8').catch(() => null);
    if (html === null) return notFound(c);
    return fileResponse(c, html, 'text/html; charset=utf-8', { 'content-security-policy': contentSecurityPolicy(html) });
  });
  routes.get('/playground/vendor/eventsource-parser.js', (c) => sendFile(c, eventsourceParserFile()));
  routes.get('/playground/:name', (c) => {
    const name = c.req.param('name');
    // index.html only at /, where it gets its CSP.
    if (!FILE_NAME.test(name) || name === 'index.html') return notFound(c);
    return sendFile(c, path.join(dir, name));
  });
  return routes;
}
