/**
 * The watchlist store: the internal blacklist, windowed event counters (watchlists),
 * local mailboxes, named lists and a TTL cache. Everything is served from memory, so
 * rules and the SMTP path never wait on disk; SqliteStore (sqlite.ts) loads it at start
 * and writes every change behind to SQLite. A shared store for several MX hosts would
 * implement the same interface.
 */
/** An entry of the internal short-term blacklist (MercuryS/SmtpEvt). */
export interface BlacklistEntry {
  ip: string;
  reason: string;
  rule: string;
  created: number;
  expires: number;
}

export type MailboxState = 'exists' | 'missing' | 'unknown';

/** What a persistent store is told to write (SqliteStore turns these into SQL). */
export type StoreChange =
  | { t: 'blacklist-put'; e: BlacklistEntry }
  | { t: 'blacklist-del'; ip: string }
  | { t: 'blacklist-clear' }
  | { t: 'watch-put'; key: string; hits: number[] }
  | { t: 'mailbox-put'; address: string }
  | { t: 'mailbox-del'; address: string }
  | { t: 'list-put'; list: string; value: string }
  | { t: 'cache-put'; key: string; value: string; expires: number };

/** Longest window a watchlist keeps hits for (older hits are dropped). */
const MAX_WINDOW_MS = 7 * 24 * 3600_000;

export class MemoryStore {
  protected blacklist = new Map<string, BlacklistEntry>();
  protected watch = new Map<string, number[]>();
  /** domain → local parts ('*' = every address of the domain exists). */
  protected mailboxes = new Map<string, Set<string>>();
  protected lists = new Map<string, Set<string>>();
  protected cache = new Map<string, { value: string; expires: number }>();

  constructor(private readonly localDomains: Set<string> = new Set()) {}

  /** Persistence hook: SqliteStore queues the change for writing. */
  protected changed(_c: StoreChange): void {}

  setLocalDomains(domains: Iterable<string>): void {
    this.localDomains.clear();
    for (const d of domains) this.localDomains.add(d.toLowerCase());
  }

  isLocalDomain(domain: string): boolean {
    return this.localDomains.has(domain.toLowerCase());
  }

  // --- blacklist -------------------------------------------------------------

  blacklistAdd(ip: string, ttlSeconds: number, reason: string, rule: string, now = Date.now()): BlacklistEntry {
    const e = { ip, reason, rule, created: now, expires: now + ttlSeconds * 1000 };
    this.blacklist.set(ip, e);
    this.changed({ t: 'blacklist-put', e });
    return e;
  }

  blacklistGet(ip: string, now = Date.now()): BlacklistEntry | undefined {
    const e = this.blacklist.get(ip);
    if (e && e.expires <= now) {
      this.blacklist.delete(ip);
      this.changed({ t: 'blacklist-del', ip });
      return undefined;
    }
    return e;
  }

  blacklistList(now = Date.now()): BlacklistEntry[] {
    return [...this.blacklist.keys()].map((ip) => this.blacklistGet(ip, now)).filter((e): e is BlacklistEntry => !!e);
  }

  blacklistRemove(ip: string): boolean {
    const had = this.blacklist.delete(ip);
    if (had) this.changed({ t: 'blacklist-del', ip });
    return had;
  }

  blacklistClear(): void {
    this.blacklist.clear();
    this.changed({ t: 'blacklist-clear' });
  }

  // --- watchlists ------------------------------------------------------------

  /** Records one event under `key` and returns how many happened within the window (this one included). */
  watchHit(key: string, windowSeconds: number, now = Date.now()): number {
    const hits = this.recent(key, now).concat(now);
    this.watch.set(key, hits);
    this.changed({ t: 'watch-put', key, hits });
    return hits.filter((t) => t > now - windowSeconds * 1000).length;
  }

  /** How many events happened under `key` within the window. */
  watchCount(key: string, windowSeconds: number, now = Date.now()): number {
    return this.recent(key, now).filter((t) => t > now - windowSeconds * 1000).length;
  }

  private recent(key: string, now: number): number[] {
    return (this.watch.get(key) ?? []).filter((t) => t > now - MAX_WINDOW_MS);
  }

  // --- mailboxes -------------------------------------------------------------

  /**
   * Whether a local mailbox exists. 'unknown' for other domains and for local domains
   * without any mailbox listed (every address counts as valid then). `postmaster@`
   * always exists in a local domain (RFC 5321 §4.5.1).
   */
  mailbox(address: string): MailboxState {
    const at = address.lastIndexOf('@');
    if (at < 0) return address.toLowerCase() === 'postmaster' ? 'exists' : 'unknown';
    const local = address.slice(0, at).toLowerCase();
    const domain = address.slice(at + 1).toLowerCase();
    if (!this.localDomains.has(domain)) return 'unknown';
    if (local === 'postmaster') return 'exists';
    const known = this.mailboxes.get(domain);
    if (!known?.size) return 'unknown';
    return known.has('*') || known.has(local) ? 'exists' : 'missing';
  }

  /** `user@domain`, or `*@domain` for a domain where every address exists. */
  mailboxAdd(address: string, persist = true): void {
    const a = address.toLowerCase();
    const at = a.lastIndexOf('@');
    const domain = a.slice(at + 1);
    let set = this.mailboxes.get(domain);
    if (!set) this.mailboxes.set(domain, (set = new Set()));
    set.add(a.slice(0, at));
    if (persist) this.changed({ t: 'mailbox-put', address: a });
  }

  mailboxRemove(address: string): boolean {
    const a = address.toLowerCase();
    const at = a.lastIndexOf('@');
    const had = this.mailboxes.get(a.slice(at + 1))?.delete(a.slice(0, at)) ?? false;
    if (had) this.changed({ t: 'mailbox-del', address: a });
    return had;
  }

  mailboxList(): string[] {
    return [...this.mailboxes].flatMap(([d, locals]) => [...locals].map((l) => `${l}@${d}`)).sort();
  }

  // --- lists and cache -------------------------------------------------------

  listHas(list: string, value: string): boolean {
    return this.lists.get(list)?.has(value) ?? false;
  }

  listValues(list: string): string[] {
    return [...(this.lists.get(list) ?? [])];
  }

  listAdd(list: string, value: string): void {
    let set = this.lists.get(list);
    if (!set) this.lists.set(list, (set = new Set()));
    if (set.has(value)) return;
    set.add(value);
    this.changed({ t: 'list-put', list, value });
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

  cacheSet(key: string, value: string, ttlSeconds: number, now = Date.now()): void {
    const expires = now + ttlSeconds * 1000;
    this.cache.set(key, { value, expires });
    this.changed({ t: 'cache-put', key, value, expires });
    // Expired entries go when read; a sweep now and then drops those never read again.
    if (++this.cacheSets % 1000 === 0) for (const [k, e] of this.cache) if (e.expires <= now) this.cache.delete(k);
  }

  private cacheSets = 0;

  /** Cache entries held (some may have expired since the last sweep). */
  get cacheSize(): number {
    return this.cache.size;
  }

  async close(): Promise<void> {}
}
