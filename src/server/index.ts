/**
 * The OpenAI-compatible HTTP server: routes, schemas, SSE streaming,
 * OpenAI-shaped errors, Prometheus metrics, and `offramp serve`.
 *
 * @module
 */
export { createApp, DEFAULT_APP_OPTIONS, type AppDeps, type AppOptions, type ServerApp } from './app.js';
export { parseServeArgs, SERVE_USAGE, ServeConfigSchema, type ServeConfig } from './config.js';
export { ApiError, toErrorResponse, type ErrorBody } from './errors.js';
export { ServerMetrics } from './metrics.js';
export { ChatPrompter, encodeCompletionPrompt, renderPlainChat, type PromptTokenizer } from './prompt.js';
export { serveCommand, startServer, type RunningServer } from './serve.js';
export { ServerState, type ModelInfo, type Phase } from './state.js';
