/**
 * The store as its consumers see it, and the port a persistent backend plugs into.
 *
 * Consumers get the narrowest interface they need: the SMTP session a `BlacklistStore`
 * and a `MailboxDirectory`, the DNS checker a `TtlCache`, the rules (through access.ts)
 * watchlists, lists and blacklist lookups. One in-memory front (`MemoryStore`,
 * store.ts) implements them all and serves every read from memory; a `StoreBackend`
 * (SQLite, the embedded default; Redis, shared by several MX hosts) loads its snapshot
 * and receives its changes, written behind.
 */

import { RULE_LIMITS, type BlacklistEntry as RuleBlacklistEntry, type MailboxState } from '../../sdk/index.js';

export type { MailboxState };

/** An entry of the internal short-term blacklist (MercuryS/SmtpEvt): what rules see of it, and its address and start. */
export interface BlacklistEntry extends RuleBlacklistEntry {
  ip: string;
  created: number;
}

/** What rules see of an entry (the connect event, `ctx.store.blacklisted`): reason, rule, expiry. */
export function ruleView(e: BlacklistEntry): RuleBlacklistEntry {
  return { reason: e.reason, rule: e.rule, expires: e.expires };
}

/** Longest window a watchlist keeps hits for: older hits are pruned in memory and by backends. */
export const WATCH_MAX_WINDOW_MS = RULE_LIMITS.maxWatchSeconds * 1000;

/** The client blacklist: checked by the SMTP session, written by rules' effects and the admin. */
export interface BlacklistStore {
  /** The live entry for `ip`, or undefined (an expired entry counts as none). */
  blacklistGet(ip: string, now?: number): BlacklistEntry | undefined;
  /**
   * A rule's blacklist effect: an entry is only ever extended, never shortened. A live
   * entry that expires later than `now + ttlSeconds` is kept as it is; otherwise the
   * expiry, reason and rule are replaced and a live entry keeps its `created`.
   * Returns the entry in force afterwards.
   */
  blacklistExtend(ip: string, ttlSeconds: number, reason: string, rule: string, now?: number): BlacklistEntry;
  /** The administrator's entry: exactly `now + ttlSeconds`, whatever was there before. */
  blacklistAdd(ip: string, ttlSeconds: number, reason: string, rule: string, now?: number): BlacklistEntry;
  /** Removes the entry; false when there was none. */
  blacklistRemove(ip: string): boolean;
  /** The live entries. */
  blacklistList(now?: number): BlacklistEntry[];
  blacklistClear(): void;
}

/**
 * The TTL cache's keys, one prefix per owner, so no owner can read or overwrite another's
 * entries: a rule's `remember` key always goes under `rule:` (store/access.ts), so rules
 * can neither see the DNS answers nor mark a client well-behaved through the store.
 */
export const CACHE_PREFIX = {
  /** The DNS checker's answers: `dns:<kind>:<zone>:<label>`, `dns:mx:<domain>`. */
  dns: 'dns:',
  /** Call-ahead answers: `callahead:rcpt:<address>`, `callahead:all:<host:port>:<domain>` (accepts all). */
  callahead: 'callahead:',
  /** What rules `remember`: `rule:<their key>`. */
  rule: 'rule:',
  /** Well-behaved clients (`ctx.markWellBehaved`): `well-behaved:<ip>` → the rule that marked it. */
  wellBehaved: 'well-behaved:',
  /** Route statistics (smtpf's, 31 days): `routes:<day>|<recipient domain>` → its counts as JSON. */
  routes: 'routes:',
} as const;

/** Text values with a TTL: the DNS checker's cached answers, what rules `remember`, well-behaved marks (`CACHE_PREFIX`). */
export interface TtlCache {
  cacheGet(key: string, now?: number): string | undefined;
  cacheSet(key: string, value: string, ttlSeconds: number, now?: number): void;
  /** The live entries whose key starts with `prefix` (a walk over the whole cache: for rare reads, such as at start). */
  cacheScan(prefix: string, now?: number): [key: string, value: string][];
  /** Entries held (some may have expired since the last sweep), for the `store_cache_entries` gauge. */
  readonly cacheSize: number;
}

/**
 * Clients that proved they are real MTAs (`ctx.markWellBehaved`, e.g. a greylisting retry
 * that passed: smtpf 2.0's well-behaved hosts, postscreen's cache of passed clients): the
 * connection skips the greet pause and the session tells rules (`client.wellBehaved`).
 * Kept in the TTL cache, so it persists and is shared like the rest of the store.
 */
export interface WellBehavedStore {
  /** True while `ip` carries a live mark. */
  wellBehaved(ip: string, now?: number): boolean;
  /** Marks `ip` for `ttlSeconds`; a live mark that lasts longer is kept (marks are only ever extended). */
  markWellBehaved(ip: string, ttlSeconds: number, rule: string, now?: number): void;
}

/** Windowed event counters (`ctx.store.hit` / `count`). */
export interface WatchlistStore {
  /** Records one event under `key` and returns how many happened within the window (this one included). */
  watchHit(key: string, windowSeconds: number, now?: number): number;
  /** How many events happened under `key` within the window. */
  watchCount(key: string, windowSeconds: number, now?: number): number;
}

/** Named sets of strings (e.g. learned spam subjects, the access map's lines), in the order they were added. */
export interface ListStore {
  listHas(list: string, value: string): boolean;
  listValues(list: string): string[];
  listAdd(list: string, value: string): void;
  /** Removes the value; false when the list did not hold it. The administrator's (`portcullis access remove`): rules only add. */
  listRemove(list: string, value: string): boolean;
}

/** Which domains are local and which of their mailboxes exist (config and `portcullis mailbox`). */
export interface MailboxDirectory {
  /**
   * Whether a local mailbox exists. 'unknown' for other domains and for local domains
   * without any mailbox listed (every address counts as valid then). `postmaster@`
   * always exists in a local domain (RFC 5321 §4.5.1).
   */
  mailbox(address: string): MailboxState;
  setLocalDomains(domains: Iterable<string>): void;
  /** `user@domain`, or `*@domain` for a domain where every address exists; `persist` false for the config's own. */
  mailboxAdd(address: string, persist?: boolean): void;
  mailboxRemove(address: string): boolean;
  mailboxList(): string[];
}

/**
 * One change, as the front hands it to a backend and a backend reports it from elsewhere.
 * Every change can be applied on top of another writer's: a watchlist hit is one hit
 * appended, never the whole array, and `blacklist-extend` never shortens an entry.
 */
export type StoreChange =
  /** The admin's entry: replaces whatever is there. */
  | { t: 'blacklist-put'; e: BlacklistEntry }
  /** A rule's entry: applied only where it expires later; a live entry keeps its `created`. */
  | { t: 'blacklist-extend'; e: BlacklistEntry }
  | { t: 'blacklist-del'; ip: string }
  | { t: 'blacklist-clear' }
  | { t: 'watch-hit'; key: string; at: number }
  | { t: 'mailbox-put'; address: string }
  | { t: 'mailbox-del'; address: string }
  | { t: 'list-put'; list: string; value: string }
  | { t: 'list-del'; list: string; value: string }
  | { t: 'cache-put'; key: string; value: string; expires: number };

/** Everything a backend holds that is still live at the time of `load`. */
export interface Snapshot {
  blacklist: BlacklistEntry[];
  /** Hits per key within WATCH_MAX_WINDOW_MS. */
  watch: { key: string; hits: number[] }[];
  mailboxes: string[];
  lists: { list: string; value: string }[];
  cache: { key: string; value: string; expires: number }[];
}

/** Where the store persists: loaded at open and on reload, written behind in batches. */
export interface StoreBackend {
  /** What is live at `now` (the front's clock). */
  load(now: number): Promise<Snapshot>;
  /** Writes one batch, all or nothing; a rejection is logged and counted by the front. */
  write(batch: StoreChange[]): Promise<void>;
  /** Changes other writers made (other processes, other hosts); returns the unsubscribe. */
  subscribe?(onChange: (changes: StoreChange[]) => void): () => void;
  /**
   * Called when the front should load the snapshot again: a shared backend that was
   * unreachable is back (and has replayed what it held), so changes other writers made
   * meanwhile arrive. `lost`: it came back without its data (Redis restarted without
   * persistence): the front writes back what it holds first. Returns the unsubscribe.
   */
  onResync?(resync: (r: { lost: boolean }) => void): () => void;
  /** False while a shared backend is unreachable (the front serves from memory then). Absent: always up. */
  readonly up?: boolean;
  close(): Promise<void>;
}

/**
 * The backend cannot be reached now (Redis down or not answering). `resyncs` (the host's
 * backend): the front keeps what it holds in memory rather than failing, and the backend
 * asks for a resync once back. Otherwise (the CLI's) it is an error to report.
 */
export class BackendUnavailable extends Error {
  readonly code = 'ESTORE';
  constructor(message: string, readonly resyncs = false) {
    super(message);
  }
}
