import { fileURLToPath } from 'node:url';

export const DEMO_MODEL_DIR = fileURLToPath(new URL('../../models/demo-stories', import.meta.url));
export const API_KEY = 'sk-test-key';
export const STORY_PROMPT = [{ role: 'user' as const, content: 'Tell me a story about a cat.' }];
