import { AutoGlmError } from '../../errors.js';

/**
 * Names the chat template renderer sets itself, so a chat_template_kwargs key of the same
 * name cannot mean anything: `messages` comes from the request (the renderer writes over
 * it), and the rest are @huggingface/jinja's globals (its setupGlobals and Environment), which
 * it refuses to declare twice: the template then failed with "Variable already declared",
 * a 400 blamed on `messages`. transformers likewise raises for a second `messages`.
 */
const SET_BY_RENDERER: Readonly<Record<string, string>> = {
  messages: "the request's messages",
  ...Object.fromEntries(
    ['namespace', 'raise_exception', 'range', 'strftime_now', 'true', 'false', 'none', 'True', 'False', 'None'].map((name) => [
      name,
      'a built-in of the template language',
    ]),
  ),
};

/** The jinja globals among SET_BY_RENDERER, for the test that holds the list to the library's. */
export const TEMPLATE_LANGUAGE_GLOBALS = Object.keys(SET_BY_RENDERER).filter((name) => name !== 'messages');

/**
 * Refuses chat_template_kwargs keys that clash with what the renderer or the request
 * supplies, naming the key (param `chat_template_kwargs.<key>`): `tools` beside the
 * request's own tools (those are what the template gets), and an add_generation_prompt
 * that is not a boolean (the renderer takes a boolean one and ignored anything else).
 */
export function checkTemplateKwargs(kwargs: Record<string, unknown> | null | undefined, requestHasTools: boolean): void {
  if (kwargs == null) return;
  const refuse = (key: string, why: string): AutoGlmError =>
    new AutoGlmError('invalid_request', `chat_template_kwargs key '${key}' ${why}.`, { param: `chat_template_kwargs.${key}` });
  for (const key of Object.keys(kwargs)) {
    const setBy = Object.hasOwn(SET_BY_RENDERER, key) ? SET_BY_RENDERER[key] : undefined;
    if (setBy !== undefined) throw refuse(key, `is set by the chat template renderer itself (${setBy}); remove it`);
  }
  if (requestHasTools && Object.hasOwn(kwargs, 'tools'))
    throw refuse('tools', "clashes with the request's tools, which the chat template gets as `tools`; give the tools once, in tools");
  const generationPrompt = kwargs['add_generation_prompt'];
  if (generationPrompt !== undefined && typeof generationPrompt !== 'boolean')
    throw refuse('add_generation_prompt', `must be true or false, got ${JSON.stringify(generationPrompt)}`);
}
