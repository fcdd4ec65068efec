/**
 * The prompt set in prompts/prompts.json (the loader lives in src, which
 * calibrates the ramps on it).
 */
export { loadPrompts, PROMPTS_FILE, PromptSchema, storyPrompts, type Prompt } from '../src/model/index.js';
