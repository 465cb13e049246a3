/**
 * The store's in-memory front: the internal blacklist, windowed event counters
 * (watchlists), local mailboxes, named lists and a TTL cache. Every read is served from
 * memory, so rules and the SMTP path never wait on disk. It composes a `StoreBackend`
 * (ports.ts): loads its snapshot at open and on reload, hands it every change, batched
 * per 50 ms tick, and applies the changes the backend reports from other writers.
 *
 * Every mutation is a `StoreChange` run through `apply`, the one place that says what a
 * change does to the state, whether it was made here or reported by the backend.
 */
import type { Logger } from 'pino';
import type { LabelsOf, Metrics } from '../metrics.js';
import {
  CACHE_PREFIX,
  WATCH_MAX_WINDOW_MS,
  BackendUnavailable,
  type BlacklistEntry,
  type BlacklistStore,
  type TtlCache,
  type ListStore,
  type MailboxDirectory,
  type MailboxState,
  type Snapshot,
  type StoreBackend,
  type StoreChange,
  type WatchlistStore,
  type WellBehavedStore,
} from './ports.js';

/**
 * The config's part of the mailbox directory: which domains are local, and the mailboxes
 * it lists (not written to the backend: the config is their home). The host applies it at
 * start and on reload, the rule harness at load.
 */
export function applyMailboxConfig(dir: MailboxDirectory, config: { localDomains: string[]; mailboxes: string[] }): void {
  dir.setLocalDomains(config.localDomains);
  for (const m of config.mailboxes) dir.mailboxAdd(m, false);
}

/** A store kept in memory only: the rule harness and unit tests. */
export class NullBackend implements StoreBackend {
  async load(_now: number): Promise<Snapshot> {
    return { blacklist: [], watch: [], mailboxes: [], lists: [], cache: [] };
  }
  async write(_batch: StoreChange[]): Promise<void> {}
  async close(): Promise<void> {}
}

export interface StoreOptions {
  /** Where a failed write is logged. */
  log?: Logger;
  /** Counts failed writes (`store_write_failures_total`). */
  metrics?: Metrics;
  /** While the backend is down, watchlist counts read 0 (the Redis backend's `whileDown: "ignore-counts"`). */
  ignoreCountsWhileDown?: boolean;
}

/** How often queued changes go to the backend. */
const WRITE_DELAY_MS = 50;

/**
 * The entry in force once `e` (a rule's entry) meets `old`: a live entry that expires
 * later stays; otherwise `e` does, keeping a live entry's `created`.
 */
function extended(old: BlacklistEntry | undefined, e: BlacklistEntry): BlacklistEntry {
  const live = old && old.expires > e.created ? old : undefined;
  if (live && live.expires >= e.expires) return live;
  return live ? { ...e, created: live.created } : e;
}

export class MemoryStore implements BlacklistStore, TtlCache, WatchlistStore, ListStore, MailboxDirectory, WellBehavedStore {
  private readonly blacklist = new Map<string, BlacklistEntry>();
  private readonly watch = new Map<string, number[]>();
  /** domain → local parts ('*' = every address of the domain exists). */
  private readonly mailboxes = new Map<string, Set<string>>();
  private readonly lists = new Map<string, Set<string>>();
  private readonly cache = new Map<string, { value: string; expires: number }>();
  private readonly localDomains = new Set<string>();

  /** Changes not yet handed to the backend. */
  private queue: StoreChange[] = [];
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  /** Set while a reload reads the backend: writes wait, so the queue is exactly what the snapshot lacks. */
  private reloading: Promise<void> | null = null;
  private reloads: Promise<unknown> = Promise.resolve();
  private readonly unsubscribe: () => void;
  private readonly unresync: () => void;
  private cacheSets = 0;
  /** The last write the backend refused (the CLI reports it; the host only logs and counts). */
  lastWriteError: Error | null = null;

  /** A store over `backend` (memory only by default), empty until `reload`: see `MemoryStore.open`. */
  constructor(private readonly backend: StoreBackend = new NullBackend(), private readonly opts: StoreOptions = {}) {
    this.unsubscribe = backend.subscribe?.((changes) => {
      for (const c of changes) this.apply(c);
    }) ?? (() => undefined);
    this.unresync = backend.onResync?.(({ lost }) => {
      if (lost) this.reseed();
      this.reload().catch((e: Error) => this.opts.log?.warn({ err: e }, `store resync failed, serving from memory: ${e.message}`));
    }) ?? (() => undefined);
  }

  /** A store over `backend`, loaded with its snapshot. */
  static async open(backend: StoreBackend, opts: StoreOptions = {}, now = Date.now()): Promise<MemoryStore> {
    const store = new MemoryStore(backend, opts);
    try {
      await store.reload(now);
    } catch (e) {
      await store.close().catch(() => undefined);
      throw e;
    }
    return store;
  }

  /**
   * Re-reads the backend (what `portcullis blacklist/mailbox` changed on disk): our own
   * queued changes are written first, and those made while reading are applied again on
   * top of the snapshot. Reloads run one at a time.
   */
  reload(now = Date.now()): Promise<void> {
    const r = this.reloads.then(() => this.reloadNow(now));
    this.reloads = r.catch(() => undefined);
    return r;
  }

  private async reloadNow(now: number): Promise<void> {
    await this.flush();
    let done!: () => void;
    this.reloading = new Promise((ok) => (done = ok));
    try {
      await this.writing; // one that started between our flush and here
      const snapshot = await this.backend.load(now).catch((e: unknown) => {
        // A shared backend that is down: serve what memory holds; it asks for a resync once back.
        if (e instanceof BackendUnavailable && e.resyncs) return null;
        throw e;
      });
      if (snapshot) {
        this.replace(snapshot);
        for (const c of this.queue) this.apply(c);
      }
    } finally {
      this.reloading = null;
      done();
      if (this.queue.length) void this.flush();
    }
  }

  /**
   * Queues what this host holds for a backend that lost its data (Redis restarted without
   * persistence): live blacklist entries (as a rule's, so hosts writing back the same
   * entry never shorten it), named lists and the cache. Not the watchlist hits: memory
   * holds every host's, so each host writing them back would count them once per host;
   * counts start over. Not the mailboxes: memory mixes the config's in.
   */
  private reseed(now = Date.now()): void {
    for (const e of this.blacklistList(now)) this.queue.push({ t: 'blacklist-extend', e });
    for (const [list, values] of this.lists) for (const value of values) this.queue.push({ t: 'list-put', list, value });
    for (const [key, e] of this.cache) if (e.expires > now) this.queue.push({ t: 'cache-put', key, value: e.value, expires: e.expires });
  }

  private replace(s: Snapshot): void {
    for (const m of [this.blacklist, this.watch, this.mailboxes, this.lists, this.cache]) m.clear();
    for (const e of s.blacklist) this.blacklist.set(e.ip, e);
    for (const w of s.watch) this.watch.set(w.key, [...w.hits]);
    for (const address of s.mailboxes) this.apply({ t: 'mailbox-put', address });
    for (const { list, value } of s.lists) this.apply({ t: 'list-put', list, value });
    for (const { key, value, expires } of s.cache) this.cache.set(key, { value, expires });
  }

  /** What a change does to the state in memory. */
  private apply(c: StoreChange): void {
    switch (c.t) {
      case 'blacklist-put':
        this.blacklist.set(c.e.ip, c.e);
        break;
      case 'blacklist-extend':
        this.blacklist.set(c.e.ip, extended(this.blacklist.get(c.e.ip), c.e));
        break;
      case 'blacklist-del':
        this.blacklist.delete(c.ip);
        break;
      case 'blacklist-clear':
        this.blacklist.clear();
        break;
      case 'watch-hit': {
        const hits = (this.watch.get(c.key) ?? []).filter((t) => t > c.at - WATCH_MAX_WINDOW_MS);
        hits.push(c.at);
        this.watch.set(c.key, hits);
        break;
      }
      case 'mailbox-put': {
        const { local, domain } = splitAddress(c.address);
        let set = this.mailboxes.get(domain);
        if (!set) this.mailboxes.set(domain, (set = new Set()));
        set.add(local);
        break;
      }
      case 'mailbox-del': {
        const { local, domain } = splitAddress(c.address);
        this.mailboxes.get(domain)?.delete(local);
        break;
      }
      case 'list-put': {
        let set = this.lists.get(c.list);
        if (!set) this.lists.set(c.list, (set = new Set()));
        set.add(c.value);
        break;
      }
      case 'list-del':
        this.lists.get(c.list)?.delete(c.value);
        break;
      case 'cache-put':
        this.cache.set(c.key, { value: c.value, expires: c.expires });
        break;
    }
  }

  /** Applies a change made here and queues it for the backend. */
  private change(c: StoreChange): void {
    this.apply(c);
    this.queue.push(c);
    if (!this.timer && !this.reloading) {
      this.timer = setTimeout(() => void this.flush(), WRITE_DELAY_MS);
      this.timer.unref();
    }
  }

  /** Hands the queued changes to the backend as one batch; resolves once written (or the failure recorded). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const busy = this.writing ?? this.reloading;
    if (busy) return busy.then(() => this.flush());
    const batch = this.queue;
    this.queue = [];
    if (!batch.length) return Promise.resolve();
    this.writing = this.backend
      .write(batch)
      .catch((e: Error) => {
        this.lastWriteError = e;
        this.opts.metrics?.inc('store_write_failures_total');
        this.opts.log?.error({ err: e, changes: batch.length }, `store write failed (${batch.length} changes lost from disk, kept in memory): ${e.message}`);
      })
      .finally(() => {
        this.writing = null;
      });
    return this.writing;
  }

  /** Writes what is queued and closes the backend. */
  async close(): Promise<void> {
    await this.flush();
    this.unsubscribe();
    this.unresync();
    await this.backend.close();
  }

  // --- mailboxes and local domains ------------------------------------------

  setLocalDomains(domains: Iterable<string>): void {
    this.localDomains.clear();
    for (const d of domains) this.localDomains.add(d.toLowerCase());
  }

  mailbox(address: string): MailboxState {
    if (!address.includes('@')) return address.toLowerCase() === 'postmaster' ? 'exists' : 'unknown';
    const { local, domain } = splitAddress(address);
    if (!this.localDomains.has(domain)) return 'unknown';
    if (local === 'postmaster') return 'exists';
    const known = this.mailboxes.get(domain);
    if (!known?.size) return 'unknown';
    return known.has('*') || known.has(local) ? 'exists' : 'missing';
  }

  mailboxAdd(address: string, persist = true): void {
    const c = { t: 'mailbox-put', address: address.toLowerCase() } as const;
    if (persist) this.change(c);
    else this.apply(c);
  }

  mailboxRemove(address: string): boolean {
    const { local, domain } = splitAddress(address);
    if (!this.mailboxes.get(domain)?.has(local)) return false;
    this.change({ t: 'mailbox-del', address: address.toLowerCase() });
    return true;
  }

  mailboxList(): string[] {
    return [...this.mailboxes].flatMap(([d, locals]) => [...locals].map((l) => `${l}@${d}`)).sort();
  }

  // --- blacklist -------------------------------------------------------------

  blacklistAdd(ip: string, ttlSeconds: number, reason: string, rule: string, now = Date.now()): BlacklistEntry {
    const e = { ip, reason, rule, created: now, expires: now + ttlSeconds * 1000 };
    this.change({ t: 'blacklist-put', e });
    return e;
  }

  blacklistExtend(ip: string, ttlSeconds: number, reason: string, rule: string, now = Date.now()): BlacklistEntry {
    const old = this.blacklistGet(ip, now);
    const e = extended(old, { ip, reason, rule, created: now, expires: now + ttlSeconds * 1000 });
    if (e !== old) this.change({ t: 'blacklist-extend', e });
    return e;
  }

  blacklistGet(ip: string, now = Date.now()): BlacklistEntry | undefined {
    const e = this.blacklist.get(ip);
    if (!e || e.expires > now) return e;
    // Expired: forgotten here; backends drop expired rows themselves (another writer may have extended it).
    this.blacklist.delete(ip);
    return undefined;
  }

  blacklistList(now = Date.now()): BlacklistEntry[] {
    return [...this.blacklist.keys()].map((ip) => this.blacklistGet(ip, now)).filter((e): e is BlacklistEntry => !!e);
  }

  blacklistRemove(ip: string): boolean {
    if (!this.blacklist.has(ip)) return false;
    this.change({ t: 'blacklist-del', ip });
    return true;
  }

  blacklistClear(): void {
    this.change({ t: 'blacklist-clear' });
  }

  // --- watchlists ------------------------------------------------------------

  watchHit(key: string, windowSeconds: number, now = Date.now()): number {
    this.change({ t: 'watch-hit', key, at: now });
    return this.watchCount(key, windowSeconds, now);
  }

  watchCount(key: string, windowSeconds: number, now = Date.now()): number {
    if (this.opts.ignoreCountsWhileDown && this.backend.up === false) return 0;
    const since = now - Math.min(windowSeconds * 1000, WATCH_MAX_WINDOW_MS);
    let n = 0;
    for (const t of this.watch.get(key) ?? []) if (t > since) n++;
    return n;
  }

  // --- lists and cache -------------------------------------------------------

  listHas(list: string, value: string): boolean {
    return this.lists.get(list)?.has(value) ?? false;
  }

  listValues(list: string): string[] {
    return [...(this.lists.get(list) ?? [])];
  }

  listAdd(list: string, value: string): void {
    if (!this.listHas(list, value)) this.change({ t: 'list-put', list, value });
  }

  listRemove(list: string, value: string): boolean {
    if (!this.listHas(list, value)) return false;
    this.change({ t: 'list-del', list, value });
    return true;
  }

  cacheGet(key: string, now = Date.now()): string | undefined {
    const e = this.cache.get(key);
    if (!e) return undefined;
    if (e.expires <= now) {
      this.cache.delete(key);
      return undefined;
    }
    return e.value;
  }

  cacheScan(prefix: string, now = Date.now()): [string, string][] {
    const out: [string, string][] = [];
    for (const [k, e] of this.cache) if (k.startsWith(prefix) && e.expires > now) out.push([k, e.value]);
    return out;
  }

  cacheSet(key: string, value: string, ttlSeconds: number, now = Date.now()): void {
    this.change({ t: 'cache-put', key, value, expires: now + ttlSeconds * 1000 });
    // Expired entries go when read; a sweep now and then drops those never read again.
    if (++this.cacheSets % 1000 === 0) for (const [k, e] of this.cache) if (e.expires <= now) this.cache.delete(k);
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  // --- well-behaved clients (in the cache) -------------------------------------

  wellBehaved(ip: string, now = Date.now()): boolean {
    return this.cacheGet(CACHE_PREFIX.wellBehaved + ip, now) !== undefined;
  }

  markWellBehaved(ip: string, ttlSeconds: number, rule: string, now = Date.now()): void {
    const key = CACHE_PREFIX.wellBehaved + ip;
    // Only ever extended, as a blacklist entry: a rule's shorter mark never cuts a longer one.
    if ((this.cache.get(key)?.expires ?? 0) >= now + ttlSeconds * 1000) return;
    this.cacheSet(key, rule, ttlSeconds, now);
  }

  /** Entries per part of the store (`store_entries`), expired ones not yet dropped included. */
  get sizes(): Record<LabelsOf<'store_entries'>['kind'], number> {
    const values = (m: Map<string, Set<string>>) => [...m.values()].reduce((n, set) => n + set.size, 0);
    return { blacklist: this.blacklist.size, watch: this.watch.size, mailboxes: values(this.mailboxes), lists: values(this.lists) };
  }
}

function splitAddress(address: string): { local: string; domain: string } {
  const a = address.toLowerCase();
  const at = a.lastIndexOf('@');
  return { local: a.slice(0, at), domain: a.slice(at + 1) };
}
