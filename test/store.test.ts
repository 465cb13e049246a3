/**
 * The store port: the in-memory front over a backend (SQLite files in a temp dir, or
 * fakes), extend-only blacklisting, watchlist hits that merge across writers, the
 * migration from the old watchlist table, failed writes, changes reported by a backend,
 * and the admin's CLI changes reaching a running host.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import sqlite3 from 'sqlite3';
import { blacklistCommand } from '../host/cli/store.js';
import { Metrics } from '../host/metrics.js';
import { storeAccess } from '../host/store/access.js';
import type { Snapshot, StoreBackend, StoreChange } from '../host/store/ports.js';
import { SqliteBackend, StoreError } from '../host/store/sqlite.js';
import { MemoryStore, NullBackend } from '../host/store/store.js';
import { eventually, startTestHost, tempDir } from './helpers.js';

const MIN = 60_000;
const HOUR = 3600_000;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 0, 5, 10, 0, 0);

const dir = tempDir('portcullis-store-');
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const dbFile = (): string => join(dir, `store-${++files}.db`);

const openSqlite = async (file: string, now = Date.now()): Promise<MemoryStore> => MemoryStore.open(await SqliteBackend.open(file), {}, now);

function sql<T>(file: string, statements: string, query?: string): Promise<T[]> {
  return new Promise((ok, fail) => {
    const db = new sqlite3.Database(file, (e) => {
      if (e) return fail(e);
      db.exec(statements, (e1) => {
        if (e1 || !query) return db.close(() => (e1 ? fail(e1) : ok([])));
        db.all(query, (e2, rows) => db.close(() => (e2 ? fail(e2) : ok(rows as T[]))));
      });
    });
  });
}

describe('blacklist: a rule only ever extends an entry', () => {
  it('a 3-hour entry is not shortened by a 60-minute one', () => {
    const s = new MemoryStore();
    s.blacklistExtend('192.0.2.1', 3 * 3600, 'auth brute force', 'auth-brute-force', T0);
    const e = s.blacklistExtend('192.0.2.1', 3600, 'connect flood', 'connect-flood', T0 + MIN);
    assert.deepEqual(e, { ip: '192.0.2.1', reason: 'auth brute force', rule: 'auth-brute-force', created: T0, expires: T0 + 3 * HOUR });
    assert.deepEqual(s.blacklistGet('192.0.2.1', T0 + MIN), e);
  });

  it('a 1-minute entry is extended by a 60-minute one, keeping when it was created', () => {
    const s = new MemoryStore();
    s.blacklistExtend('192.0.2.1', 60, 'first', 'a', T0);
    const e = s.blacklistExtend('192.0.2.1', 3600, 'second', 'b', T0 + 30_000);
    assert.deepEqual(e, { ip: '192.0.2.1', reason: 'second', rule: 'b', created: T0, expires: T0 + 30_000 + HOUR });
    assert.deepEqual(s.blacklistGet('192.0.2.1', T0 + 2 * MIN), e);
  });

  it('an expired entry is replaced as new', () => {
    const s = new MemoryStore();
    s.blacklistExtend('192.0.2.1', 60, 'first', 'a', T0);
    assert.equal(s.blacklistExtend('192.0.2.1', 60, 'again', 'a', T0 + 2 * MIN).created, T0 + 2 * MIN);
  });

  it('the administrator sets exactly what was asked, shorter or not', () => {
    const s = new MemoryStore();
    s.blacklistExtend('192.0.2.1', 3 * 3600, 'rule', 'r', T0);
    s.blacklistAdd('192.0.2.1', 600, 'admin says', 'admin', T0);
    assert.equal(s.blacklistGet('192.0.2.1', T0)?.expires, T0 + 10 * MIN);
  });

  it('in SQLite too: a writer that has not seen a longer entry cannot shorten it', async () => {
    const file = dbFile();
    const a = await openSqlite(file, T0);
    const b = await openSqlite(file, T0);
    a.blacklistExtend('192.0.2.1', 3 * 3600, 'long', 'a', T0);
    await a.flush();
    b.blacklistExtend('192.0.2.1', 3600, 'short', 'b', T0 + MIN); // b's memory has no entry yet
    await Promise.all([a.close(), b.close()]);
    const c = await openSqlite(file, T0 + 2 * MIN);
    assert.deepEqual(c.blacklistGet('192.0.2.1', T0 + 2 * MIN), { ip: '192.0.2.1', reason: 'long', rule: 'a', created: T0, expires: T0 + 3 * HOUR });
    await c.close();
  });
});

describe('well-behaved clients', () => {
  it('a mark lasts its TTL and is only ever extended, like a rule\'s blacklist entry', () => {
    const s = new MemoryStore();
    assert.equal(s.wellBehaved('192.0.2.1', T0), false);
    s.markWellBehaved('192.0.2.1', 30 * 86400, 'greylist', T0);
    s.markWellBehaved('192.0.2.1', 3600, 'other', T0 + MIN); // shorter: kept as it was
    assert.equal(s.wellBehaved('192.0.2.1', T0 + 29 * DAY), true);
    assert.equal(s.wellBehaved('192.0.2.1', T0 + 30 * DAY), false);
    assert.equal(s.wellBehaved('192.0.2.2', T0), false, 'per address');
  });

  it('rules cannot reach a mark through remember/recall (their keys live under rule:)', () => {
    const s = new MemoryStore();
    const call = storeAccess(s);
    call('remember', ['well-behaved:192.0.2.1', 'x', 3600], T0);
    assert.equal(s.wellBehaved('192.0.2.1', T0), false);
    s.markWellBehaved('192.0.2.3', 3600, 'greylist', T0);
    assert.equal(call('recall', ['well-behaved:192.0.2.3'], T0), null);
  });

  it('is kept in SQLite: a reopened store (or another host on the file) knows the client', async () => {
    const file = dbFile();
    const a = await openSqlite(file, T0);
    a.markWellBehaved('192.0.2.1', 3600, 'greylist', T0);
    await a.close();
    const b = await openSqlite(file, T0 + MIN);
    assert.equal(b.wellBehaved('192.0.2.1', T0 + MIN), true);
    assert.equal(b.wellBehaved('192.0.2.1', T0 + 2 * HOUR), false);
    await b.close();
  });
});

describe('watchlists in SQLite', () => {
  it('hits from two stores on the same file merge: both counts survive a reopen', async () => {
    const file = dbFile();
    const now = Date.now();
    const a = await openSqlite(file, now);
    const b = await openSqlite(file, now);
    for (let i = 0; i < 3; i++) a.watchHit('auth-fail:192.0.2.7', 120, now + i);
    for (let i = 0; i < 2; i++) b.watchHit('auth-fail:192.0.2.7', 120, now + 10 + i);
    assert.equal(a.watchCount('auth-fail:192.0.2.7', 120, now + 20), 3);
    await Promise.all([a.close(), b.close()]);
    const c = await openSqlite(file, now + 20);
    assert.equal(c.watchCount('auth-fail:192.0.2.7', 120, now + 20), 5);
    await c.close();
  });

  it('hits older than the longest window (7 days) are pruned on write and load', async () => {
    const file = dbFile();
    const s = await openSqlite(file, T0);
    s.watchHit('k', 3600, T0);
    s.watchHit('k', 3600, T0 + 8 * DAY);
    await s.close();
    assert.deepEqual(await sql(file, '', 'SELECT at FROM watch_hits'), [{ at: T0 + 8 * DAY }]);
  });

  it('a data dir with the old watchlist table (one JSON array per key) keeps its counts', async () => {
    const file = dbFile();
    const now = Date.now();
    // The schema up to 0.1, written as the old SqliteStore did.
    await sql(file, `PRAGMA journal_mode = WAL;
      CREATE TABLE blacklist (ip TEXT PRIMARY KEY, reason TEXT NOT NULL, rule TEXT NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL);
      CREATE TABLE watchlist (key TEXT PRIMARY KEY, hits TEXT NOT NULL);
      CREATE TABLE mailboxes (address TEXT PRIMARY KEY);
      CREATE TABLE lists (list TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (list, value));
      CREATE TABLE cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires INTEGER NOT NULL);
      INSERT INTO watchlist VALUES ('connect-flood:192.0.2.9', '${JSON.stringify([now - 8 * DAY, now - 2 * MIN, now - MIN])}');
      INSERT INTO watchlist VALUES ('auth-fail:192.0.2.9', '${JSON.stringify([now - 30_000])}');
      INSERT INTO blacklist VALUES ('192.0.2.9', 'kept', 'admin', ${now}, ${now + HOUR});`);
    const s = await openSqlite(file, now);
    assert.equal(s.watchCount('connect-flood:192.0.2.9', 3600, now), 2);
    assert.equal(s.watchHit('auth-fail:192.0.2.9', 3600, now), 2);
    assert.equal(s.blacklistGet('192.0.2.9', now)?.reason, 'kept');
    await s.close();
    assert.deepEqual(await sql(file, '', "SELECT name FROM sqlite_master WHERE name = 'watchlist'"), []);
    const again = await openSqlite(file, now);
    assert.equal(again.watchCount('connect-flood:192.0.2.9', 3600, now), 2);
    assert.equal(again.watchCount('auth-fail:192.0.2.9', 3600, now), 2);
    await again.close();
  });

  it('a file that is not a database is refused with StoreError', async () => {
    const file = dbFile();
    writeFileSync(file, 'this is not a database '.repeat(100));
    await assert.rejects(SqliteBackend.open(file), (e: Error) => e instanceof StoreError && /: the file is not a valid SQLite database \(corrupt\?\)$/.test(e.message));
  });
});

describe('named lists in SQLite', () => {
  it('keep the order values were added in (the access map\'s precedence), and a removed value stays gone after a reopen', async () => {
    const file = dbFile();
    const s = await openSqlite(file);
    for (const v of ['To:b@localhost OK', 'Connect:192.0.2.9 REJECT', 'From:a.example DISCARD']) s.listAdd('access', v);
    s.listAdd('spam-subjects', 'WIN');
    assert.equal(s.listRemove('access', 'Connect:192.0.2.9 REJECT'), true);
    assert.equal(s.listRemove('access', 'Connect:192.0.2.9 REJECT'), false, 'already gone');
    assert.equal(s.listRemove('access', 'WIN'), false, 'another list\'s value');
    s.listAdd('access', 'Connect:192.0.2.9 REJECT');
    await s.close();
    const again = await openSqlite(file);
    assert.deepEqual(again.listValues('access'), ['To:b@localhost OK', 'From:a.example DISCARD', 'Connect:192.0.2.9 REJECT']);
    assert.deepEqual(again.listValues('spam-subjects'), ['WIN']);
    again.listRemove('access', 'To:b@localhost OK');
    await again.close();
    const last = await openSqlite(file);
    assert.deepEqual(last.listValues('access'), ['From:a.example DISCARD', 'Connect:192.0.2.9 REJECT']);
    await last.close();
  });
});

/** A backend that refuses every write. */
class FailingBackend extends NullBackend {
  override async write(): Promise<void> {
    throw new Error('disk I/O error');
  }
}

/** A backend another writer reports changes through, recording what it is asked to write. */
class SharedBackend extends NullBackend {
  written: StoreChange[] = [];
  private listeners = new Set<(c: StoreChange[]) => void>();
  override async write(batch: StoreChange[]): Promise<void> {
    this.written.push(...batch);
  }
  subscribe(onChange: (c: StoreChange[]) => void): () => void {
    this.listeners.add(onChange);
    return () => this.listeners.delete(onChange);
  }
  /** What another process did. */
  elsewhere(...changes: StoreChange[]): void {
    for (const l of this.listeners) l(changes);
  }
}

describe('the front over a backend', () => {
  it('a failed write is logged and counted, never thrown, and memory keeps the change', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'error' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }));
    const metrics = new Metrics();
    const s = new MemoryStore(new FailingBackend(), { log, metrics });
    s.blacklistExtend('192.0.2.3', 600, 'spam', 'r', T0);
    assert.equal(s.watchHit('k', 60, T0), 1);
    await s.flush();
    assert.equal(await metrics.get('store_write_failures_total'), 1);
    assert.match(JSON.parse(lines[0]!).msg, /^store write failed \(2 changes lost from disk, kept in memory\): disk I\/O error$/);
    assert.equal(s.blacklistGet('192.0.2.3', T0)?.reason, 'spam');
    assert.equal(s.watchCount('k', 60, T0), 1);
    assert.equal(s.lastWriteError?.message, 'disk I/O error');
  });

  it('applies what the backend reports from elsewhere, without writing it back', async () => {
    const backend = new SharedBackend();
    const s = await MemoryStore.open(backend, {}, T0);
    s.watchHit('k', 60, T0);
    backend.elsewhere(
      { t: 'watch-hit', key: 'k', at: T0 + 1 },
      { t: 'blacklist-extend', e: { ip: '192.0.2.4', reason: 'flood', rule: 'connect-flood', created: T0, expires: T0 + HOUR } },
      { t: 'list-put', list: 'spam-subjects', value: 'WIN' },
    );
    assert.equal(s.watchCount('k', 60, T0 + 2), 2);
    assert.equal(s.blacklistGet('192.0.2.4', T0)?.rule, 'connect-flood');
    assert.deepEqual(s.listValues('spam-subjects'), ['WIN']);
    await s.close();
    assert.deepEqual(backend.written, [{ t: 'watch-hit', key: 'k', at: T0 }]);
  });

  it('a change made while a reload reads the backend is kept, and written once', async () => {
    let release!: () => void;
    const backend = new SharedBackend();
    const s = await MemoryStore.open(backend, {}, T0);
    backend.load = () => new Promise<Snapshot>((ok) => (release = () => ok({ blacklist: [], watch: [{ key: 'k', hits: [T0 - 1] }], mailboxes: [], lists: [], cache: [] })));
    const reloading = s.reload(T0);
    await eventually('the reload is reading', () => release !== undefined);
    s.watchHit('k', 60, T0);
    release();
    await reloading;
    assert.equal(s.watchCount('k', 60, T0), 2);
    await s.flush();
    assert.deepEqual(backend.written, [{ t: 'watch-hit', key: 'k', at: T0 }]);
  });

  it('the rule store maps each operation and checks its arguments', () => {
    const s = new MemoryStore();
    const call = storeAccess(s);
    assert.equal(call('hit', ['k', 60], T0), 1);
    assert.equal(call('count', ['k', 60], T0), 1);
    assert.equal(call('blacklisted', ['192.0.2.1'], T0), null);
    assert.equal(call('listAdd', ['l', 'v'], T0), null);
    assert.equal(call('listHas', ['l', 'v'], T0), true);
    assert.deepEqual(call('listValues', ['l'], T0), ['v']);
    assert.throws(() => call('hit', ['', 60], T0), /^TypeError: key must be a non-empty string of at most 512 characters$/);
    assert.throws(() => call('count', ['k', 0], T0), /^TypeError: windowSeconds must be a number from 1 to 604800$/);
    // A window longer than the store keeps hits is refused, not silently cut to 7 days.
    assert.throws(() => call('hit', ['k', 8 * 86400], T0), /^TypeError: windowSeconds must be a number from 1 to 604800$/);
    // remember / recall: a value with a TTL, in the rule's own key space.
    assert.equal(call('remember', ['grey-pass:t', 'since 1', 3600], T0), null);
    assert.equal(call('recall', ['grey-pass:t'], T0 + 3599_000), 'since 1');
    assert.equal(call('recall', ['grey-pass:t'], T0 + 3600_001), null);
    assert.equal(call('recall', ['dns:anything'], T0), null);
    assert.throws(() => call('remember', ['k', 'v', 31 * 86400], T0), /^TypeError: ttlSeconds must be a number from 1 to 2592000$/);
    assert.throws(() => call('toString', [], T0), /^TypeError: unknown store operation "toString"$/);
  });
});

describe('the admin CLI and a running host', () => {
  it('portcullis blacklist add and remove reach the running host at once, through its admin API (no reload)', async () => {
    const h = await startTestHost();
    const out = { write: () => true };
    try {
      assert.equal(await blacklistCommand(['add', '198.51.100.8', '--ttl', '600', '--reason', 'by hand', '--config', h.configFile], out, out), 0);
      assert.equal(h.host.store.blacklistGet('198.51.100.8')?.reason, 'by hand');
      assert.equal(await blacklistCommand(['remove', '198.51.100.8', '--config', h.configFile], out, out), 0);
      assert.equal(h.host.store.blacklistGet('198.51.100.8'), undefined);
      assert.equal(h.host.status().reloads.ok, 0, 'no reload was needed');
    } finally {
      await h.close();
    }
  });

  it('with no admin listener, portcullis blacklist add and remove reach the running host when it reloads (SIGHUP)', async () => {
    const h = await startTestHost({ config: { admin: { listen: null } } });
    // As `portcullis start` does: the CLI finds this process through status.json.
    let reloadOnHup = true;
    const onHup = () => void (reloadOnHup && h.host.reload('SIGHUP'));
    process.on('SIGHUP', onHup);
    const out = { write: () => true };
    try {
      assert.equal(await blacklistCommand(['add', '198.51.100.9', '--ttl', '600', '--reason', 'by hand', '--config', h.configFile], out, out), 0);
      await eventually('the host sees the entry', () => h.host.store.blacklistGet('198.51.100.9')?.reason === 'by hand');
      assert.equal(await blacklistCommand(['remove', '198.51.100.9', '--config', h.configFile], out, out), 0);
      await eventually('the host forgot it', () => h.host.store.blacklistGet('198.51.100.9') === undefined);
      // Without the signal, reload() alone re-reads what the CLI wrote.
      reloadOnHup = false;
      assert.equal(await blacklistCommand(['add', '198.51.100.10', '--config', h.configFile], out, out), 0);
      assert.equal(h.host.store.blacklistGet('198.51.100.10'), undefined);
      await h.host.reload('test');
      assert.equal(h.host.store.blacklistGet('198.51.100.10')?.rule, 'admin');
    } finally {
      process.off('SIGHUP', onHup);
      await h.close();
    }
  });
});
