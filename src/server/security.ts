/**
 * Who may call the server: optional API keys (`Authorization: Bearer KEY`,
 * answered with OpenAI's 401 otherwise) and CORS for browsers on other
 * origins (off unless origins are named).
 *
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';
import { ApiError } from './errors.js';

/**
 * Paths anyone may GET without a key: /health (for load balancers and
 * supervisors) and the playground's static page and files, which hold no
 * data (the page asks for a key to call the API with).
 */
export function isPublicPath(path: string): boolean {
  return path === '/health' || path === '/' || path.startsWith('/playground/');
}

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();

/**
 * A middleware that lets a request through when it carries one of `keys` as
 * a Bearer token (or goes to a public path), and answers 401 otherwise. The
 * comparison hashes both sides first, so it takes the same time whatever the
 * key's length and however much of it matches.
 */
export function apiKeyAuth(keys: readonly string[]): MiddlewareHandler {
  const digests = keys.map(digest);
  return async (c, next) => {
    if (c.req.method === 'OPTIONS' || ((c.req.method === 'GET' || c.req.method === 'HEAD') && isPublicPath(c.req.path))) return next();
    const header = c.req.header('authorization') ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) {
      throw new ApiError(401, 'You didn’t provide an API key. Send it in the Authorization header as `Bearer KEY`.', {
        code: 'invalid_api_key',
        headers: { 'www-authenticate': 'Bearer' },
      });
    }
    const given = digest(match[1]!);
    // Every key is compared, so the time does not tell which one (if any) matched.
    let ok = false;
    for (const key of digests) ok = timingSafeEqual(key, given) || ok;
    if (!ok) throw new ApiError(401, 'Incorrect API key provided.', { code: 'invalid_api_key', headers: { 'www-authenticate': 'Bearer' } });
    return next();
  };
}

/**
 * CORS for `origins` ("*" for any, else exact origins such as
 * `http://localhost:5173`): answers preflights and adds the headers that let
 * those pages read responses, errors included.
 */
export function corsFor(origins: readonly string[]): MiddlewareHandler {
  return cors({
    origin: origins.includes('*') ? '*' : [...origins],
    allowMethods: ['GET', 'POST', 'OPTIONS'],
    allowHeaders: ['Authorization', 'Content-Type'],
    exposeHeaders: ['Retry-After'],
    maxAge: 600,
  });
}

/** "*" or a bare origin: scheme, host and optional port, no path. */
export const ORIGIN_PATTERN = /^(\*|https?:\/\/[^/\s?#]+)$/;
