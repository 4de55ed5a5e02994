/** Reads a gateway's (or worker's) Prometheus /metrics over HTTP. */

/**
 * The sum of every sample whose line starts with `prefix`: a metric name alone sums all
 * its series; `name{label="x"` picks some. Histogram buckets are left out unless asked for.
 */
export async function scrapeSum(baseUrl: string, prefix: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  return sumSamples(text, prefix);
}

export function sumSamples(text: string, prefix: string): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(prefix) && (prefix.includes('_bucket') || !/_bucket\{/.test(l)))
    .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}
