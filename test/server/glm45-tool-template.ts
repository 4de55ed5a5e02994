/**
 * A chat template in GLM-4.5's tool-calling format, written for these tests in the shape of
 * GLM-4.5's own (not copied from it). It keeps what matters for a server: tools listed as
 * JSON in a system turn that teaches the `<tool_call>name` / `<arg_key>` / `<arg_value>`
 * format, a past call rendered with one key/value pair per argument (a string value raw,
 * any other as JSON, so arguments must arrive as values, not JSON text), tool results in
 * one `<|observation|>` turn, and a generation prompt that ends in `<|assistant|>`. A
 * newline right after a block tag is trimmed (trim_blocks, as transformers renders), so
 * those that must stay are written as strings.
 */
export const GLM45_TOOL_TEMPLATE = [
  '[gMASK]<sop>',
  '{%- if tools %}<|system|>\n# Tools\n\nYou may call functions to help with the query. Their signatures, within <tools></tools>:\n<tools>\n',
  '{% for tool in tools %}{{ tool | tojson(ensure_ascii=False) }}\n{% endfor %}</tools>\n\n',
  'To call a function, write its name and arguments in this format:\n',
  '<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n...\n</tool_call>{% endif %}',
  '{%- for m in messages %}',
  "{%- if m.role == 'user' or m.role == 'system' %}<|{{ m.role }}|>\n{{ m.content }}",
  "{%- elif m.role == 'assistant' %}<|assistant|>\n{{ m.content or '' }}",
  "{%- for tc in m.tool_calls or [] %}{{ '\\n<tool_call>' ~ tc.function.name }}\n",
  '{% for k, v in tc.function.arguments.items() %}<arg_key>{{ k }}</arg_key>\n',
  '<arg_value>{{ v | tojson(ensure_ascii=False) if v is not string else v }}</arg_value>\n{% endfor %}</tool_call>{% endfor %}',
  "{%- elif m.role == 'tool' %}{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|observation|>{% endif %}",
  "{{ '\\n<tool_response>\\n' }}{{ m.content }}{{ '\\n</tool_response>' }}",
  '{%- endif %}{%- endfor %}',
  '{%- if add_generation_prompt %}<|assistant|>{% endif %}',
].join('');
