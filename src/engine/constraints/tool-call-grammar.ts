/**
 * The grammar of an output that is nothing but tool calls, in the syntax the model was
 * taught (what tool_choice 'required' or a named function asks for), so that the server's
 * own parsers read every call back:
 * - hermes: `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>`, blocks joined by '\n';
 * - llama3_json: `{"name": "f", "parameters": {...}}`, objects joined by '; ';
 * - glm45: `<tool_call>f\n` then `<arg_key>k</arg_key>\n<arg_value>v</arg_value>\n` per
 *   argument and `</tool_call>`, blocks joined by '\n'.
 * The name is one of the tools' names (or the forced one), and the arguments follow that
 * tool's parameters schema. hermes and llama3_json write the name as a JSON string and the
 * arguments as a JSON object (any object when the tool has no schema). glm45 writes the
 * properties the schema declares in its order, each required one, each optional one or not,
 * a string-typed value as raw text and any other as JSON (json-schema.ts's
 * schemaPropertyRulesSteps), which is how its parser types them back; a tool that declares
 * no properties takes no arguments.
 * The envelope is written exactly as the models' templates write it (no whitespace choices),
 * so a constrained model is steered into the text it knows.
 */
import type { ToolCallsFormat } from '../types.js';
import { GrammarError, type Grammar, type NodeId } from './grammar.js';
import { JsonRules } from './json-rules.js';
import { schemaPropertyRulesSteps, schemaRuleSteps } from './json-schema.js';
import { runToEnd } from './slices.js';

/**
 * Text the grammar writes that tokenizers hold as added tokens (Qwen's and GLM-4.5's tags):
 * the constraint's vocabulary admits those tokens with exactly these bytes (token-bytes.ts),
 * so a model may write the tag as the single token it was trained on.
 */
export const TOOL_CALL_MARKERS: readonly string[] = [
  '<tool_call>',
  '</tool_call>',
  '<arg_key>',
  '</arg_key>',
  '<arg_value>',
  '</arg_value>',
];

const enc = new TextEncoder();

type ToolParameters = ToolCallsFormat['tools'][number]['parameters'];

interface CallSyntax {
  /** Before each call, and after it. */
  open: string;
  close: string;
  /** Between two calls. */
  separator: string;
  /** A call between open and close: `before`, the arguments' rule, `after` (`param` names the tool's name in refusals). */
  call(name: string, param: string): { before: string; after: string };
  /** The rule of a tool's arguments, from its parameters schema (`param` names it in refusals). */
  argumentsRule(rules: JsonRules, parameters: ToolParameters, param: string): Generator<void, NodeId>;
}

/** The envelope of JSON calls: `{"name": ..., "<argumentsKey>": ` and the closing brace. */
const jsonCall =
  (argumentsKey: string) =>
  (name: string): { before: string; after: string } => ({ before: `{"name": ${JSON.stringify(name)}, "${argumentsKey}": `, after: '}' });

function* jsonArguments(rules: JsonRules, parameters: ToolParameters, param: string): Generator<void, NodeId> {
  return parameters === undefined ? rules.object() : yield* schemaRuleSteps(rules, parameters, param);
}

const SYNTAX: Record<ToolCallsFormat['syntax'], CallSyntax> = {
  hermes: { open: '<tool_call>\n', close: '\n</tool_call>', separator: '\n', call: jsonCall('arguments'), argumentsRule: jsonArguments },
  llama3_json: { open: '', close: '', separator: '; ', call: jsonCall('parameters'), argumentsRule: jsonArguments },
  glm45: {
    open: '<tool_call>',
    close: '</tool_call>',
    separator: '\n',
    call: (name, param) => ({ before: `${tagText(name, param, 'the name')}\n`, after: '' }),
    argumentsRule: glm45Arguments,
  },
};

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
  for (const { before, after, argumentsRule } of yield* callableTools(format, syntax, rules)) {
    const args = g.node();
    const afterArgs = g.node();
    g.literal(object, enc.encode(before), args);
    g.call(args, argumentsRule, afterArgs);
    g.literal(afterArgs, enc.encode(after), objectEnd);
  }
  g.literal(objectEnd, enc.encode(syntax.close), end);
  // after a call: EOS, or (when parallel calls are allowed) the next call
  g.accept(end);
  if (format.parallel) g.literal(end, enc.encode(syntax.separator + syntax.open), object);
  return yield* g.buildSteps(start);
}

/** The tools that may be called, each with its call's text and arguments' rule; schemas are compiled only for those. */
function* callableTools(
  format: ToolCallsFormat,
  syntax: CallSyntax,
  rules: JsonRules,
): Generator<void, { before: string; after: string; argumentsRule: NodeId }[]> {
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
  const callable: { before: string; after: string; argumentsRule: NodeId }[] = [];
  for (const { tool, index } of chosen) {
    const argumentsRule = yield* syntax.argumentsRule(rules, tool.parameters, `tools.${index}.function.parameters`);
    callable.push({ ...syntax.call(tool.name, `tools.${index}.function.name`), argumentsRule });
  }
  return callable;
}

/**
 * glm45's arguments: the properties the schema declares, in its order, each a
 * `<arg_key>k</arg_key>\n<arg_value>v</arg_value>\n` line, the required ones always and the
 * optional ones or not (one order keeps the automaton small, as JSON objects are generated).
 */
function* glm45Arguments(rules: JsonRules, parameters: ToolParameters, param: string): Generator<void, NodeId> {
  const { g } = rules;
  const start = g.node();
  let at = start;
  for (const { name, value, required } of yield* schemaPropertyRulesSteps(rules, parameters, param)) {
    const valueStart = g.node();
    const afterValue = g.node();
    const next = g.node();
    g.literal(at, enc.encode(`<arg_key>${tagText(name, param, 'a property name')}</arg_key>\n<arg_value>`), valueStart);
    g.call(valueStart, value, afterValue);
    g.literal(afterValue, enc.encode('</arg_value>\n'), next);
    if (!required) g.epsilon(at, next);
    at = next;
  }
  g.accept(at);
  return start;
}

/**
 * A name or key as glm45 writes it between tags, refused unless its parser reads it back:
 * no '<' and no whitespace around it, and a name none inside either.
 */
function tagText(text: string, param: string, what: 'the name' | 'a property name'): string {
  const readable = what === 'the name' ? /^[^\s<]+$/ : /^[^\s<](?:[^<]*[^\s<])?$/;
  if (!readable.test(text))
    throw new GrammarError(
      `${param}: ${what} ${JSON.stringify(text.slice(0, 64))} cannot be written in this model's call format (glm45)`,
      param,
    );
  return text;
}
