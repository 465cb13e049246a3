/**
 * The ioredis client behind the Redis store (redis.ts): one Redis by URL, through
 * Sentinel, or a Cluster, set to fail fast (no offline queue, one try per command) so the
 * store's own outage logic, not ioredis, decides what waits.
 */
import { Cluster, Redis, ReplyError, type RedisOptions } from 'ioredis';
import type { RedisStoreConfig } from '../config/config.js';

export type Client = Redis | Cluster;

/** The ioredis client the config asks for; commands fail fast when disconnected (the outage logic holds them, not ioredis). */
export function connect(cfg: RedisStoreConfig): Client {
  const common: RedisOptions = {
    commandTimeout: cfg.commandTimeoutMs,
    connectTimeout: connectTimeout(cfg),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    enableAutoPipelining: true,
    // Reconnect forever, at most once a second: the probe and the held changes do the rest.
    retryStrategy: (times) => Math.min(times * 100, 1000),
    ...(cfg.password !== undefined ? { password: cfg.password } : {}),
  };
  const hostPort = (a: string) => ({ host: a.slice(0, a.lastIndexOf(':')), port: Number(a.slice(a.lastIndexOf(':') + 1)) });
  if (cfg.cluster) return new Cluster(cfg.cluster.map(hostPort), { enableOfflineQueue: false, enableAutoPipelining: true, redisOptions: common, clusterRetryStrategy: (times) => Math.min(times * 100, 1000) });
  if (cfg.sentinels) return new Redis({ ...common, sentinels: cfg.sentinels.map(hostPort), name: cfg.sentinelName, ...(cfg.password !== undefined ? { sentinelPassword: cfg.password } : {}) });
  return new Redis(cfg.url!, common);
}

/** How long a connection may take: a start waits for it once, then goes on in an outage. */
export function connectTimeout(cfg: RedisStoreConfig): number {
  return Math.max(cfg.commandTimeoutMs, 1000);
}

/** Resolves once `c` is connected (commands fail fast until then: no offline queue). */
export function whenReady(c: Client, ms: number): Promise<void> {
  if (c.status === 'ready') return Promise.resolve();
  return new Promise((ok, fail) => {
    const t = setTimeout(() => {
      c.off('ready', on);
      fail(new Error(`not connected within ${ms} ms`));
    }, ms);
    const on = () => {
      clearTimeout(t);
      ok();
    };
    c.once('ready', on);
  });
}

/** Where Redis is, for messages (a url's password left out). */
export function describe(cfg: RedisStoreConfig): string {
  if (cfg.cluster) return `cluster ${cfg.cluster.join(',')}`;
  if (cfg.sentinels) return `sentinels ${cfg.sentinels.join(',')} (${cfg.sentinelName})`;
  return (cfg.url ?? '').replace(/\/\/[^@/]*@/, '//');
}

/** Redis answered with an error (not a timeout or a lost connection): a refused command, not an outage. */
export function isReplyError(e: unknown): e is Error {
  return e instanceof (ReplyError as unknown as typeof Error);
}

