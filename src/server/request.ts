/**
 * From a validated body and its prompt ids to the engine's GenerateRequest,
 * with the checks only the server can make (the model's name) and the
 * engine's own (requestProblem) made first, to name the field at fault.
 *
 * @module
 */
import { requestProblem, type EarlyExitMode, type GenerateRequest } from '../engine/index.js';
import { ApiError } from './errors.js';
import type { GenerationBody } from './schemas.js';
import type { ModelInfo } from './state.js';

/** A 404 unless `requested` names the served model (absent means the served model, as vLLM allows). */
export function checkModel(requested: string | null | undefined, model: ModelInfo): void {
  if (requested === null || requested === undefined || requested === model.id) return;
  throw new ApiError(404, `The model \`${requested}\` does not exist; this server serves \`${model.id}\``, { param: 'model', code: 'model_not_found' });
}

/**
 * The number of tokens to generate: max_completion_tokens, else max_tokens,
 * else the rest of the context (vLLM's default; the model's EOS or a stop
 * string usually ends it sooner). Throws a 400 naming the field at fault
 * when the engine would refuse the request (see requestProblem).
 */
export function resolveMaxTokens(body: GenerationBody, numPromptTokens: number, maxContext: number, promptParam: string): number {
  const param = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  const requested = body.max_completion_tokens ?? body.max_tokens ?? null;
  const maxTokens = requested ?? maxContext - numPromptTokens;
  const problem = requestProblem(numPromptTokens, maxTokens, maxContext);
  if (problem === null) return maxTokens;
  switch (problem) {
    case 'empty':
      throw new ApiError(400, `${promptParam}: the prompt is empty after tokenization`, { param: promptParam });
    case 'prompt fills the context':
      throw new ApiError(
        400,
        `This model's maximum context length is ${maxContext} tokens, and the prompt alone has ${numPromptTokens}, leaving no room for a completion. Please shorten the ${promptParam}.`,
        { param: promptParam, code: 'context_length_exceeded' },
      );
    case 'completion does not fit':
      throw new ApiError(
        400,
        `This model's maximum context length is ${maxContext} tokens. However, you requested ${numPromptTokens + maxTokens} tokens (${numPromptTokens} in the ${promptParam}, ${maxTokens} for the completion). Please reduce the length of the ${promptParam} or ${param} (at most ${maxContext - numPromptTokens} here).`,
        { param, code: 'context_length_exceeded' },
      );
  }
}

function stopStrings(stop: GenerationBody['stop']): string[] {
  if (stop === null || stop === undefined) return [];
  return typeof stop === 'string' ? [stop] : stop;
}

/**
 * The request's early-exit mode: its own `early_exit`, else the server's. A
 * request whose text is fixed, greedy or seeded, must get that text every
 * time, and the thresholds it would exit at move with the controller: where
 * it would exit it decodes lossless instead, whose text is the full model's
 * (for that seed). For greedy requests on the shipped model it is also the
 * faster path, faster even than exits at their oracle (README, Early exits).
 */
function earlyExitMode(body: GenerationBody, server: EarlyExitMode): EarlyExitMode {
  if (server === 'off') return 'off';
  const asked = body.early_exit === true ? 'on' : body.early_exit === false ? 'off' : (body.early_exit ?? server);
  const seeded = body.seed !== null && body.seed !== undefined;
  const greedy = body.temperature === 0;
  return asked === 'on' && (seeded || greedy) ? 'lossless' : asked;
}

export function toGenerateRequest(
  id: string,
  body: GenerationBody,
  promptTokens: number[],
  model: ModelInfo,
  promptParam: 'messages' | 'prompt',
): GenerateRequest {
  const maxTokens = resolveMaxTokens(body, promptTokens.length, model.maxContext, promptParam);
  const topK = body.top_k ?? 0;
  const request: GenerateRequest = {
    id,
    promptTokens,
    sampling: {
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      topK: topK < 0 ? 0 : topK,
      minP: body.min_p ?? 0,
    },
    maxTokens,
    stop: stopStrings(body.stop),
    earlyExit: earlyExitMode(body, model.earlyExit),
  };
  if (body.seed !== null && body.seed !== undefined) request.seed = body.seed;
  return request;
}
