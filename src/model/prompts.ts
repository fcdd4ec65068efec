/**
 * The prompt set in prompts/prompts.json, validated: the benchmarks' prompts
 * and the ramps' calibration text.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { PROJECT_ROOT } from '../util/project-root.js';

const MessageSchema = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() });

export const PromptSchema = z.discriminatedUnion('kind', [
  z.object({ id: z.string(), kind: z.literal('story'), prompt: z.string() }),
  z.object({ id: z.string(), kind: z.literal('chat'), messages: z.array(MessageSchema).min(1) }),
]);
export type Prompt = z.infer<typeof PromptSchema>;

export const PROMPTS_FILE = path.join(PROJECT_ROOT, 'prompts', 'prompts.json');

export function loadPrompts(file = PROMPTS_FILE): Prompt[] {
  return z.object({ prompts: z.array(PromptSchema) }).parse(JSON.parse(fs.readFileSync(file, 'utf8'))).prompts;
}

/** The story openings only: plain text prompts for completion endpoints and traces. */
export function storyPrompts(file = PROMPTS_FILE): string[] {
  return loadPrompts(file).flatMap((p) => (p.kind === 'story' ? [p.prompt] : []));
}
