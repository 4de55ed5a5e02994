import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { isAutoGlmError } from '../../src/errors.js';
import { DEFAULT_MODEL_DIR, engineOptionsOf, parseServeConfig, serveHelp, type ServeConfig } from '../../src/cli/serve-config.js';
import { loadDemoEngine, parseMetrics, postJson, startServer } from './helpers.js';

const parse = (argv: string[], env: NodeJS.ProcessEnv = {}): ServeConfig => {
  const c = parseServeConfig(argv, env);
  if (c === 'help') throw new Error('unexpected help');
  return c;
};

test('defaults: the bundled model on 127.0.0.1:8000, auth not disabled', () => {
  const c = parse([]);
  expect(c.modelDir).toBe(DEFAULT_MODEL_DIR);
  expect(DEFAULT_MODEL_DIR.endsWith(join('models', 'demo-stories'))).toBe(true);
  expect(c.usingDefaultModel).toBe(true);
  expect([c.host, c.port, c.authDisabled, c.apiKeys]).toEqual(['127.0.0.1', 8000, false, []]);
  expect(c.rateLimit).toBeUndefined();
});

test('--served-model-name NAME,ALIAS,...: the first labels answers, the rest are aliases (vLLM takes several names too)', () => {
  expect([parse([]).servedModelName, parse([]).modelAliases]).toEqual([undefined, []]);
  const one = parse(['--served-model-name', 'tales']);
  expect([one.servedModelName, one.modelAliases]).toEqual(['tales', []]);
  const several = parse(['--served-model-name', 'tales, stories,tales,demo']);
  expect([several.servedModelName, several.modelAliases]).toEqual(['tales', ['stories', 'demo']]);
  expect(engineOptionsOf(several).servedModelName).toBe('tales');
});

test('flags win over AUTOGLM_* env, env fills the rest', () => {
  const dir = mkdtempSync(join(tmpdir(), 'autoglm-keys-'));
  writeFileSync(join(dir, 'keys'), 'sk-file\n# comment\n');
  // (not with --no-auth: keys with auth off are refused as a contradiction, test/cli/cli-usage.test.ts)
  const c = parse(['--port', '9001', '--model', '/m', '--api-keys', 'sk-a, sk-b'], {
    AUTOGLM_PORT: '7000',
    AUTOGLM_HOST: '0.0.0.0',
    AUTOGLM_API_KEY_FILE: join(dir, 'keys'),
    AUTOGLM_RATE_LIMIT_RPS: '2.5',
    AUTOGLM_CLUSTER_SECRET: 'cs',
    AUTOGLM_DRAIN_TIMEOUT_MS: '1500',
  });
  expect(c.port).toBe(9001);
  expect(c.host).toBe('0.0.0.0');
  expect(c.modelDir).toBe('/m');
  expect(c.usingDefaultModel).toBe(false);
  expect(c.apiKeys).toEqual(['sk-a', 'sk-b', 'sk-file']);
  expect(c.authDisabled).toBe(false);
  expect(parse(['--no-auth']).authDisabled).toBe(true);
  expect(c.rateLimit).toEqual({ requestsPerSecond: 2.5, burst: 5 });
  expect(c.clusterSecret).toBe('cs');
  expect(c.drainTimeoutMs).toBe(1500);
  expect(c.engine.kernelProfile).toBeUndefined();
  expect(parse(['--kernel-profile', 'gpu']).engine.kernelProfile).toBe('gpu');
  expect(parse([], { AUTOGLM_KERNEL_PROFILE: 'cpu' }).engine.kernelProfile).toBe('cpu');
});

test.each([
  [['--port', 'abc'], 'port'],
  [['--max-pending-requests=-1'], 'max-pending-requests'],
  [['--tls-key', 'k.pem'], 'tls-cert'],
  [['--api-key-file', '/nonexistent/keys'], 'api-key-file'],
  [['--kernel-profile', 'fast'], 'kernel-profile'],
  [['--response-cache-ttl', 'soon'], 'response-cache-ttl'],
  [['--response-cache-ttl=-1'], 'response-cache-ttl'],
  [['--response-cache-bytes', '1.5'], 'response-cache-bytes'],
  [['--response-cache-bytes', '64MiB'], 'response-cache-bytes'],
  // a bad URL failed only after start-up: a heartbeat erroring every second, or a TypeError
  [['--register', 'notaurl'], 'register'],
  [['--etcd', 'ftp://127.0.0.1:2379'], 'etcd'],
  [['--register', 'http://127.0.0.1:9000', '--advertise-url', 'http://a:99999'], 'advertise-url'],
  // read only by a worker that registers: ignored silently before
  [['--advertise-url', 'http://10.0.0.5:8000'], 'advertise-url'],
  [['--heartbeat-ms', '500'], 'heartbeat-ms'],
  [['--tool-call-parser', 'qwen'], 'tool-call-parser'],
  [['--tool-call-parser', 'hermes', '--tool-call-parser', 'none'], 'tool-call-parser'],
  [['--reasoning-parser', 'deepseek-r1'], 'reasoning-parser'],
  [['--reasoning-parser', 'qwen3', '--reasoning-parser', 'none'], 'reasoning-parser'],
])('bad value %j: invalid_request naming the flag', (argv, param) => {
  let caught: unknown;
  try {
    parse(argv);
  } catch (e) {
    caught = e;
  }
  expect(isAutoGlmError(caught, 'invalid_request')).toBe(true);
  expect((caught as { param: string }).param).toBe(param);
  expect((caught as Error).message).toContain(`--${param}`);
});

test('a bad value from an AUTOGLM_* variable is named as the variable', () => {
  let caught: unknown;
  try {
    parse([], { AUTOGLM_KERNEL_PROFILE: 'fast' });
  } catch (e) {
    caught = e;
  }
  // said only --kernel-profile, which the user had not given
  expect((caught as Error).message).toContain('AUTOGLM_KERNEL_PROFILE (--kernel-profile)');
});

test('--tool-call-parser: auto by default, a format, none, or AUTOGLM_TOOL_CALL_PARSER', () => {
  expect(parse([]).toolCallParser).toBe('auto');
  expect(parse(['--tool-call-parser', 'hermes']).toolCallParser).toBe('hermes');
  expect(parse(['--tool-call-parser', 'none'], { AUTOGLM_TOOL_CALL_PARSER: 'hermes' }).toolCallParser).toBe('none');
  expect(parse([], { AUTOGLM_TOOL_CALL_PARSER: 'llama3_json' }).toolCallParser).toBe('llama3_json');
  expect(serveHelp()).toContain('[AUTOGLM_TOOL_CALL_PARSER]');
});

test('--reasoning-parser: auto by default, a parser, none, or AUTOGLM_REASONING_PARSER', () => {
  expect(parse([]).reasoningParser).toBe('auto');
  expect(parse(['--reasoning-parser', 'qwen3']).reasoningParser).toBe('qwen3');
  expect(parse(['--reasoning-parser', 'none'], { AUTOGLM_REASONING_PARSER: 'qwen3' }).reasoningParser).toBe('none');
  expect(parse([], { AUTOGLM_REASONING_PARSER: 'deepseek_r1' }).reasoningParser).toBe('deepseek_r1');
  expect(serveHelp()).toContain('[AUTOGLM_REASONING_PARSER]');
});

test('--prompt-logprobs-rows: unset by default (the engine sizes it), 0 or more, or AUTOGLM_PROMPT_LOGPROBS_ROWS', () => {
  expect(Object.keys(engineOptionsOf(parse([])))).not.toContain('promptLogprobsRows');
  expect(engineOptionsOf(parse(['--prompt-logprobs-rows', '0']))).toMatchObject({ promptLogprobsRows: 0 });
  expect(engineOptionsOf(parse([], { AUTOGLM_PROMPT_LOGPROBS_ROWS: '64' }))).toMatchObject({ promptLogprobsRows: 64 });
  expect(serveHelp()).toContain('[AUTOGLM_PROMPT_LOGPROBS_ROWS]');
});

test('--num-speculative-tokens: off by default, up to 32, with --prompt-lookup-min/max only beside it', () => {
  const none = engineOptionsOf(parse([]));
  expect(Object.keys(none)).not.toContain('speculativeTokens');
  expect(Object.keys(none)).not.toContain('promptLookupMin');
  expect(engineOptionsOf(parse(['--num-speculative-tokens', '5', '--prompt-lookup-max', '6']))).toMatchObject({
    speculativeTokens: 5,
    promptLookupMax: 6,
  });
  expect(engineOptionsOf(parse([], { AUTOGLM_NUM_SPECULATIVE_TOKENS: '3', AUTOGLM_PROMPT_LOOKUP_MIN: '3' }))).toMatchObject({
    speculativeTokens: 3,
    promptLookupMin: 3,
  });
  const refused = (argv: string[], param: string): void => {
    let err: unknown;
    try {
      parse(argv);
    } catch (e) {
      err = e;
    }
    expect(isAutoGlmError(err, 'invalid_request'), `${argv.join(' ')}: ${String(err)}`).toBe(true);
    expect((err as { param?: string }).param).toBe(param);
  };
  refused(['--num-speculative-tokens', '33'], 'num-speculative-tokens');
  refused(['--prompt-lookup-min', '2'], 'prompt-lookup-min');
  refused(['--num-speculative-tokens', '0', '--prompt-lookup-max', '3'], 'prompt-lookup-max');
  // the default max (4) is below the min given: say so, naming the min
  refused(['--num-speculative-tokens', '4', '--prompt-lookup-min', '5', '--prompt-lookup-max', '3'], 'prompt-lookup-min');
  expect(engineOptionsOf(parse(['--num-speculative-tokens', '4', '--prompt-lookup-min', '6']))).toMatchObject({ promptLookupMin: 6 });
  expect(serveHelp()).toContain('[AUTOGLM_NUM_SPECULATIVE_TOKENS]');
});

test('--scheduling-policy: fcfs by default (left to the engine), priority, or AUTOGLM_SCHEDULING_POLICY', () => {
  expect(parse([]).engine.schedulingPolicy).toBe('fcfs');
  expect(Object.keys(engineOptionsOf(parse([])))).not.toContain('schedulingPolicy');
  expect(engineOptionsOf(parse(['--scheduling-policy', 'priority']))).toMatchObject({ schedulingPolicy: 'priority' });
  expect(engineOptionsOf(parse([], { AUTOGLM_SCHEDULING_POLICY: 'priority' }))).toMatchObject({ schedulingPolicy: 'priority' });
  expect(() => parse(['--scheduling-policy', 'lifo'])).toThrow(/scheduling-policy/);
  expect(serveHelp()).toContain('[AUTOGLM_SCHEDULING_POLICY]');
});

test('--num-speculative-tokens on a real server: /metrics counts the drafts and the kept ones', async () => {
  const engine = await loadDemoEngine(engineOptionsOf(parse(['--num-speculative-tokens', '4'])));
  const running = await startServer({ engine });
  try {
    const scrape = async (): Promise<number[]> => {
      const m = parseMetrics(await (await fetch(`${running.url}/metrics`)).text());
      // a counter shows no series before its first increment
      const read = (name: string): number => m.get(`autoglm:spec_decode_${name}_total{model_name="demo-stories"}`) ?? 0;
      return [read('num_drafts'), read('num_draft_tokens'), read('num_accepted_tokens')];
    };
    expect(await scrape()).toEqual([0, 0, 0]);
    // text that repeats itself: prompt lookup drafts from the first decode step on
    const story = 'Lily loved to play in the farm. One day, Lily found a blue box. ';
    const r = await postJson(`${running.url}/v1/completions`, {
      model: 'demo-stories',
      prompt: story + story + 'Lily loved',
      max_tokens: 40,
      temperature: 0,
    });
    expect(r.status).toBe(200);
    expect((r.json.usage as { completion_tokens: number }).completion_tokens).toBe(40);
    const [drafts, draftTokens, accepted] = await scrape();
    expect(drafts).toBeGreaterThan(0);
    expect(draftTokens).toBeGreaterThanOrEqual(drafts!);
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThanOrEqual(draftTokens!);
  } finally {
    await running.close();
    await engine.close();
  }
});

test('--weight-dtype: unset by default (the engine picks f16 or f32), f16, f32, int8, or AUTOGLM_WEIGHT_DTYPE', () => {
  expect(parse([]).engine.weightDType).toBeUndefined();
  expect(Object.keys(engineOptionsOf(parse([])))).not.toContain('weightDType');
  expect(parse(['--weight-dtype', 'int8']).engine.weightDType).toBe('int8');
  expect(engineOptionsOf(parse(['--weight-dtype=int8', '--force-f32']))).toMatchObject({ weightDType: 'int8', forceF32: true });
  expect(parse(['--weight-dtype', 'f32'], { AUTOGLM_WEIGHT_DTYPE: 'int8' }).engine.weightDType).toBe('f32');
  expect(parse([], { AUTOGLM_WEIGHT_DTYPE: 'int8' }).engine.weightDType).toBe('int8');
  expect(serveHelp()).toContain('[AUTOGLM_WEIGHT_DTYPE]');
  const refused = (argv: string[], env: NodeJS.ProcessEnv = {}): Error & { param?: string } => {
    try {
      parse(argv, env);
    } catch (e) {
      expect(isAutoGlmError(e, 'invalid_request')).toBe(true);
      return e as Error & { param?: string };
    }
    throw new Error('expected an invalid_request error');
  };
  expect(refused(['--weight-dtype', 'int4']).message).toContain('--weight-dtype must be one of f16, f32, int8');
  expect(refused([], { AUTOGLM_WEIGHT_DTYPE: 'bf16' }).message).toContain('AUTOGLM_WEIGHT_DTYPE (--weight-dtype)');
  // f16 weights with --force-f32 (f32 weights and KV cache) contradict each other
  const both = refused(['--weight-dtype', 'f16', '--force-f32']);
  expect([both.param, both.message]).toEqual(['weight-dtype', '--weight-dtype f16 and --force-f32 contradict each other: drop one.']);
});

test('--allowed-origins: none by default, a list or *, and a value no browser Origin could match names the flag', () => {
  expect(parse([]).cors).toBeUndefined();
  expect(parse(['--allowed-origins', 'https://a.example.com,http://localhost:5173']).cors).toEqual({
    allowedOrigins: ['https://a.example.com', 'http://localhost:5173'],
  });
  expect(parse([], { AUTOGLM_ALLOWED_ORIGINS: '*' }).cors).toEqual({ allowedOrigins: ['*'] });
  for (const [argv, env, message] of [
    [['--allowed-origins', 'a.example.com'], {}, "--allowed-origins: 'a.example.com' is not an origin"],
    [[], { AUTOGLM_ALLOWED_ORIGINS: 'https://a.example.com/' }, 'AUTOGLM_ALLOWED_ORIGINS (--allowed-origins)'],
  ] as const) {
    let caught: unknown;
    try {
      parse([...argv], env);
    } catch (e) {
      caught = e;
    }
    expect(isAutoGlmError(caught, 'invalid_request')).toBe(true);
    expect((caught as { param?: string }).param).toBe('allowed-origins');
    expect((caught as Error).message).toContain(message);
  }
});

test('unknown flags are refused; --help lists every flag with its env name', () => {
  expect(() => parse(['--prot', '1'])).toThrow(/Unknown option/);
  expect(parseServeConfig(['--help'], {})).toBe('help');
  expect(serveHelp()).toContain('--api-key-file <value>');
  expect(serveHelp()).toContain('[AUTOGLM_CLUSTER_SECRET]');
});

test('response cache bounds: --response-cache-bytes in bytes, --response-cache-ttl in seconds (fractions allowed)', () => {
  const c = parse(['--response-cache-bytes', '1048576', '--response-cache-ttl', '2.5', '--response-cache-entries', '8']);
  expect([c.engine.responseCacheEntries, c.engine.responseCacheBytes, c.engine.responseCacheTtlMs]).toEqual([8, 1048576, 2500]);
  expect(engineOptionsOf(c)).toMatchObject({ responseCacheEntries: 8, responseCacheBytes: 1048576, responseCacheTtlMs: 2500 });
  const env = parse([], { AUTOGLM_RESPONSE_CACHE_TTL: '0', AUTOGLM_RESPONSE_CACHE_BYTES: '0' });
  expect([env.engine.responseCacheTtlMs, env.engine.responseCacheBytes]).toEqual([0, 0]);
  // unset flags leave the engine's defaults in place
  const none = engineOptionsOf(parse([]));
  expect(Object.keys(none).filter((k) => k.startsWith('responseCache'))).toEqual([]);
});

test('--response-cache-ttl expires entries on a real server: a repeat within the TTL hits, after it misses', async () => {
  const ttlSeconds = 1;
  const engine = await loadDemoEngine(engineOptionsOf(parse(['--response-cache-ttl', String(ttlSeconds)])));
  const running = await startServer({ engine });
  try {
    const scrape = async (): Promise<{ hits: number; queries: number }> => {
      const m = parseMetrics(await (await fetch(`${running.url}/metrics`)).text());
      const read = (name: string): number => m.get(`autoglm:${name}{model_name="demo-stories"}`) ?? 0;
      return { hits: read('response_cache_hits_total'), queries: read('response_cache_queries_total') };
    };
    const body = { model: 'demo-stories', prompt: 'A story about time:', max_tokens: 8, temperature: 0 };
    const ask = async (): Promise<string> => {
      const r = await postJson(`${running.url}/v1/completions`, body);
      expect(r.status).toBe(200);
      return (r.json.choices as { text: string }[])[0]!.text;
    };
    const start = await scrape();
    const first = await ask();
    const storedAt = performance.now();
    expect(await ask()).toBe(first);
    const afterRepeat = await scrape();
    expect([afterRepeat.queries - start.queries, afterRepeat.hits - start.hits]).toEqual([2, 1]);
    // past the TTL the entry is gone: the same request is looked up, misses, and is generated again
    await new Promise((r) => setTimeout(r, Math.max(0, storedAt + 1200 * ttlSeconds - performance.now())));
    expect(await ask()).toBe(first);
    const afterExpiry = await scrape();
    expect([afterExpiry.queries - afterRepeat.queries, afterExpiry.hits - afterRepeat.hits]).toEqual([1, 0]);
  } finally {
    await running.close();
    await engine.close();
  }
});

test('--lora-modules NAME=FOLDER,...: the engine options carry them; a bad entry or a repeated name is refused naming the flag', () => {
  const c = parse(['--lora-modules', 'sql=/adapters/sql, chat=/adapters/chat=v2']);
  expect(c.engine.loraAdapters).toEqual([
    { name: 'sql', path: '/adapters/sql' },
    { name: 'chat', path: '/adapters/chat=v2' },
  ]);
  expect(engineOptionsOf(c).loraAdapters).toEqual(c.engine.loraAdapters);
  expect(engineOptionsOf(parse([])).loraAdapters).toBeUndefined();
  expect(parse([], { AUTOGLM_LORA_MODULES: 'a=/x' }).engine.loraAdapters).toEqual([{ name: 'a', path: '/x' }]);
  for (const bad of ['sql', '=/x', 'sql=', 'a=/x,a=/y', 'has space=/x']) {
    let error: unknown;
    try {
      parse(['--lora-modules', bad]);
    } catch (e) {
      error = e;
    }
    expect(isAutoGlmError(error) && error.param, bad).toBe('lora-modules');
    expect((error as Error).message, bad).toContain('--lora-modules');
  }
});

test('--max-loras, --max-lora-rank, --allow-runtime-lora-updates: carried to the engine and server; contradictions refused naming the flag', () => {
  const c = parse(['--lora-modules', 'a=/x', '--max-loras', '3', '--max-lora-rank', '32', '--allow-runtime-lora-updates']);
  expect([c.engine.maxLoras, c.engine.maxLoraRank, c.allowRuntimeLoraUpdates]).toEqual([3, 32, true]);
  expect(engineOptionsOf(c)).toMatchObject({ maxLoras: 3, maxLoraRank: 32 });
  expect(parse([]).allowRuntimeLoraUpdates).toBe(false);
  for (const [argv, param] of [
    [['--lora-modules', 'a=/x,b=/y', '--max-loras', '1'], 'max-loras'],
    [['--allow-runtime-lora-updates'], 'allow-runtime-lora-updates'],
    [['--lora-modules', 'a=/x', '--allow-runtime-lora-updates'], 'allow-runtime-lora-updates'],
    [['--max-lora-rank', '0'], 'max-lora-rank'],
    [['--max-loras', '65'], 'max-loras'],
  ] as const) {
    let error: unknown;
    try {
      parse([...argv]);
    } catch (e) {
      error = e;
    }
    expect(isAutoGlmError(error) && error.param, argv.join(' ')).toBe(param);
  }
});
