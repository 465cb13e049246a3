/**
 * Opens the store the config asks for (`store.backend`): the host's, with its front in
 * memory, and the CLI's store commands' backend. The one place that knows which backends
 * exist, so host.ts and the CLI do not.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { Metrics } from '../metrics.js';
import type { StoreBackend } from './ports.js';
import { RedisBackend } from './redis.js';
import { SqliteBackend } from './sqlite.js';
import { MemoryStore } from './store.js';

/** Where the SQLite backend keeps the store. */
export function sqliteFile(dataDir: string): string {
  return join(dataDir, 'portcullis.db');
}

/**
 * The backend alone. `holdWhileDown` (the host): a shared backend that cannot be reached
 * is opened anyway, in an outage, and catches up when it returns; otherwise (the CLI)
 * that is a BackendUnavailable, reported.
 */
export function openBackend(config: Pick<Config, 'store'>, dataDir: string, opts: { log?: Logger; metrics?: Metrics; holdWhileDown: boolean }): Promise<StoreBackend> {
  if (config.store.backend === 'redis') return RedisBackend.open(config.store.redis, opts);
  return SqliteBackend.open(sqliteFile(dataDir));
}

/** The host's store: its in-memory front over the configured backend, loaded. */
export async function openStore(config: Pick<Config, 'store'>, dataDir: string, opts: { log: Logger; metrics: Metrics }): Promise<MemoryStore> {
  const backend = await openBackend(config, dataDir, { ...opts, holdWhileDown: true });
  opts.metrics.collect('store_backend_up', (set) => set({}, backend.up === false ? 0 : 1));
  const ignoreCountsWhileDown = config.store.backend === 'redis' && config.store.redis.whileDown === 'ignore-counts';
  return MemoryStore.open(backend, { ...opts, ignoreCountsWhileDown });
}
