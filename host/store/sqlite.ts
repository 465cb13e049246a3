/**
 * The store persisted in SQLite (WAL) at <dataDir>/portcullis.db: loaded into memory at
 * open, every change written behind in one transaction per tick. A write that fails is
 * logged and counted; sessions never wait for the disk.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import sqlite3 from 'sqlite3';
import type { Logger } from 'pino';
import type { Counters } from '../metrics.js';
import { MemoryStore, type StoreChange } from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS blacklist (ip TEXT PRIMARY KEY, reason TEXT NOT NULL, rule TEXT NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS watchlist (key TEXT PRIMARY KEY, hits TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mailboxes (address TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS lists (list TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (list, value));
CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires INTEGER NOT NULL);
`;

/** The store could not be opened: locked, corrupt, not writable. */
export class StoreError extends Error {
  /** A system-error-like code, so the CLI reports it plainly (exit 71). */
  readonly code = 'ESTORE';
}

function run(db: sqlite3.Database, sql: string, params: unknown[] = []): Promise<void> {
  return new Promise((ok, fail) => db.run(sql, params, (e) => (e ? fail(e) : ok())));
}

function all<T>(db: sqlite3.Database, sql: string): Promise<T[]> {
  return new Promise((ok, fail) => db.all(sql, (e, rows) => (e ? fail(e) : ok(rows as T[]))));
}

function exec(db: sqlite3.Database, sql: string): Promise<void> {
  return new Promise((ok, fail) => db.exec(sql, (e) => (e ? fail(e) : ok())));
}

export class SqliteStore extends MemoryStore {
  private queue: StoreChange[] = [];
  private flushing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;

  private constructor(private readonly db: sqlite3.Database, readonly file: string, private readonly log?: Logger, private readonly counters?: Counters) {
    super();
  }

  static async open(file: string, o: { log?: Logger; counters?: Counters } = {}): Promise<SqliteStore> {
    mkdirSync(dirname(file), { recursive: true });
    const db = await new Promise<sqlite3.Database>((ok, fail) => {
      const d = new sqlite3.Database(file, (e) => (e ? fail(e) : ok(d)));
    }).catch((e: Error) => {
      throw new StoreError(`cannot open the store ${file}: ${e.message}`);
    });
    const store = new SqliteStore(db, file, o.log, o.counters);
    try {
      db.configure('busyTimeout', 2000);
      await exec(db, 'PRAGMA journal_mode = WAL;');
      await exec(db, SCHEMA);
      await store.load();
    } catch (e) {
      db.close();
      const m = (e as Error).message;
      throw new StoreError(`cannot use the store ${file}: ${/SQLITE_BUSY|locked/.test(m) ? 'it is locked by another process' : /NOTADB|not a database|malformed/.test(m) ? 'the file is not a valid SQLite database (corrupt?)' : m}`);
    }
    return store;
  }

  /** Reads every table into memory (at open, and on reload: changes made by the CLI). */
  async load(now = Date.now()): Promise<void> {
    await this.flush(); // our own pending writes first, or re-reading would undo them
    this.blacklist.clear();
    for (const r of await all<{ ip: string; reason: string; rule: string; created: number; expires: number }>(this.db, 'SELECT * FROM blacklist')) {
      if (r.expires > now) this.blacklist.set(r.ip, r);
    }
    this.watch.clear();
    for (const r of await all<{ key: string; hits: string }>(this.db, 'SELECT * FROM watchlist')) this.watch.set(r.key, JSON.parse(r.hits) as number[]);
    this.mailboxes.clear();
    for (const r of await all<{ address: string }>(this.db, 'SELECT address FROM mailboxes')) this.mailboxAdd(r.address, false);
    this.lists.clear();
    for (const r of await all<{ list: string; value: string }>(this.db, 'SELECT * FROM lists')) {
      let set = this.lists.get(r.list);
      if (!set) this.lists.set(r.list, (set = new Set()));
      set.add(r.value);
    }
    this.cache.clear();
    await run(this.db, 'DELETE FROM cache WHERE expires <= ?', [now]);
    for (const r of await all<{ key: string; value: string; expires: number }>(this.db, 'SELECT * FROM cache')) {
      if (r.expires > now) this.cache.set(r.key, { value: r.value, expires: r.expires });
    }
  }

  protected override changed(c: StoreChange): void {
    this.queue.push(c);
    if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), 50);
      this.timer.unref();
    }
  }

  /** Writes the queued changes in one transaction. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.flushing) return this.flushing.then(() => this.flush());
    const batch = this.queue;
    this.queue = [];
    if (!batch.length) return Promise.resolve();
    this.flushing = this.write(batch).finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async write(batch: StoreChange[]): Promise<void> {
    const db = this.db;
    try {
      await run(db, 'BEGIN');
      for (const c of batch) {
        switch (c.t) {
          case 'blacklist-put':
            await run(db, 'INSERT OR REPLACE INTO blacklist VALUES (?, ?, ?, ?, ?)', [c.e.ip, c.e.reason, c.e.rule, c.e.created, c.e.expires]);
            break;
          case 'blacklist-del':
            await run(db, 'DELETE FROM blacklist WHERE ip = ?', [c.ip]);
            break;
          case 'blacklist-clear':
            await run(db, 'DELETE FROM blacklist');
            break;
          case 'watch-put':
            await run(db, 'INSERT OR REPLACE INTO watchlist VALUES (?, ?)', [c.key, JSON.stringify(c.hits)]);
            break;
          case 'mailbox-put':
            await run(db, 'INSERT OR IGNORE INTO mailboxes VALUES (?)', [c.address]);
            break;
          case 'mailbox-del':
            await run(db, 'DELETE FROM mailboxes WHERE address = ?', [c.address]);
            break;
          case 'list-put':
            await run(db, 'INSERT OR IGNORE INTO lists VALUES (?, ?)', [c.list, c.value]);
            break;
          case 'cache-put':
            await run(db, 'INSERT OR REPLACE INTO cache VALUES (?, ?, ?)', [c.key, c.value, c.expires]);
            break;
        }
      }
      await run(db, 'COMMIT');
    } catch (e) {
      await run(db, 'ROLLBACK').catch(() => undefined);
      this.counters?.inc('store_write_failures_total');
      this.log?.error({ err: e, changes: batch.length }, `store write failed (${batch.length} changes lost from disk, kept in memory): ${(e as Error).message}`);
    }
  }

  override async close(): Promise<void> {
    await this.flush();
    await new Promise<void>((ok) => this.db.close(() => ok()));
  }
}
