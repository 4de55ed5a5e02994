/**
 * Yields the `data:` payloads of the Server-Sent Events in a response body, one array per
 * network read (only non-empty ones), so a relay can answer one read with one write.
 */
export async function* sseDataBatches(body: AsyncIterable<Uint8Array>): AsyncGenerator<string[]> {
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true });
    const batch: string[] = [];
    let start = 0;
    let cut: number;
    while ((cut = buffered.indexOf('\n\n', start)) >= 0) {
      const data = frameData(buffered.slice(start, cut));
      start = cut + 2;
      if (data !== '') batch.push(data);
    }
    if (start > 0) buffered = buffered.slice(start);
    if (batch.length > 0) yield batch;
  }
}

function frameData(frame: string): string {
  // The common case, one `data: ` line, without splitting.
  if (frame.startsWith('data: ') && !frame.includes('\n')) return frame.slice(6);
  return frame
    .split('\n')
    .filter((l) => l.startsWith('data:'))
    .map((l) => l.slice(l.startsWith('data: ') ? 6 : 5))
    .join('\n');
}
