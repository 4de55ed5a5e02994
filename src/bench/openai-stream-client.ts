/**
 * One streaming request to an OpenAI-compatible endpoint, timed chunk by chunk: the
 * timestamps of content chunks give TTFT and inter-token latencies, the final usage
 * chunk (stream_options.include_usage) gives the server's token counts. Never throws:
 * failures come back as a typed error kind so the load generator can count them.
 */

export type Endpoint = '/v1/completions' | '/v1/chat/completions';

export interface StreamRequest {
  baseUrl: string;
  endpoint: Endpoint;
  model: string;
  prompt: string | number[];
  maxTokens: number;
  /** Ask the server to keep generating after EOS (vLLM's extension, also ours) so outputs have the requested length. */
  ignoreEos: boolean;
  temperature: number;
  seed?: number;
  apiKey?: string;
  timeoutMs: number;
  /** Extra body fields, merged last. */
  extraBody?: Record<string, unknown>;
}

export type RequestErrorKind = 'http' | 'network' | 'timeout' | 'bad_stream' | 'server_error_event';

export interface RequestError {
  kind: RequestErrorKind;
  /** e.g. 'http_429:rate_limit_exceeded', 'timeout', 'network:ECONNREFUSED' */
  label: string;
  message: string;
}

export interface RequestRecord {
  ok: boolean;
  error?: RequestError;
  /** Wall-clock offset of the send from the run's start, ms. */
  sentAtMs: number;
  /** Time to the first content chunk, ms (NaN if none came). */
  ttftMs: number;
  /** Send to last byte, ms. */
  e2eMs: number;
  /** Gaps between successive content chunks, ms. */
  itlMs: number[];
  /** Server-reported completion tokens, else the number of content chunks. */
  outputTokens: number;
  /** Server-reported prompt tokens, else null. */
  promptTokens: number | null;
  outputChars: number;
}

interface StreamChunk {
  choices?: { text?: string | null; delta?: { content?: string | null } }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string; code?: string | null; type?: string };
}

export async function sendStreamingRequest(req: StreamRequest, runStartMs: number): Promise<RequestRecord> {
  const sentAt = performance.now();
  const record: RequestRecord = {
    ok: false,
    sentAtMs: sentAt - runStartMs,
    ttftMs: Number.NaN,
    e2eMs: Number.NaN,
    itlMs: [],
    outputTokens: 0,
    promptTokens: null,
    outputChars: 0,
  };
  const fail = (kind: RequestErrorKind, label: string, message: string): RequestRecord => {
    record.error = { kind, label, message };
    record.e2eMs = performance.now() - sentAt;
    return record;
  };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), req.timeoutMs);
  try {
    const response = await fetch(new URL(req.endpoint, req.baseUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(req.apiKey ? { authorization: `Bearer ${req.apiKey}` } : {}) },
      body: JSON.stringify(requestBody(req)),
      signal: controller.signal,
    });
    if (!response.ok || !response.body) {
      const body = await response.text().catch(() => '');
      const code = errorCodeOf(body);
      return fail('http', `http_${response.status}${code ? `:${code}` : ''}`, body.slice(0, 300));
    }
    let chunks = 0;
    let last = 0;
    let done = false;
    let usageTokens: number | null = null;
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const bytes of response.body as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(bytes, { stream: true });
      let cut: number;
      while ((cut = buffered.search(/\r?\n\r?\n/)) >= 0) {
        const event = buffered.slice(0, cut);
        buffered = buffered.slice(cut).replace(/^\r?\n\r?\n/, '');
        const data = event
          .split(/\r?\n/)
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).trimStart())
          .join('\n');
        if (data === '') continue;
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        let chunk: StreamChunk;
        try {
          chunk = JSON.parse(data) as StreamChunk;
        } catch {
          return fail('bad_stream', 'bad_stream:json', data.slice(0, 200));
        }
        if (chunk.error)
          return fail('server_error_event', `stream_error:${chunk.error.code ?? chunk.error.type ?? 'unknown'}`, chunk.error.message ?? '');
        if (chunk.usage) {
          usageTokens = chunk.usage.completion_tokens ?? usageTokens;
          record.promptTokens = chunk.usage.prompt_tokens ?? record.promptTokens;
        }
        const choice = chunk.choices?.[0];
        if (!choice) continue;
        const text = choice.text ?? choice.delta?.content ?? '';
        // A chunk with empty text still marks a generated token (a pending UTF-8 byte or stop-string prefix).
        const now = performance.now();
        if (chunks === 0) record.ttftMs = now - sentAt;
        else record.itlMs.push(now - last);
        last = now;
        chunks++;
        record.outputChars += text.length;
      }
    }
    record.e2eMs = performance.now() - sentAt;
    if (!done) return fail('bad_stream', 'bad_stream:no_done', 'stream ended without data: [DONE]');
    record.outputTokens = usageTokens ?? chunks;
    if (chunks === 0) return fail('bad_stream', 'bad_stream:no_tokens', 'no content chunks');
    record.ok = true;
    return record;
  } catch (e) {
    if (controller.signal.aborted) return fail('timeout', 'timeout', `no complete response within ${req.timeoutMs} ms`);
    const cause = (e as { cause?: { code?: string } }).cause;
    return fail('network', `network:${cause?.code ?? 'error'}`, e instanceof Error ? e.message : String(e));
  } finally {
    clearTimeout(timer);
  }
}

function requestBody(req: StreamRequest): Record<string, unknown> {
  const common = {
    model: req.model,
    max_tokens: req.maxTokens,
    temperature: req.temperature,
    stream: true,
    stream_options: { include_usage: true },
    ...(req.ignoreEos ? { ignore_eos: true } : {}),
    ...(req.seed !== undefined ? { seed: req.seed } : {}),
  };
  const prompt =
    req.endpoint === '/v1/completions'
      ? { prompt: req.prompt }
      : { messages: [{ role: 'user', content: typeof req.prompt === 'string' ? req.prompt : req.prompt.join(' ') }] };
  return { ...common, ...prompt, ...req.extraBody };
}

function errorCodeOf(body: string): string | null {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: string | null; type?: string } };
    return parsed.error?.code ?? parsed.error?.type ?? null;
  } catch {
    return null;
  }
}
