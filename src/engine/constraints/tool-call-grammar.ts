/**
 * The grammar of an output that is nothing but tool calls, in the syntax the model was
 * taught (what tool_choice 'required' or a named function asks for), so that the server's
 * own parsers read every call back:
 * - hermes: `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>`, blocks joined by '\n';
 * - llama3_json: `{"name": "f", "parameters": {...}}`, objects joined by '; '.
 * The name is one of the tools' names (or the forced one) written as a JSON string, and the
 * arguments follow that tool's parameters schema, or are any JSON object when it has none.
 * The envelope is written exactly as the models' templates write it (no whitespace choices),
 * so a constrained model is steered into the text it knows.
 */
import type { ToolCallsFormat } from '../types.js';
import { GrammarError, type Grammar, type NodeId } from './grammar.js';
import { JsonRules } from './json-rules.js';
import { schemaRuleSteps } from './json-schema.js';
import { runToEnd } from './slices.js';

/**
 * Text the grammar writes that tokenizers hold as added tokens (Qwen's tags): the
 * constraint's vocabulary admits those tokens with exactly these bytes (token-bytes.ts),
 * so a model may write the tag as the single token it was trained on.
 */
export const TOOL_CALL_MARKERS: readonly string[] = ['<tool_call>', '</tool_call>'];

interface CallSyntax {
  /** Before each call's object, and after it. */
  open: string;
  close: string;
  /** Between two calls. */
  separator: string;
  argumentsKey: string;
}

const SYNTAX: Record<ToolCallsFormat['syntax'], CallSyntax> = {
  hermes: { open: '<tool_call>\n', close: '\n</tool_call>', separator: '\n', argumentsKey: 'arguments' },
  llama3_json: { open: '', close: '', separator: '; ', argumentsKey: 'parameters' },
};

const enc = new TextEncoder();

export function toolCallGrammar(format: ToolCallsFormat): Grammar {
  return runToEnd(toolCallGrammarSteps(format));
}

/** toolCallGrammar in slices (slices.ts): each tool's parameters schema is compiled as a response format's is. */
export function* toolCallGrammarSteps(format: ToolCallsFormat): Generator<void, Grammar> {
  const syntax = SYNTAX[format.syntax];
  const rules = new JsonRules();
  const { g } = rules;
  const start = g.node();
  const object = g.node();
  const objectEnd = g.node();
  const end = g.node();
  g.literal(start, enc.encode(syntax.open), object);
  for (const { name, argumentsRule } of yield* callableTools(format, rules)) {
    const args = g.node();
    const afterArgs = g.node();
    g.literal(object, enc.encode(`{"name": ${JSON.stringify(name)}, "${syntax.argumentsKey}": `), args);
    g.call(args, argumentsRule, afterArgs);
    g.byte(afterArgs, 0x7d, objectEnd);
  }
  g.literal(objectEnd, enc.encode(syntax.close), end);
  // after a call: EOS, or (when parallel calls are allowed) the next call
  g.accept(end);
  if (format.parallel) g.literal(end, enc.encode(syntax.separator + syntax.open), object);
  return yield* g.buildSteps(start);
}

/** The tools that may be called, each with its arguments' rule; schemas are compiled only for those. */
function* callableTools(format: ToolCallsFormat, rules: JsonRules): Generator<void, { name: string; argumentsRule: NodeId }[]> {
  const chosen = format.tools
    .map((tool, index) => ({ tool, index }))
    .filter(({ tool }) => format.forcedName === undefined || tool.name === format.forcedName);
  if (chosen.length === 0)
    throw new GrammarError(
      format.forcedName === undefined
        ? 'tool_choice: a call is required but no tools were given'
        : `tool_choice: names the function '${format.forcedName.slice(0, 64)}', which is not among tools`,
      'tool_choice',
    );
  const callable: { name: string; argumentsRule: NodeId }[] = [];
  for (const { tool, index } of chosen) {
    const argumentsRule =
      tool.parameters === undefined ? rules.object() : yield* schemaRuleSteps(rules, tool.parameters, `tools.${index}.function.parameters`);
    callable.push({ name: tool.name, argumentsRule });
  }
  return callable;
}
