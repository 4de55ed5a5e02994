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
    /** Where the source came from, for the parse error: a model has two places for it. */
    origin = 'chat template',
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new AutoGlmError('tokenizer_error', `${origin} does not parse: ${(e as Error).message}`, { cause: e });
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

/**
 * Picks the template source: chat_template.jinja wins over tokenizer_config.json, as in
 * transformers. A chat_template of another shape is an error, not "no template": the model
 * meant to have one, and chat requests would otherwise be told it has none.
 */
export function selectTemplateSource(fileTemplate: string | null, configTemplate: unknown): string | null {
  if (fileTemplate !== null) return fileTemplate;
  if (configTemplate === undefined || configTemplate === null || typeof configTemplate === 'string') return configTemplate ?? null;
  const malformed = (): AutoGlmError =>
    new AutoGlmError(
      'tokenizer_error',
      'tokenizer_config.json chat_template must be a string or a list of {"name", "template"} objects ' +
        `(got ${JSON.stringify(configTemplate).slice(0, 200)})`,
    );
  if (Array.isArray(configTemplate)) {
    const isNamed = (t: unknown): t is { name: string; template: string } =>
      t !== null &&
      typeof t === 'object' &&
      typeof (t as { name?: unknown }).name === 'string' &&
      typeof (t as { template?: unknown }).template === 'string';
    if (configTemplate.length === 0 || !configTemplate.every(isNamed)) throw malformed();
    return (configTemplate.find((t) => t.name === 'default') ?? configTemplate[0]!).template;
  }
  if (typeof configTemplate === 'object') {
    const map = configTemplate as Record<string, unknown>;
    const def = map['default'] ?? Object.values(map)[0];
    if (typeof def !== 'string') throw malformed();
    return def;
  }
  throw malformed();
}
