/**
 * Chat templates: the Jinja program a model ships (chat_template.jinja, or
 * tokenizer_config.json's chat_template: a string or a list of named templates), rendered
 * with @huggingface/jinja the way transformers' apply_chat_template renders it.
 */
import { Template } from '@huggingface/jinja';
import { AutoGlmError } from '../../errors.js';
import type { ChatMessage } from '../types.js';

export interface RenderChatOptions {
  /** Append the assistant turn's opening (default true: we render prompts to generate from). */
  addGenerationPrompt?: boolean;
  /** Extra template variables (tools, enable_thinking, ...). */
  [kwarg: string]: unknown;
}

export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    /** bos_token, eos_token and the other special token strings the template may use. */
    private readonly specialTokens: Record<string, string>,
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new AutoGlmError('tokenizer_error', `chat template does not parse: ${(e as Error).message}`, { cause: e });
    }
  }

  render(messages: ChatMessage[], options: RenderChatOptions = {}): string {
    // add_generation_prompt arrives snake_case from a client's chat_template_kwargs, which
    // callers spread over their own addGenerationPrompt default: the client's choice wins.
    const { addGenerationPrompt, add_generation_prompt: snake, ...kwargs } = options;
    const generationPrompt = typeof snake === 'boolean' ? snake : (addGenerationPrompt ?? true);
    try {
      return this.template.render({
        ...this.specialTokens,
        ...kwargs,
        messages,
        add_generation_prompt: generationPrompt,
      });
    } catch (e) {
      // Templates raise_exception on bad input (e.g. roles out of order): the caller's fault.
      throw new AutoGlmError('invalid_request', `chat template failed: ${(e as Error).message}`, { cause: e, param: 'messages' });
    }
  }
}

/** Picks the template source: chat_template.jinja wins over tokenizer_config.json, as in transformers. */
export function selectTemplateSource(fileTemplate: string | null, configTemplate: unknown): string | null {
  if (fileTemplate !== null) return fileTemplate;
  if (typeof configTemplate === 'string') return configTemplate;
  if (Array.isArray(configTemplate)) {
    const named = configTemplate.filter(
      (t): t is { name: string; template: string } =>
        t !== null && typeof t === 'object' && typeof t.name === 'string' && typeof t.template === 'string',
    );
    return (named.find((t) => t.name === 'default') ?? named[0])?.template ?? null;
  }
  if (configTemplate !== null && typeof configTemplate === 'object') {
    const map = configTemplate as Record<string, unknown>;
    const def = map['default'] ?? Object.values(map)[0];
    return typeof def === 'string' ? def : null;
  }
  return null;
}
