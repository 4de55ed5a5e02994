/** HTTPS when given a key and certificate (self-signed, made with openssl for the test). */
import { get } from 'node:https';
import { expect, test } from 'vitest';
import type { InferenceEngine } from '../../src/engine/types.js';
import { buildServer } from '../../src/server/index.js';
import { selfSignedCert } from '../helpers/self-signed-cert.js';

test('serves HTTPS with the given key and certificate', async () => {
  const { key, cert } = selfSignedCert();
  // The model is irrelevant here: /health answers while the engine is still loading.
  const server = buildServer({
    engine: new Promise<InferenceEngine>(() => {}),
    auth: { apiKeys: ['k'] },
    tls: { key, cert },
  });
  const url = await server.listen({ port: 0, host: '127.0.0.1' });
  try {
    expect(url.startsWith('https://127.0.0.1:')).toBe(true);
    const body = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      get(`${url}/health`, { ca: cert }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      }).on('error', reject);
    });
    expect(body.status).toBe(200);
    expect(JSON.parse(body.text)).toEqual({ status: 'ok' });
    // plain HTTP on the TLS port is not served
    await expect(fetch(url.replace('https:', 'http:') + '/health')).rejects.toThrow();
  } finally {
    await server.close();
  }
});
