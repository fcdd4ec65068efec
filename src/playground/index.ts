/**
 * The chat playground: a static page (index.html, playground.css and the
 * browser modules beside it) that the server serves at `/`.
 *
 * @module
 */
export { PLAYGROUND_DIR, playgroundRoutes } from './routes.js';
