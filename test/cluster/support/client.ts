/** A minimal OpenAI-style client for cluster tests: one call, streamed or not, reduced to text + usage. */

export interface Outcome {
  status: number;
  text: string;
  usage: { prompt_tokens: number; completion_tokens: number } | null;
  finishReason: string | null;
  /** Chat role chunks seen (a resumed stream must still show exactly one). */
  roleChunks: number;
  ids: Set<string>;
  error: unknown;
  /** The gateway's `x-autoglm-worker` header: the worker that answered (null straight from a worker). */
  worker: string | null;
}

export async function call(
  baseUrl: string,
  path: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
  onText?: (textSoFar: string, headers: Headers) => void,
): Promise<Outcome> {
  const out: Outcome = { status: 0, text: '', usage: null, finishReason: null, roleChunks: 0, ids: new Set(), error: null, worker: null };
  let r: Response;
  try {
    r = await fetch(`${baseUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
  } catch (e) {
    out.error = e;
    return out;
  }
  out.status = r.status;
  out.worker = r.headers.get('x-autoglm-worker');
  try {
    // An error before the stream starts is a JSON body, streamed request or not.
    if (body.stream !== true || r.status !== 200) {
      const j = (await r.json()) as Record<string, unknown>;
      if (r.status !== 200) {
        out.error = j.error;
        return out;
      }
      const c = (j.choices as Record<string, unknown>[])[0]!;
      out.text = (c.text as string | undefined) ?? (c.message as { content: string }).content ?? '';
      out.finishReason = c.finish_reason as string;
      out.usage = j.usage as Outcome['usage'];
      out.ids.add(j.id as string);
      return out;
    }
    let done = false;
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      let cut: number;
      while ((cut = buffered.indexOf('\n\n')) >= 0) {
        const data = buffered.slice(0, cut).replace(/^data: /, '');
        buffered = buffered.slice(cut + 2);
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        const j = JSON.parse(data) as Record<string, unknown>;
        if (j.error) {
          out.error = j.error;
          continue;
        }
        out.ids.add(j.id as string);
        if (j.usage) out.usage = j.usage as Outcome['usage'];
        for (const c of (j.choices ?? []) as Record<string, unknown>[]) {
          const delta = c.delta as { role?: string; content?: string } | undefined;
          if (delta?.role) out.roleChunks++;
          out.text += (c.text as string | undefined) ?? delta?.content ?? '';
          if (c.finish_reason) out.finishReason = c.finish_reason as string;
        }
        onText?.(out.text, r.headers);
      }
    }
    if (!done && out.error === null) out.error = new Error('stream ended without [DONE]');
  } catch (e) {
    out.error = e;
  }
  return out;
}
