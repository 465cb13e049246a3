/**
 * The store's Redis (or Valkey) backend: one store shared by several MX hosts, so a
 * client blacklisted on one is refused on all, and watchlist hits on all add up.
 *
 * Each host keeps its in-memory front (store.ts) and serves every read from it. Changes
 * are written here behind (per 50 ms), each kind as one atomic server-side step (the Lua
 * scripts are in redis-lua.ts, the client's settings in redis-client.ts), and
 * published on a channel the other hosts' fronts apply, so they see them within one
 * round trip (no polling). Redis enforces every TTL itself.
 *
 * Keys (P = store.redis.keyPrefix, "portcullis:" by default):
 *
 * | Data                          | Key                 | Type   | Written by                                                        | TTL                        |
 * |-------------------------------|---------------------|--------|-------------------------------------------------------------------|----------------------------|
 * | blacklist entry               | P`bl:`ip            | hash   | reason, rule, created, expires; a rule's entry through EXTEND (Lua: never shortened) | PEXPIREAT expires |
 * | watchlist hits                | P`w:`key            | zset   | HIT (Lua): ZADD at → origin:seq, trim past the longest window      | last hit + longest window  |
 * | local mailboxes               | P`mailboxes`        | set    | SADD / SREM                                                       | none                       |
 * | named list (access map, …)    | P`l:`list           | zset   | LIST_ADD (Lua): value → next rank, so the order added is kept      | none                       |
 * | TTL cache (DNS answers, greylist triplets, well-behaved marks, rules' `remember`) | P`c:`key | string | SET … PXAT expires | PXAT expires |
 * | changes, for the other hosts  | P`changes`          | pub/sub channel | `{ o: origin, c: StoreChange[] }` after each written batch | n/a           |
 * | which Redis life this is      | P`epoch`            | string | a random id, SET NX by the first host: another one after an outage means Redis lost its data | none |
 *
 * A watchlist hit's member is `<origin>:<seq>`, fixed when the change is first sent, so a
 * batch sent again (after a timeout whose first try did land) never counts a hit twice;
 * it is announced with the hit, so a host whose snapshot already holds it (read between
 * the write and its announcement) does not count it twice either. Every other step is
 * idempotent as it is.
 *
 * Outage: a command that is not answered within commandTimeoutMs (or a connection that
 * is gone) starts one. The host goes on from memory: its changes are held in order (up
 * to queueLimit; past it the oldest are dropped, counted) and a probe pings Redis every
 * PROBE_MS; once it answers, the held changes are replayed and the front asked to load
 * the snapshot again, which brings what the other hosts did meanwhile. One log line at
 * the start, one at the recovery (with its duration and the changes replayed).
 */
import { randomUUID } from 'node:crypto';
import { Cluster } from 'ioredis';
import type { Logger } from 'pino';
import type { RedisStoreConfig } from '../config/config.js';
import type { Metrics } from '../metrics.js';
import { BackendUnavailable, WATCH_MAX_WINDOW_MS, type BlacklistEntry, type Snapshot, type StoreBackend, type StoreChange } from './ports.js';
import { connect, connectTimeout, describe, isReplyError, whenReady, type Client } from './redis-client.js';
import { SCRIPTS, type Script } from './redis-lua.js';

/** What each kind of key starts with, after the prefix (the table above). */
const KEY = { blacklist: 'bl:', watch: 'w:', list: 'l:', cache: 'c:', mailboxes: 'mailboxes', changes: 'changes', epoch: 'epoch' } as const;
type KeyKind = keyof typeof KEY;

/** How often Redis is pinged during an outage. */
const PROBE_MS = 500;
/** Commands sent per round trip when writing (a batch, a replay). */
const CHUNK = 1000;
/** Keys read per round trip when loading a snapshot. */
const LOAD_CHUNK = 500;

/** One change as Redis commands: [script or command, key, ...args]. Fixed when first sent (a hit's member included). */
type Step = { script: Script; key: string; args: (string | number)[] } | { cmd: 'del' | 'sadd' | 'srem' | 'zrem' | 'set'; key: string; args: (string | number)[] } | { clear: 'blacklist' };

/** A change as published: a watchlist hit carries its member, so a host that has it from a snapshot already does not count it again. */
type Wire = StoreChange & { id?: string };

/** A batch ready to send (again): its steps, and what is published once they are done. */
interface Prepared {
  steps: Step[];
  wire: Wire[];
}

/** How long the hits read by a snapshot are remembered, to drop their late announcements. */
const SEEN_MS = 10_000;

export interface RedisBackendOptions {
  log?: Logger;
  metrics?: Metrics;
  /**
   * Hold changes while Redis is unreachable and replay them when it returns (the host).
   * False: a write fails at once (the CLI, which reports it and exits 71).
   */
  holdWhileDown: boolean;
}

export class RedisBackend implements StoreBackend {
  /** This backend's id in published changes: a host ignores its own. */
  readonly origin = randomUUID().slice(0, 8);
  private seq = 0;
  private readonly channel: string;
  private readonly sub: Client;
  private readonly listeners = new Set<(changes: StoreChange[]) => void>();
  private readonly resyncs = new Set<(r: { lost: boolean }) => void>();
  /** The Redis life this backend knows (P`epoch`): another one means Redis lost its data. */
  private epoch: string | null = null;
  /** Writes, replays and the recovery run one after another, in order. */
  private chain: Promise<void> = Promise.resolve();
  /** Set during an outage: since when, and the batches held for replay. */
  private outage: { since: number; held: Prepared[]; heldChanges: number; dropped: number } | null = null;
  /** Announcements received while a snapshot is read: delivered once the front holds it. */
  private buffered: Wire[][] | null = null;
  /** The hits the last snapshot held (their members), and when that is forgotten. */
  private seen: Set<string> | null = null;
  private seenTimer: NodeJS.Timeout | null = null;
  private probe: NodeJS.Timeout | null = null;
  private closed = false;

  private constructor(private readonly redis: Client, private readonly cfg: RedisStoreConfig, private readonly opts: RedisBackendOptions) {
    this.channel = this.key('changes');
    this.sub = redis.duplicate();
    for (const c of [redis, this.sub]) c.on('error', (e: Error) => this.opts.log?.debug({ err: e }, `redis: ${e.message}`));
    this.sub.on('message', (channel: string, text: string) => {
      if (channel !== this.channel) return;
      const m = parseMessage(text);
      if (!m || m.o === this.origin) return;
      if (this.buffered) this.buffered.push(m.c);
      else this.deliver(m.c);
    });
    opts.metrics?.collect('store_changes_held', (set) => set({}, this.outage?.heldChanges ?? 0));
  }

  /**
   * Connects (and subscribes). When Redis does not answer: the host starts in an outage
   * (serving from memory; the probe catches up), the CLI gets a BackendUnavailable.
   */
  static async open(cfg: RedisStoreConfig, opts: RedisBackendOptions): Promise<RedisBackend> {
    const b = new RedisBackend(connect(cfg), cfg, opts);
    const wait = connectTimeout(cfg);
    const ready = await Promise.all([whenReady(b.redis, wait), whenReady(b.sub, wait)])
      .then(() => Promise.all([b.loadScripts(), b.sub.subscribe(b.channel), b.checkEpoch()]))
      .then((): null => null, (e: Error) => e);
    if (ready === null) {
      // A connection lost later is an outage at once, not at the next write.
      b.redis.on('close', () => b.startOutage(new Error('the connection to Redis closed')));
      b.resyncWhenResubscribed();
      return b;
    }
    if (!opts.holdWhileDown) {
      await b.close();
      throw new BackendUnavailable(`cannot reach the store's Redis (${describe(cfg)}): ${ready.message}`);
    }
    b.startOutage(ready);
    b.redis.on('close', () => b.startOutage(new Error('the connection to Redis closed')));
    b.resyncWhenResubscribed();
    return b;
  }

  /**
   * The change channel's connection alone can drop (Redis's client-output-buffer-limit
   * for a slow subscriber, a proxy's idle timeout) while writes still go through: what
   * was announced meanwhile is lost, so once ioredis has subscribed again the front
   * reloads. During an outage the recovery does that.
   */
  private resyncWhenResubscribed(): void {
    this.sub.on('ready', () => {
      if (this.outage || this.closed) return;
      // Subscribed again first (ioredis's own resubscribe is sent before ours), then read.
      void this.sub.subscribe(this.channel).then(() => {
        if (this.outage || this.closed) return;
        this.opts.log?.warn('store: the Redis change channel reconnected; reloading the shared store (announcements may have been missed)');
        for (const r of this.resyncs) r({ lost: false });
      }, () => undefined); // down again: the outage's recovery reloads
    });
  }

  get up(): boolean {
    return !this.outage;
  }

  subscribe(onChange: (changes: StoreChange[]) => void): () => void {
    this.listeners.add(onChange);
    return () => this.listeners.delete(onChange);
  }

  onResync(resync: (r: { lost: boolean }) => void): () => void {
    this.resyncs.add(resync);
    return () => this.resyncs.delete(resync);
  }

  /** Everything live under the prefix; BackendUnavailable during an outage. */
  async load(now: number): Promise<Snapshot> {
    if (this.outage) throw new BackendUnavailable(`the store's Redis is unreachable (since ${new Date(this.outage.since).toISOString()})`, this.opts.holdWhileDown);
    const buffered: Wire[][] = (this.buffered = []);
    try {
      const { snapshot, hits } = await this.read(now);
      this.remember(hits);
      return snapshot;
    } catch (e) {
      if (isReplyError(e)) throw e;
      this.startOutage(e as Error);
      throw new BackendUnavailable(`the store's Redis is unreachable: ${(e as Error).message}`, this.opts.holdWhileDown);
    } finally {
      // After the front has put the snapshot in place (it does so as soon as load resolves).
      setImmediate(() => {
        if (this.buffered === buffered) this.buffered = null;
        for (const changes of buffered) this.deliver(changes);
      });
    }
  }

  /**
   * Hands other hosts' changes to the front. A hit announced late (it was written before
   * our snapshot was read, announced after) is in the snapshot already: dropped, so a
   * count never includes one hit twice. Every other change is idempotent.
   */
  private deliver(changes: Wire[]): void {
    const seen = this.seen;
    const fresh = seen ? changes.filter((c) => !(c.id !== undefined && seen.has(c.id))) : changes;
    if (fresh.length) for (const l of this.listeners) l(fresh);
  }

  private remember(hits: Set<string>): void {
    this.seen = hits;
    if (this.seenTimer) clearTimeout(this.seenTimer);
    this.seenTimer = setTimeout(() => (this.seen = null), SEEN_MS);
    this.seenTimer.unref();
  }

  write(batch: StoreChange[]): Promise<void> {
    const prepared = this.prepare(batch);
    const p = this.chain.then(() => this.send(prepared));
    this.chain = p.catch(() => undefined);
    return p;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.probe) clearInterval(this.probe);
    if (this.seenTimer) clearTimeout(this.seenTimer);
    await this.chain;
    const held = this.outage?.heldChanges ?? 0;
    if (held) this.opts.log?.warn({ held }, `store: closing during a Redis outage: ${held} held changes never reached Redis (they were in this host's memory only)`);
    for (const c of [this.sub, this.redis]) c.disconnect();
  }

  // --- writing ------------------------------------------------------------------------

  private key(kind: KeyKind, name = ''): string {
    return this.cfg.keyPrefix + KEY[kind] + name;
  }

  /** SCAN's MATCH for every key of `kind` (glob characters in the prefix taken literally). */
  private pattern(kind: KeyKind): string {
    return this.key(kind).replace(/[*?[\]\\]/g, '\\$&') + '*';
  }

  /** The name in a key of `kind` (what `key` put after the prefix and the kind). */
  private nameOf(kind: KeyKind, key: string): string {
    return key.slice(this.cfg.keyPrefix.length + KEY[kind].length);
  }

  /** A batch's steps, one per change; a hit's member is fixed here, once, so sending it again never counts it twice. */
  private prepare(batch: StoreChange[]): Prepared {
    const p: Prepared = { steps: [], wire: [] };
    for (const c of batch) {
      if (c.t === 'watch-hit') {
        const id = `${this.origin}:${++this.seq}`;
        p.steps.push({ script: SCRIPTS.hit, key: this.key('watch', c.key), args: [c.at, id, WATCH_MAX_WINDOW_MS] });
        p.wire.push({ ...c, id });
      } else {
        p.steps.push(this.step(c));
        p.wire.push(c);
      }
    }
    return p;
  }

  /** What one change does in Redis (a missing kind of change does not compile). */
  private step(c: Exclude<StoreChange, { t: 'watch-hit' }>): Step {
    const entry = (e: BlacklistEntry) => [e.reason, e.rule, e.created, e.expires];
    switch (c.t) {
      case 'blacklist-put':
        return { script: SCRIPTS.put, key: this.key('blacklist', c.e.ip), args: entry(c.e) };
      case 'blacklist-extend':
        return { script: SCRIPTS.extend, key: this.key('blacklist', c.e.ip), args: entry(c.e) };
      case 'blacklist-del':
        return { cmd: 'del', key: this.key('blacklist', c.ip), args: [] };
      case 'blacklist-clear':
        return { clear: 'blacklist' };
      case 'mailbox-put':
        return { cmd: 'sadd', key: this.key('mailboxes'), args: [c.address] };
      case 'mailbox-del':
        return { cmd: 'srem', key: this.key('mailboxes'), args: [c.address] };
      case 'list-put':
        return { script: SCRIPTS.listAdd, key: this.key('list', c.list), args: [c.value] };
      case 'list-del':
        return { cmd: 'zrem', key: this.key('list', c.list), args: [c.value] };
      case 'cache-put':
        return { cmd: 'set', key: this.key('cache', c.key), args: [c.value, 'PXAT', c.expires] };
    }
  }

  /** Sends one batch and announces it to the other hosts; during an outage (or once one starts), holds what is not sent. */
  private async send(p: Prepared): Promise<void> {
    if (this.outage) return this.hold(p);
    const rest = await this.push(p);
    if (rest) this.hold(rest);
  }

  /**
   * Sends `p` in chunks of CHUNK steps, each announced once written, so no command waits
   * behind thousands of others past commandTimeoutMs (a replay after a long outage holds
   * up to queueLimit changes). Returns what was not sent when Redis stopped answering
   * (an outage is started), or null. A command Redis refused (a key of another type under
   * our prefix…) is not an outage: it rejects, as a failed write.
   */
  private async push(p: Prepared): Promise<Prepared | null> {
    for (let i = 0; i < p.steps.length; i += CHUNK) {
      try {
        await this.run(p.steps.slice(i, i + CHUNK));
        await this.announce(p.wire.slice(i, i + CHUNK));
      } catch (e) {
        if (isReplyError(e)) throw e;
        this.startOutage(e as Error);
        return { steps: p.steps.slice(i), wire: p.wire.slice(i) };
      }
    }
    return null;
  }

  private async announce(wire: Wire[]): Promise<void> {
    await this.redis.publish(this.channel, JSON.stringify({ o: this.origin, c: wire }));
  }

  /**
   * Runs steps in order. A Redis that lost its scripts (restarted) refuses the first
   * EVALSHA: the scripts are loaded and the whole batch run again, in order (running a
   * batch twice in order ends where running it once does).
   */
  private async run(steps: Step[]): Promise<void> {
    try {
      await this.runOnce(steps);
    } catch (e) {
      if (!isReplyError(e) || !e.message.startsWith('NOSCRIPT')) throw e;
      await this.loadScripts();
      await this.runOnce(steps);
    }
  }

  /** Loads the scripts into Redis (every master of a cluster), so EVALSHA finds them. */
  private async loadScripts(): Promise<void> {
    const nodes = this.redis instanceof Cluster ? this.redis.nodes('master') : [this.redis];
    await Promise.all(nodes.flatMap((n) => Object.values(SCRIPTS).map((sc) => n.script('LOAD', sc.lua))));
  }

  /** Each step is one command, pipelined by ioredis on one connection, so they run in order and a batch costs about one round trip. */
  private async runOnce(steps: Step[]): Promise<void> {
    const pending: Promise<unknown>[] = [];
    for (const s of steps) {
      if ('clear' in s) {
        await Promise.all(pending.splice(0)); // what came before the clear, first
        for (const keys of await this.scan(this.pattern('blacklist'))) if (keys.length) await Promise.all(keys.map((k) => this.redis.del(k)));
      } else if ('script' in s) pending.push(this.redis.evalsha(s.script.sha, 1, s.key, ...s.args));
      else pending.push(this.redis.call(s.cmd, s.key, ...s.args));
    }
    await Promise.all(pending);
  }

  // --- outage -------------------------------------------------------------------------

  /** Keeps steps for the replay; past queueLimit the oldest go (they stay in this host's memory). */
  private hold(p: Prepared): void {
    const o = this.outage;
    if (!o) return;
    if (!this.opts.holdWhileDown) throw new BackendUnavailable(`the store's Redis is unreachable (${describe(this.cfg)})`);
    o.held.push(p);
    o.heldChanges += p.steps.length;
    const over = o.heldChanges - this.cfg.queueLimit;
    for (let left = over; left > 0 && o.held.length; ) {
      const oldest = o.held[0]!;
      const n = Math.min(left, oldest.steps.length);
      oldest.steps.splice(0, n);
      oldest.wire.splice(0, n);
      if (!oldest.steps.length) o.held.shift();
      left -= n;
    }
    if (over > 0) {
      o.heldChanges -= over;
      o.dropped += over;
      this.opts.metrics?.inc('store_changes_dropped_total', {}, over);
    }
  }

  private startOutage(e: Error): void {
    if (this.outage || this.closed) return;
    this.outage = { since: Date.now(), held: [], heldChanges: 0, dropped: 0 };
    this.opts.metrics?.inc('store_outages_total');
    this.opts.log?.error({ err: e, redis: describe(this.cfg) }, `store: Redis unreachable (${e.message}); serving from memory, holding changes (up to ${this.cfg.queueLimit}) until it returns`);
    this.probe = setInterval(() => void this.tryRecover(), PROBE_MS);
    this.probe.unref();
  }

  private probing = false;

  /** Pings; once Redis answers, replays what was held (in order, behind any write under way) and asks for a resync. */
  private async tryRecover(): Promise<void> {
    if (this.probing || !this.outage) return;
    this.probing = true;
    try {
      await this.redis.ping();
      await this.sub.subscribe(this.channel); // again: a host that started during the outage never did
      const lost = await this.checkEpoch();
      const recovered = this.chain.then(() => this.replay(lost));
      this.chain = recovered.catch(() => undefined);
      if (await recovered.then(() => true, () => false)) for (const r of this.resyncs) r({ lost });
    } catch {
      // still down: the next probe tries again
    } finally {
      this.probing = false;
    }
  }

  /**
   * Marks this Redis life (a random id under P`epoch`, set once by whichever host comes
   * first) and says whether it is another one than we knew: Redis restarted without its data.
   */
  private async checkEpoch(): Promise<boolean> {
    const key = this.key('epoch');
    await this.redis.set(key, randomUUID(), 'NX');
    const now = await this.redis.get(key);
    const lost = this.epoch !== null && now !== this.epoch;
    this.epoch = now;
    return lost;
  }

  private async replay(lost: boolean): Promise<void> {
    const o = this.outage;
    if (!o) return;
    let replayed = 0;
    while (o.held.length) {
      const p = o.held[0]!;
      // Announced too: hosts that saw no outage learn it; those that did drop the hits their resync already read.
      const rest = await this.push(p).catch((e: Error) => {
        this.opts.log?.error({ err: e }, `store: a held change was refused by Redis on replay: ${e.message}`);
        return null;
      });
      const done = p.steps.length - (rest?.steps.length ?? 0);
      o.heldChanges -= done;
      replayed += done;
      if (rest) {
        o.held[0] = rest;
        throw new Error('Redis stopped answering during the replay');
      }
      o.held.shift();
    }
    if (this.probe) clearInterval(this.probe);
    this.probe = null;
    this.outage = null;
    const ms = Date.now() - o.since;
    this.opts.log?.warn({ downMs: ms, replayed, dropped: o.dropped, lost }, `store: Redis is back after ${(ms / 1000).toFixed(1)} s; replayed ${replayed} held changes${o.dropped ? `, ${o.dropped} dropped past the queue limit` : ''}; ${lost ? 'it lost its data (restarted without persistence?): writing back this host\'s blacklist, lists and cache, watchlist counts start over' : 'reloading the shared store'}`);
  }

  // --- reading ------------------------------------------------------------------------

  /** Key names matching `pattern`, in chunks (every master of a cluster). */
  private async scan(pattern: string): Promise<string[][]> {
    const nodes = this.redis instanceof Cluster ? this.redis.nodes('master') : [this.redis];
    const chunks: string[][] = [];
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', LOAD_CHUNK);
        cursor = next;
        chunks.push(keys);
      } while (cursor !== '0');
    }
    return chunks;
  }

  /** The snapshot, and the members of the hits it holds. */
  private async read(now: number): Promise<{ snapshot: Snapshot; hits: Set<string> }> {
    const r = this.redis;
    const s: Snapshot = { blacklist: [], watch: [], mailboxes: [], lists: [], cache: [] };
    const members = new Set<string>();
    for (const keys of await this.scan(this.pattern('blacklist'))) {
      const rows = await Promise.all(keys.map((k) => r.hgetall(k)));
      rows.forEach((h, i) => {
        const expires = Number(h.expires);
        if (expires > now) s.blacklist.push({ ip: this.nameOf('blacklist', keys[i]!), reason: h.reason ?? '', rule: h.rule ?? '', created: Number(h.created), expires });
      });
    }
    for (const keys of await this.scan(this.pattern('watch'))) {
      const rows = await Promise.all(keys.map((k) => r.zrangebyscore(k, `(${now - WATCH_MAX_WINDOW_MS}`, '+inf', 'WITHSCORES')));
      rows.forEach((z, i) => {
        for (let j = 0; j < z.length; j += 2) members.add(z[j]!);
        const hits = z.filter((_, j) => j % 2 === 1).map(Number);
        if (hits.length) s.watch.push({ key: this.nameOf('watch', keys[i]!), hits });
      });
    }
    s.mailboxes = await r.smembers(this.key('mailboxes'));
    for (const keys of await this.scan(this.pattern('list'))) {
      const rows = await Promise.all(keys.map((k) => r.zrange(k, 0, -1)));
      rows.forEach((values, i) => {
        for (const value of values) s.lists.push({ list: this.nameOf('list', keys[i]!), value });
      });
    }
    for (const keys of await this.scan(this.pattern('cache'))) {
      const rows = await Promise.all(keys.map((k) => Promise.all([r.get(k), r.pexpiretime(k)])));
      rows.forEach(([value, expires], i) => {
        if (value !== null && expires > now) s.cache.push({ key: this.nameOf('cache', keys[i]!), value, expires });
      });
    }
    return { snapshot: s, hits: members };
  }
}

/** A published batch, or null for anything else on the channel. */
function parseMessage(text: string): { o: string; c: Wire[] } | null {
  try {
    const m = JSON.parse(text) as { o?: unknown; c?: unknown };
    return typeof m.o === 'string' && Array.isArray(m.c) ? { o: m.o, c: m.c as Wire[] } : null;
  } catch {
    return null;
  }
}
