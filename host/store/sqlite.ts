/**
 * The store's SQLite backend (WAL) at <dataDir>/portcullis.db: read whole at open and on
 * reload, written one transaction per batch. Several writers may share the file (the
 * host and the CLI, or several processes): a watchlist hit is one row, so two writers'
 * hits add up, and a rule's blacklist entry is extended in SQL, never shortened.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import sqlite3 from 'sqlite3';
import { WATCH_MAX_WINDOW_MS, type BlacklistEntry, type Snapshot, type StoreBackend, type StoreChange } from './ports.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS blacklist (ip TEXT PRIMARY KEY, reason TEXT NOT NULL, rule TEXT NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS watch_hits (key TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS watch_hits_at ON watch_hits (at);
CREATE TABLE IF NOT EXISTS mailboxes (address TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS lists (list TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (list, value));
CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires INTEGER NOT NULL);
`;

/** Up to 0.1 the hits of a key were one JSON array, rewritten whole by each writer: one row per hit now. */
const MIGRATE_WATCHLIST = `
INSERT INTO watch_hits (key, at) SELECT w.key, j.value FROM watchlist w, json_each(w.hits) j WHERE json_valid(w.hits) AND j.type = 'integer';
DROP TABLE watchlist;
`;

/** The store could not be opened: locked, corrupt, not writable. */
export class StoreError extends Error {
  /** A system-error-like code, so the CLI reports it plainly (exit 71). */
  readonly code = 'ESTORE';
}

function run(db: sqlite3.Database, sql: string, params: unknown[] = []): Promise<void> {
  return new Promise((ok, fail) => db.run(sql, params, (e) => (e ? fail(e) : ok())));
}

function all<T>(db: sqlite3.Database, sql: string, params: unknown[] = []): Promise<T[]> {
  return new Promise((ok, fail) => db.all(sql, params, (e, rows) => (e ? fail(e) : ok(rows as T[]))));
}

function exec(db: sqlite3.Database, sql: string): Promise<void> {
  return new Promise((ok, fail) => db.exec(sql, (e) => (e ? fail(e) : ok())));
}

const entry = (e: BlacklistEntry): unknown[] => [e.ip, e.reason, e.rule, e.created, e.expires];

/** The statement each change becomes (a missing kind of change does not compile). */
const SQL: { [K in StoreChange['t']]: (c: Extract<StoreChange, { t: K }>) => [string, unknown[]] } = {
  'blacklist-put': (c) => ['INSERT OR REPLACE INTO blacklist VALUES (?, ?, ?, ?, ?)', entry(c.e)],
  // As MemoryStore's extended(): only a later expiry wins, and an entry still live keeps its created.
  'blacklist-extend': (c) => [
    `INSERT INTO blacklist VALUES (?, ?, ?, ?, ?) ON CONFLICT (ip) DO UPDATE SET
       reason = excluded.reason, rule = excluded.rule, expires = excluded.expires,
       created = CASE WHEN blacklist.expires > excluded.created THEN blacklist.created ELSE excluded.created END
     WHERE excluded.expires > blacklist.expires`,
    entry(c.e),
  ],
  'blacklist-del': (c) => ['DELETE FROM blacklist WHERE ip = ?', [c.ip]],
  'blacklist-clear': () => ['DELETE FROM blacklist', []],
  'watch-hit': (c) => ['INSERT INTO watch_hits (key, at) VALUES (?, ?)', [c.key, c.at]],
  'mailbox-put': (c) => ['INSERT OR IGNORE INTO mailboxes VALUES (?)', [c.address]],
  'mailbox-del': (c) => ['DELETE FROM mailboxes WHERE address = ?', [c.address]],
  'list-put': (c) => ['INSERT OR IGNORE INTO lists VALUES (?, ?)', [c.list, c.value]],
  'list-del': (c) => ['DELETE FROM lists WHERE list = ? AND value = ?', [c.list, c.value]],
  'cache-put': (c) => ['INSERT OR REPLACE INTO cache VALUES (?, ?, ?)', [c.key, c.value, c.expires]],
};

function statement(c: StoreChange): [string, unknown[]] {
  return (SQL[c.t] as (c: StoreChange) => [string, unknown[]])(c);
}

/** Why the file cannot be used, in the admin's words. */
function why(e: Error): string {
  const m = e.message;
  if (/SQLITE_BUSY|locked/.test(m)) return 'it is locked by another process';
  if (/NOTADB|not a database|malformed/.test(m)) return 'the file is not a valid SQLite database (corrupt?)';
  return m;
}

export class SqliteBackend implements StoreBackend {
  private constructor(private readonly db: sqlite3.Database, readonly file: string) {}

  /** Opens (creating) the database, brings an older schema up to date; StoreError when it cannot. */
  static async open(file: string): Promise<SqliteBackend> {
    mkdirSync(dirname(file), { recursive: true });
    const db = await new Promise<sqlite3.Database>((ok, fail) => {
      const d = new sqlite3.Database(file, (e) => (e ? fail(e) : ok(d)));
    }).catch((e: Error) => {
      throw new StoreError(`cannot open the store ${file}: ${e.message}`);
    });
    try {
      db.configure('busyTimeout', 2000);
      await exec(db, 'PRAGMA journal_mode = WAL;');
      await transaction(db, async () => {
        await exec(db, SCHEMA);
        if ((await all(db, "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'watchlist'")).length) await exec(db, MIGRATE_WATCHLIST);
      });
    } catch (e) {
      db.close();
      throw new StoreError(`cannot use the store ${file}: ${why(e as Error)}`);
    }
    return new SqliteBackend(db, file);
  }

  /** What is live at `now`; expired entries and hits past the longest window are deleted first. */
  async load(now: number): Promise<Snapshot> {
    const db = this.db;
    await transaction(db, async () => {
      await run(db, 'DELETE FROM blacklist WHERE expires <= ?', [now]);
      await run(db, 'DELETE FROM watch_hits WHERE at <= ?', [now - WATCH_MAX_WINDOW_MS]);
      await run(db, 'DELETE FROM cache WHERE expires <= ?', [now]);
    });
    const watch = new Map<string, number[]>();
    for (const r of await all<{ key: string; at: number }>(db, 'SELECT key, at FROM watch_hits')) {
      const hits = watch.get(r.key);
      if (hits) hits.push(r.at);
      else watch.set(r.key, [r.at]);
    }
    return {
      blacklist: await all<BlacklistEntry>(db, 'SELECT ip, reason, rule, created, expires FROM blacklist'),
      watch: [...watch].map(([key, hits]) => ({ key, hits })),
      mailboxes: (await all<{ address: string }>(db, 'SELECT address FROM mailboxes')).map((r) => r.address),
      // In the order added (rowid), not the primary key's: the access map's order is its precedence.
      lists: await all<{ list: string; value: string }>(db, 'SELECT list, value FROM lists ORDER BY rowid'),
      cache: await all<{ key: string; value: string; expires: number }>(db, 'SELECT key, value, expires FROM cache'),
    };
  }

  /** One transaction; hits older than the longest window before the batch's latest are pruned with it. */
  async write(batch: StoreChange[]): Promise<void> {
    const db = this.db;
    await transaction(db, async () => {
      let latestHit = 0;
      for (const c of batch) {
        await run(db, ...statement(c));
        if (c.t === 'watch-hit') latestHit = Math.max(latestHit, c.at);
      }
      if (latestHit) await run(db, 'DELETE FROM watch_hits WHERE at <= ?', [latestHit - WATCH_MAX_WINDOW_MS]);
    });
  }

  close(): Promise<void> {
    return new Promise((ok) => this.db.close(() => ok()));
  }
}

/** Runs `body` in a write transaction (taken at BEGIN, so a busy database waits its timeout instead of failing midway). */
async function transaction(db: sqlite3.Database, body: () => Promise<void>): Promise<void> {
  await run(db, 'BEGIN IMMEDIATE');
  try {
    await body();
    await run(db, 'COMMIT');
  } catch (e) {
    await run(db, 'ROLLBACK').catch(() => undefined);
    throw e;
  }
}
