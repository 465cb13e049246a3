/**
 * Traffic statistics (issue 16: smtpf's STAT WINDOW and STAT HOURLY, and route statistics
 * per recipient domain and day), with a fake clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TrafficStats } from '../host/smtp/traffic.js';
import { SqliteBackend } from '../host/store/sqlite.js';
import { MemoryStore } from '../host/store/store.js';
import { tempDir } from './helpers.js';
import { join } from 'node:path';
import type { TransactionSummary } from '../host/smtp/transaction-log.js';

const T0 = Date.parse('2026-12-01T10:00:30Z');

function tx(over: Partial<TransactionSummary>): TransactionSummary {
  return { session: 's', ip: '192.0.2.1', ptr: null, helo: 'x', user: null, tx: 'accepted', from: 'a@example.org', rcpts: [{ to: 'u@localhost', reply: '250' }], size: 2048, reply: '250 2.0.0 Ok', rule: null, ms: {}, ...over };
}

describe('traffic statistics', () => {
  it('top refused clients: refusals per address over the last 60 minutes, most first', () => {
    let now = T0;
    const s = new TrafficStats(() => now);
    s.transaction(tx({ ip: '192.0.2.9', tx: 'refused', rule: 'r' }));
    now += 30 * 60_000;
    s.transaction(tx({ ip: '192.0.2.8', tx: 'refused', rule: 'r', rcpts: [{ to: 'a@localhost', reply: '550 5.1.1 No', rule: 'r' }] }));
    assert.deepEqual(s.topRefused(), [{ ip: '192.0.2.8', refusals: 2 }, { ip: '192.0.2.9', refusals: 1 }]);
    now += 31 * 60_000;
    assert.deepEqual(s.topRefused(), [{ ip: '192.0.2.8', refusals: 2 }]);
  });

  it('STAT WINDOW: 60 one-minute slots, oldest first; each transaction counted in its minute', () => {
    let now = T0;
    const s = new TrafficStats(() => now);
    s.connection();
    s.transaction(tx({}));
    now += 60_000;
    s.connection();
    s.transaction(tx({ tx: 'refused', rule: 'picky', rcpts: [{ to: 'u@localhost', reply: '250' }, { to: 'x@localhost', reply: '550 5.1.1 No' }], size: 10 }));
    const w = s.window();
    assert.equal(w.length, 60);
    assert.deepEqual(w.at(-2), { start: '2026-12-01T10:00:00.000Z', connections: 1, accepted: 1, refused: 0, abandoned: 0, rcptAccepted: 1, rcptRefused: 0, bytes: 2048, refusedBy: {}, refusedIp: {} });
    assert.deepEqual(w.at(-1), {
      start: '2026-12-01T10:01:00.000Z', connections: 1, accepted: 0, refused: 1, abandoned: 0, rcptAccepted: 1, rcptRefused: 1, bytes: 0,
      refusedBy: { host: 1, picky: 1 }, refusedIp: { '192.0.2.1': 2 },
    });
  });

  it('STAT HOURLY: 24 slots; a minute older than an hour has left the window but not its hour', () => {
    let now = T0;
    const s = new TrafficStats(() => now);
    s.transaction(tx({}));
    now += 61 * 60_000;
    s.transaction(tx({ tx: 'abandoned', size: null }));
    assert.equal(s.window().reduce((n, x) => n + x.accepted, 0), 0);
    const h = s.hourly();
    assert.equal(h.length, 24);
    assert.deepEqual([h.at(-2)!.accepted, h.at(-1)!.abandoned], [1, 1]);
  });

  it('routes: per recipient domain and day, accepted with kilobytes and refused; 31 days kept', () => {
    let now = T0;
    const s = new TrafficStats(() => now);
    s.transaction(tx({ rcpts: [{ to: 'u@localhost', reply: '250' }, { to: 'v@LOCALHOST', reply: '250' }, { to: 'w@example.net', reply: '550 5.1.1 No' }], size: 3000 }));
    s.transaction(tx({ tx: 'refused', rcpts: [{ to: 'u@localhost', reply: '250' }] }));
    s.transaction(tx({ tx: 'abandoned', rcpts: [{ to: 'u@localhost', reply: '250' }], size: null }));
    assert.deepEqual(s.routeDays(), [
      { day: '2026-12-01', domain: 'example.net', accepted: 0, refused: 1, kb: 0 },
      { day: '2026-12-01', domain: 'localhost', accepted: 1, refused: 1, kb: 3 },
    ]);
    now += 31 * 86_400_000;
    s.transaction(tx({}));
    assert.deepEqual(s.routeDays().map((r) => r.day), ['2027-01-01']);
  });

  it('routes are kept in the store: a host started again on the same database still has them', async () => {
    const file = join(tempDir(), 'portcullis.db');
    const first = await MemoryStore.open(await SqliteBackend.open(file));
    const stats = new TrafficStats(() => T0, first);
    stats.transaction(tx({ rcpts: [{ to: 'u@example.org', reply: '250' }], size: 5000 }));
    stats.flush(); // the host does every few seconds and at close
    await first.close();
    const again = await MemoryStore.open(await SqliteBackend.open(file));
    try {
      assert.deepEqual(new TrafficStats(() => T0 + 3600_000, again).routeDays(), [{ day: '2026-12-01', domain: 'example.org', accepted: 1, refused: 0, kb: 5 }]);
    } finally {
      await again.close();
    }
  });
  it('routes with several writers on one store (cluster workers, hosts on Redis): each keeps its own totals, the view sums them', async () => {
    const store = await MemoryStore.open(await SqliteBackend.open(join(tempDir(), 'portcullis.db')));
    try {
      const one = new TrafficStats(() => T0, store);
      const two = new TrafficStats(() => T0, store, 'w2');
      one.transaction(tx({ rcpts: [{ to: 'u@example.org', reply: '250' }], size: 1024 }));
      two.transaction(tx({ rcpts: [{ to: 'v@example.org', reply: '250' }], size: 1024 }));
      two.transaction(tx({ rcpts: [{ to: 'w@example.org', reply: '550 5.1.1 No' }] }));
      one.flush();
      two.flush();
      const both = [{ day: '2026-12-01', domain: 'example.org', accepted: 2, refused: 1, kb: 2 }];
      assert.deepEqual(one.routeDays(), both);
      assert.deepEqual(two.routeDays(), both);
      // Worker 2 started again goes on from its own totals, not the sum.
      const again = new TrafficStats(() => T0, store, 'w2');
      again.transaction(tx({ rcpts: [{ to: 'v@example.org', reply: '250' }], size: 1024 }));
      again.flush();
      assert.deepEqual(one.routeDays(), [{ day: '2026-12-01', domain: 'example.org', accepted: 3, refused: 1, kb: 3 }]);
    } finally {
      await store.close();
    }
  });
});
