/**
 * Several MX hosts sharing one store (issue 17): two real hosts, separate data dirs, one
 * real redis-server (redis-server.ts), real SMTP clients. A blacklist entry made on one
 * is refused on the other within a second; auth failures spread over both add up; Redis
 * stopping under load fails no session, and the counts resume once it is back.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { configFrom } from '../host/config/config.js';
import { Metrics } from '../host/metrics.js';
import { openStore } from '../host/store/open.js';
import type { MemoryStore } from '../host/store/store.js';
import { cli, eventually, mailer, RawSmtp, scratchDirs, startTestHost, testPasswordHash, type TestHost } from './helpers.js';
import { redisMissing, startRedis, type RedisServer } from './redis-server.js';

const skip = redisMissing();
if (skip) console.log(`# skipping the Redis tests: ${skip}`);

const BAD_AUTH = `AUTH PLAIN ${Buffer.from('\0alice\0wrong').toString('base64')}`;
const AUTH_FAIL_KEY = 'auth-fail:127.0.0.1';
let prefixes = 0;
const scratch = scratchDirs();

describe('two MX hosts sharing one Redis', { skip: skip ?? false }, () => {
  let redis: RedisServer;
  let r: Redis;
  const hosts: TestHost[] = [];
  before(async () => {
    redis = await startRedis();
    r = new Redis(redis.url);
  });
  after(async () => {
    await Promise.all(hosts.splice(0).map((h) => h.close()));
    r.disconnect();
    await redis.close();
  });

  /** Hosts A and B on one key prefix of their own (tests share the Redis, not a store). */
  async function twoHosts(redisOptions: Record<string, unknown> = {}): Promise<{ a: TestHost; b: TestHost; prefix: string }> {
    const prefix = `t${++prefixes}-${process.pid}:`;
    const config = {
      localDomains: ['localhost'],
      mailboxes: ['alice@localhost'],
      auth: { users: { alice: await testPasswordHash('pw') }, allowInsecure: true },
      // Every test connection comes from 127.0.0.1: connections without mail must not blacklist it.
      rules: { settings: { 'connect-flood': { options: { watchlistCount: 1000 } } } },
      store: { backend: 'redis', redis: { url: redis.url, keyPrefix: prefix, ...redisOptions } },
    };
    const a = await startTestHost({ builtin: true, config });
    hosts.push(a);
    const b = await startTestHost({ builtin: true, config });
    hosts.push(b);
    return { a, b, prefix };
  }

  async function authSession(port: number): Promise<RawSmtp> {
    const { c } = await RawSmtp.open(port);
    await c.cmd('EHLO mx.example.org');
    return c;
  }

  it('a client blacklisted on host A is refused on host B within 1 s', async (t) => {
    const { a, b } = await twoHosts();
    const c = await authSession(a.port);
    for (let i = 0; i < 5; i++) assert.equal(await c.cmd(BAD_AUTH), '535 5.7.8 Authentication credentials invalid');
    assert.equal(await c.cmd(BAD_AUTH), '421 4.7.0 Too many failed authentication attempts');
    const t0 = performance.now();
    await eventually('B knows the entry', () => b.host.store.blacklistGet('127.0.0.1') !== undefined, 1000);
    t.diagnostic(`B had A's blacklist entry ${(performance.now() - t0).toFixed(1)} ms after A's drop reply`);
    const { greeting } = await RawSmtp.open(b.port);
    assert.equal(greeting, '554 5.7.1 Access denied: AUTH brute force');
  });

  it('auth failures spread over A and B add up to one blacklist, counted once each in Redis', async () => {
    const { a, b, prefix } = await twoHosts();
    const ca = await authSession(a.port);
    const cb = await authSession(b.port);
    // A, B, A, B, A: five failures, each host waiting to see the other's before its next.
    for (let i = 0; i < 5; i++) {
      const [on, other] = i % 2 === 0 ? [ca, b] : [cb, a];
      assert.equal(await on.cmd(BAD_AUTH), '535 5.7.8 Authentication credentials invalid');
      await eventually(`hit ${i + 1} seen on both`, () => other.host.store.watchCount(AUTH_FAIL_KEY, 120) === i + 1, 1000);
    }
    // The sixth, on B, which saw only two of its own.
    assert.equal(await cb.cmd(BAD_AUTH), '421 4.7.0 Too many failed authentication attempts');
    await eventually('six hits in Redis', async () => (await r.zcard(`${prefix}w:${AUTH_FAIL_KEY}`)) === 6, 1000);
    await eventually('A has the entry', () => a.host.store.blacklistGet('127.0.0.1') !== undefined, 1000);
    const { greeting } = await RawSmtp.open(a.port);
    assert.equal(greeting, '554 5.7.1 Access denied: AUTH brute force');
    const entry = await r.hgetall(`${prefix}bl:127.0.0.1`);
    assert.equal(entry.rule, 'auth-brute-force');
    assert.ok((await r.pttl(`${prefix}bl:127.0.0.1`)) > 0, 'Redis expires the entry itself');
  });

  it('Redis stopped under load: both hosts keep serving, no session fails, and counts resume once it is back', async (t) => {
    const { a, b, prefix } = await twoHosts({ commandTimeoutMs: 200 });
    const send = (h: TestHost, i: number) => mailer(h.port).sendMail({ from: 'sender@example.org', to: 'alice@localhost', subject: `load ${i}`, text: 'hello' });
    const load = async (n: number) => {
      const replies = await Promise.all(Array.from({ length: n }, (_, i) => send(i % 2 ? a : b, i)));
      for (const info of replies) assert.match(info.response, /^250 /);
    };
    await load(6);
    redis.pause();
    try {
      // Both hosts notice (the write-behind times out) and say it once. A host notices at
      // its next write: A's are the auth failures, B's an administrator's entry.
      const down = (h: TestHost) => h.logs.some((l) => String(l.msg).startsWith('store: Redis unreachable'));
      b.host.store.blacklistAdd('192.0.2.99', 600, 'added during the outage', 'admin');
      await Promise.all([load(10), (async () => {
        const c = await authSession(a.port);
        for (let i = 0; i < 2; i++) assert.equal(await c.cmd(BAD_AUTH), '535 5.7.8 Authentication credentials invalid');
        c.end();
      })()]);
      await eventually('both hosts in an outage', () => down(a) && down(b));
      await load(10); // still serving, from memory
      assert.equal(a.host.store.watchCount(AUTH_FAIL_KEY, 120), 2, 'A counts locally meanwhile');
    } finally {
      redis.resume();
    }
    const back = (h: TestHost) => h.logs.find((l) => String(l.msg).startsWith('store: Redis is back'));
    await eventually('both hosts recovered', () => !!back(a) && !!back(b));
    t.diagnostic(`A: ${String(back(a)!.msg)}`);
    assert.equal(a.logs.filter((l) => String(l.msg).startsWith('store: Redis unreachable')).length, 1, 'one line at the start of the outage');
    // A's hits made during the outage were replayed: B counts them, and Redis holds them once.
    await eventually('B sees A\'s outage hits', () => b.host.store.watchCount(AUTH_FAIL_KEY, 120) === 2);
    assert.equal(await r.zcard(`${prefix}w:${AUTH_FAIL_KEY}`), 2);
    await eventually('A has B\'s outage entry', () => a.host.store.blacklistGet('192.0.2.99')?.reason === 'added during the outage');
    const metrics = await (await fetch(`http://127.0.0.1:${a.host.adminAddress!.port}/metrics`)).text();
    assert.match(metrics, /^portcullis_store_outages_total 1$/m);
    assert.match(metrics, /^portcullis_store_backend_up 1$/m);
    // And counting goes on across both: four more failures on B reach the sixth.
    const cb = await authSession(b.port);
    for (let i = 0; i < 3; i++) assert.equal(await cb.cmd(BAD_AUTH), '535 5.7.8 Authentication credentials invalid');
    assert.equal(await cb.cmd(BAD_AUTH), '421 4.7.0 Too many failed authentication attempts');
  });

  it('Redis restarted without its data: the hosts reconnect, write the blacklist back, and count on from zero', async () => {
    const { a, b, prefix } = await twoHosts();
    a.host.store.blacklistAdd('127.0.0.3', 3600, 'seen on a spam trap', 'admin');
    await eventually('B has it', () => b.host.store.blacklistGet('127.0.0.3') !== undefined, 1000);
    await redis.restart();
    const back = (h: TestHost) => h.logs.find((l) => String(l.msg).startsWith('store: Redis is back'));
    await eventually('both hosts recovered', () => !!back(a) && !!back(b));
    assert.match(String(back(a)!.msg), /; it lost its data \(restarted without persistence\?\): writing back this host's blacklist, lists and cache, watchlist counts start over$/);
    await eventually('the entry is in Redis again', async () => (await r.hget(`${prefix}bl:127.0.0.3`, 'reason')) === 'seen on a spam trap');
    for (const h of [a, b]) assert.equal((await RawSmtp.open(h.port, '127.0.0.3')).greeting, '554 5.7.1 Access denied: seen on a spam trap');
    const c = await authSession(b.port);
    assert.equal(await c.cmd(BAD_AUTH), '535 5.7.8 Authentication credentials invalid');
    await eventually('A counts B\'s hit', () => a.host.store.watchCount(AUTH_FAIL_KEY, 120) === 1, 1000);
    assert.equal(await r.zcard(`${prefix}w:${AUTH_FAIL_KEY}`), 1);
  });

  it('portcullis blacklist add/list/remove work against Redis, and every host applies the change', async () => {
    const { a, b, prefix } = await twoHosts();
    // The CLI with the hosts' store but no running host of its own to ask (admin off): it writes Redis.
    const cfg = join(a.dir, 'cli.json');
    writeFileSync(cfg, JSON.stringify({ admin: { listen: null }, dataDir: join(a.dir, 'cli-data'), store: { backend: 'redis', redis: { url: redis.url, keyPrefix: prefix } } }));
    const add = cli(a.dir, ['blacklist', 'add', '127.0.0.2', '--ttl', '600', '--reason', 'seen on a spam trap', '--config', cfg]);
    assert.equal(add.stderr, '');
    assert.equal(add.stdout, 'blacklisted 127.0.0.2\n');
    for (const h of [a, b]) {
      await eventually('the host has it', () => h.host.store.blacklistGet('127.0.0.2') !== undefined, 1000);
      const { greeting } = await RawSmtp.open(h.port, '127.0.0.2');
      assert.equal(greeting, '554 5.7.1 Access denied: seen on a spam trap');
    }
    assert.match(cli(a.dir, ['blacklist', 'list', '--config', cfg]).stdout, /^127\.0\.0\.2\tadmin\t10 min left\tseen on a spam trap\n$/);
    assert.equal(cli(a.dir, ['blacklist', 'remove', '127.0.0.2', '--config', cfg]).stdout, 'removed 127.0.0.2\n');
    await eventually('B forgot it', () => b.host.store.blacklistGet('127.0.0.2') === undefined, 1000);
    assert.match((await RawSmtp.open(b.port, '127.0.0.2')).greeting, /^220 /);
  });

  it('the CLI reports a Redis it cannot reach (exit 71) and changes nothing', async () => {
    const dir = scratch();
    const cfg = join(dir, 'down.json');
    writeFileSync(cfg, JSON.stringify({ admin: { listen: null }, store: { backend: 'redis', redis: { url: 'redis://127.0.0.1:1', commandTimeoutMs: 200 } } }));
    const add = cli(dir, ['blacklist', 'add', '192.0.2.1', '--config', cfg]);
    assert.equal(add.status, 71);
    assert.match(add.stderr, /^portcullis: cannot reach the store's Redis \(redis:\/\/127\.0\.0\.1:1\): /);
  });
});

describe('the Redis store, one host\'s view', { skip: skip ?? false }, () => {
  let redis: RedisServer;
  let r: Redis;
  const open: MemoryStore[] = [];
  before(async () => {
    redis = await startRedis();
    r = new Redis(redis.url);
  });
  after(async () => {
    redis.resume();
    await Promise.all(open.splice(0).map((s) => s.close()));
    r.disconnect();
    await redis.close();
  });

  /** A host's store on `prefix` (through the same factory the host uses), with its log lines and metrics. */
  async function store(prefix: string, redisOptions: Record<string, unknown> = {}) {
    const logs: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split('\n')) if (line) logs.push(String((JSON.parse(line) as { msg: unknown }).msg));
        cb();
      },
    });
    const metrics = new Metrics();
    const config = configFrom({ store: { backend: 'redis', redis: { url: redis.url, keyPrefix: prefix, commandTimeoutMs: 200, ...redisOptions } } }, 'test');
    const s = await openStore(config, scratch(), { log: pino({ level: 'debug' }, sink), metrics });
    open.push(s);
    return { s, logs, metrics };
  }

  it('a rule\'s entry is never shortened in Redis, even by a host that has not seen the longer one', async () => {
    const prefix = `u${++prefixes}-${process.pid}:`;
    const { s: a } = await store(prefix);
    const { s: b } = await store(prefix);
    const now = Date.now();
    a.blacklistExtend('192.0.2.1', 3 * 3600, 'auth brute force', 'auth-brute-force', now);
    await a.flush();
    // B writes a 1-hour entry as if it had not heard of A's (its own announcement raced A's).
    await (b as unknown as { backend: { write(c: unknown[]): Promise<void> } }).backend.write([{ t: 'blacklist-extend', e: { ip: '192.0.2.1', reason: 'connect flood', rule: 'connect-flood', created: now + 1000, expires: now + 1000 + 3600_000 } }]);
    assert.deepEqual(await r.hgetall(`${prefix}bl:192.0.2.1`), { reason: 'auth brute force', rule: 'auth-brute-force', created: String(now), expires: String(now + 3 * 3600_000) });
    assert.equal(await r.pexpiretime(`${prefix}bl:192.0.2.1`), now + 3 * 3600_000, 'Redis expires it at its expiry');
    // A longer one extends it, keeping when it was created.
    a.blacklistExtend('192.0.2.1', 6 * 3600, 'spam trap', 'subject-spam', now + 2000);
    await a.flush();
    assert.deepEqual(await r.hgetall(`${prefix}bl:192.0.2.1`), { reason: 'spam trap', rule: 'subject-spam', created: String(now), expires: String(now + 2000 + 6 * 3600_000) });
  });

  it('lists keep the order added, and mailboxes, greylist triplets and well-behaved marks are shared, expiring in Redis', async () => {
    const prefix = `u[${++prefixes}]*${process.pid}:`; // glob characters in the prefix are taken literally when loading
    const { s: a } = await store(prefix);
    const { s: b } = await store(prefix);
    for (const line of ['Connect:192.0.2.9 REJECT', 'From:spam.example REJECT', 'Connect:192.0.2.0/24 OK']) a.listAdd('access', line);
    a.mailboxAdd('bob@example.org');
    a.cacheSet('rule:greylist:192.0.2.0|a@example.org|bob@example.org', '1764547200000', 3600);
    a.markWellBehaved('192.0.2.7', 86400, 'greylist');
    a.listRemove('access', 'From:spam.example REJECT');
    await a.flush();
    await eventually('B has them', () => b.wellBehaved('192.0.2.7'), 1000);
    for (const s of [b, (await store(prefix)).s]) { // live on B, and loaded by a store opened afterwards
      assert.deepEqual(s.listValues('access'), ['Connect:192.0.2.9 REJECT', 'Connect:192.0.2.0/24 OK']);
      assert.equal(s.mailbox('bob@example.org'), 'unknown'); // not a local domain here; listed all the same:
      assert.deepEqual(s.mailboxList(), ['bob@example.org']);
      assert.equal(s.cacheGet('rule:greylist:192.0.2.0|a@example.org|bob@example.org'), '1764547200000');
    }
    const ttl = await r.pttl(`${prefix}c:rule:greylist:192.0.2.0|a@example.org|bob@example.org`);
    assert.ok(ttl > 3500_000 && ttl <= 3600_000, `Redis expires the triplet itself (PTTL ${ttl})`);
  });

  it('a host started while Redis does not answer starts empty, serves from memory, and catches up when it answers', async () => {
    const prefix = `u${++prefixes}-${process.pid}:`;
    const { s: before } = await store(prefix);
    before.blacklistAdd('192.0.2.20', 3600, 'made before', 'admin');
    await before.flush();
    redis.pause();
    let late: Awaited<ReturnType<typeof store>>;
    try {
      late = await store(prefix);
      assert.equal(late.s.blacklistGet('192.0.2.20'), undefined, 'nothing loaded yet');
      late.s.blacklistAdd('192.0.2.21', 3600, 'made while down', 'admin');
      assert.ok(late.s.blacklistGet('192.0.2.21'), 'served from memory');
      assert.equal(await late.metrics.get('store_backend_up'), 0);
    } finally {
      redis.resume();
    }
    await eventually('caught up', () => late.s.blacklistGet('192.0.2.20') !== undefined);
    await eventually('its change reached the others', () => before.blacklistGet('192.0.2.21') !== undefined, 1000);
    assert.deepEqual(late.logs.filter((m) => m.startsWith('store: ')).map((m) => m.replace(/\(.*?\); /, '(…); ').replace(/after [\d.]+ s/, 'after N s')), [
      'store: Redis unreachable (…); serving from memory, holding changes (up to 100000) until it returns',
      'store: Redis is back after N s; replayed 1 held changes; reloading the shared store',
    ]);
    assert.equal(await late.metrics.get('store_outages_total'), 1);
    assert.equal(await late.metrics.get('store_backend_up'), 1);
  });

  it('a host whose change channel dropped alone reloads the store once subscribed again, so nothing announced meanwhile is missed', async () => {
    const prefix = `u${++prefixes}-${process.pid}:`;
    const { s, logs } = await store(prefix);
    // An entry written by someone whose announcement this host never hears.
    await r.hset(`${prefix}bl:192.0.2.30`, { reason: 'unheard', rule: 'admin', created: Date.now(), expires: Date.now() + 3600_000 });
    await r.client('KILL', 'TYPE', 'pubsub');
    await eventually('reloaded', () => s.blacklistGet('192.0.2.30') !== undefined);
    assert.ok(logs.includes('store: the Redis change channel reconnected; reloading the shared store (announcements may have been missed)'));
  });

  it('past queueLimit the oldest held changes are dropped and counted; whileDown ignore-counts reads 0 meanwhile', async () => {
    const prefix = `u${++prefixes}-${process.pid}:`;
    const { s, metrics } = await store(prefix, { queueLimit: 3, whileDown: 'ignore-counts' });
    const t0 = Date.now();
    assert.equal(s.watchHit('k', 600, t0), 1);
    await s.flush();
    redis.pause();
    try {
      s.cacheSet('rule:x', 'y', 60);
      await s.flush(); // times out: the outage starts, this batch is held (its first try lands when Redis resumes)
      for (let i = 1; i <= 5; i++) s.watchHit('k', 600, t0 + i);
      await s.flush();
      assert.equal(s.watchCount('k', 600, t0 + 5), 0, 'ignore-counts: no rule acts on a partial count');
      assert.equal(await metrics.get('store_changes_dropped_total'), 3);
      assert.equal(await metrics.get('store_changes_held'), 3);
    } finally {
      redis.resume();
    }
    await eventually('back', async () => (await metrics.get('store_backend_up')) === 1);
    // The first hit, then the three newest held ones: the cache entry and the two oldest hits went past the limit.
    await eventually('resynced', () => s.watchCount('k', 600, t0 + 5) === 4);
    assert.deepEqual((await r.zrange(`${prefix}w:k`, 0, -1, 'WITHSCORES')).filter((_, i) => i % 2 === 1).map((x) => Number(x) - t0), [0, 3, 4, 5]);
  });
});
