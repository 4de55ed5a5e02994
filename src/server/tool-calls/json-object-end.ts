/**
 * Finds where a JSON object closes in text that arrives piece by piece: braces are counted
 * outside strings, escapes honoured. It does not validate (JSON.parse does that once the
 * object has closed); it only says when to try.
 */
export class JsonObjectEnd {
  private depth = 0;
  private inString = false;
  private escaped = false;
  private scanned = 0;

  /**
   * `text` starts with the object's `{` and grows between calls (earlier characters are
   * not read again). Returns the index of the closing brace, or -1 while it is open.
   */
  find(text: string): number {
    for (; this.scanned < text.length; this.scanned++) {
      const c = text[this.scanned];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') this.inString = false;
      } else if (c === '"') this.inString = true;
      else if (c === '{') this.depth++;
      else if (c === '}' && --this.depth === 0) return this.scanned;
    }
    return -1;
  }
}
