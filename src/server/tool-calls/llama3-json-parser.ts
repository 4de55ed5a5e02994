import { toolCallFromJson } from './call-json.js';
import { JsonObjectEnd } from './json-object-end.js';
import { TextAroundCalls } from './text-around-calls.js';
import type { ToolCallEvent, ToolCallStreamParser } from './types.js';

/** Llama 3.1 writes it before a call (skipped as a special token from the text the engine streams). */
const PYTHON_TAG = '<|python_tag|>';

/**
 * Llama 3.1 / 3.2 JSON calls: the output is `{"name": ..., "parameters": {...}}` (or
 * `"arguments"`), optionally after `<|python_tag|>`, several separated by `;`. Output that
 * does not open that way is text, as vLLM reads it. Each call is given once its object
 * closes and parses; an object that is not a call, or anything after the calls that is
 * not another call, stays text from there on (never dropped).
 */
export class Llama3JsonToolCallParser implements ToolCallStreamParser {
  private state: 'start' | 'call' | 'between' | 'text' = 'start';
  /** Text not yet decided (the whole of it since the last call or since the start). */
  private pending = '';
  /** In state 'call': where the object begins in `pending`, and its scanner. */
  private objectStart = 0;
  private objectEnd = new JsonObjectEnd();
  private readonly around = new TextAroundCalls();

  push(text: string): ToolCallEvent[] {
    this.pending += text;
    const events: ToolCallEvent[] = [];
    for (;;) {
      if (this.state === 'text') {
        events.push(...this.around.text(this.pending));
        this.pending = '';
        return events;
      }
      if (this.state === 'call') {
        const body = this.pending.slice(this.objectStart);
        const end = this.objectEnd.find(body);
        if (end < 0) return events;
        const call = toolCallFromJson(body.slice(0, end + 1), ['arguments', 'parameters']);
        if (!call) {
          this.state = 'text';
          continue;
        }
        events.push(...this.around.call(call));
        this.pending = body.slice(end + 1);
        this.state = 'between';
        continue;
      }
      const opening = this.state === 'start' ? callOpening(this.pending) : nextCallOpening(this.pending);
      if (opening === 'undecided') return events;
      if (opening === 'no') {
        this.state = 'text';
        continue;
      }
      this.state = 'call';
      this.objectStart = opening;
      this.objectEnd = new JsonObjectEnd();
    }
  }

  end(): ToolCallEvent[] {
    // after the last call, a trailing separator is not text
    const rest = this.state === 'between' && /^[\s;]*$/.test(this.pending) ? '' : this.pending;
    this.pending = '';
    this.state = 'text';
    return [...this.around.text(rest), ...this.around.end()];
  }
}

type Opening = number | 'no' | 'undecided';

/** Where the first call's object begins: after whitespace and an optional <|python_tag|>. */
function callOpening(text: string): Opening {
  const lead = text.trimStart();
  if (lead === '' || (lead.length < PYTHON_TAG.length && PYTHON_TAG.startsWith(lead))) return 'undecided';
  const afterTag = lead.startsWith(PYTHON_TAG) ? lead.slice(PYTHON_TAG.length).trimStart() : lead;
  if (afterTag === '') return 'undecided';
  return afterTag.startsWith('{') ? text.length - afterTag.length : 'no';
}

/** Where the next call's object begins: after whitespace and an optional `;`. */
function nextCallOpening(text: string): Opening {
  const lead = text.trimStart();
  const afterSeparator = lead.startsWith(';') ? lead.slice(1).trimStart() : lead;
  if (afterSeparator === '') return 'undecided';
  return afterSeparator.startsWith('{') ? text.length - afterSeparator.length : 'no';
}
