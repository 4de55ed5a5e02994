import type { FastifyServerOptions } from 'fastify';
import type { CorsOptions } from '../../server/cors.js';
import type { BalancerOptions } from '../balancer.js';
import type { HealthMonitorOptions } from '../health-monitor.js';
import type { WorkerRegistry } from '../registry/registry.js';
import type { LoraSyncOptions } from './lora-sync.js';

/** A token bucket: `requestsPerSecond` refill, at most `burst` requests at once. */
export interface RateLimit {
  requestsPerSecond: number;
  burst: number;
}

export interface GatewayOptions {
  registry: WorkerRegistry;
  /** Client API keys (Authorization: Bearer); `disabled` must be explicit. */
  auth: { apiKeys: readonly string[]; disabled?: boolean };
  /** Per API key (or per IP with auth disabled); keys in `keyRateLimits` use their own instead. */
  rateLimit?: RateLimit;
  /**
   * Limits for particular API keys (each must be one of `auth.apiKeys`), in place of
   * `rateLimit`; `null` exempts a key (an internal service, say).
   */
  keyRateLimits?: ReadonlyMap<string, RateLimit | null>;
  /**
   * The least `priority` value the generation requests of particular API keys carry (each
   * must be one of `auth.apiKeys`): a client's own lower value, or none, is raised to it, so
   * a batch key cannot go ahead of interactive traffic. Workers need `--scheduling-policy
   * priority`; one without refuses such requests with a 400.
   */
  keyPriorities?: ReadonlyMap<string, number>;
  /** Sent to workers (x-autoglm-cluster-secret) and required from registering workers. */
  clusterSecret?: string;
  /** Bearer key for workers that check API keys themselves. */
  workerApiKey?: string;
  health?: HealthMonitorOptions;
  balancer?: BalancerOptions & {
    /** Characters of the prompt that make up the affinity key (default 512); used when `affinity` is set. */
    affinityPrefixChars?: number;
  };
  retry?: {
    /** Attempts per request, the first included (default 3). */
    maxAttempts?: number;
    /** Retries per request allowed cluster-wide on average (default 0.2), plus a floor per second (default 5). */
    budgetRatio?: number;
    budgetMinPerSecond?: number;
    /** Most retries the budget banks in a quiet spell (default 50). */
    budgetCap?: number;
  };
  /** Streams: time to the first byte of an attempt (default 60 s). */
  firstByteTimeoutMs?: number;
  /** Streams: silence that counts as a dead worker (default 30 s). */
  idleTimeoutMs?: number;
  /** Whole-request deadline; no attempt starts after it (default 600 s). */
  requestTimeoutMs?: number;
  /** Resume streams cut mid-way on another worker (default true). */
  resume?: boolean;
  maxBodyBytes?: number;
  /**
   * A client must have sent its whole request (headers and body) within this long (default
   * 30 s), else its connection is closed: a client trickling bytes holds no socket for ever.
   */
  clientRequestTimeoutMs?: number;
  /**
   * A streaming client that takes nothing for this long (its socket buffers full) is cut
   * off, which cancels its request upstream (default 60 s): one that never reads would hold
   * a worker's slot until the request deadline.
   */
  streamStallTimeoutMs?: number;
  /** close(): how long requests in flight (streams) may take to finish before they are cut (default 20 s). */
  closeTimeoutMs?: number;
  /**
   * Serve POST /v1/load_lora_adapter and /v1/unload_lora_adapter for the whole cluster, and
   * keep every worker serving the adapters loaded at run time (lora-sync.ts). Off by
   * default: any client key could then make the workers read folders on their disks. The
   * workers need --allow-runtime-lora-updates and free --max-loras slots.
   */
  runtimeLoraUpdates?: boolean | LoraSyncOptions;
  /** Browser origins allowed to call the API (CORS); none when absent. */
  cors?: CorsOptions;
  logger?: FastifyServerOptions['logger'];
}
