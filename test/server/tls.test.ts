/** HTTPS when given a key and certificate (self-signed, made with openssl for the test). */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import type { InferenceEngine } from '../../src/engine/types.js';
import { buildServer } from '../../src/server/index.js';

test('serves HTTPS with the given key and certificate', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'autoglm-tls-'));
  const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')];
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    {
      stdio: 'ignore',
    },
  );
  // The model is irrelevant here: /health answers while the engine is still loading.
  const server = buildServer({
    engine: new Promise<InferenceEngine>(() => {}),
    auth: { apiKeys: ['k'] },
    tls: { key: readFileSync(key), cert: readFileSync(cert) },
  });
  const url = await server.listen({ port: 0, host: '127.0.0.1' });
  try {
    expect(url.startsWith('https://127.0.0.1:')).toBe(true);
    const body = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      get(`${url}/health`, { ca: readFileSync(cert) }, (res) => {
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
