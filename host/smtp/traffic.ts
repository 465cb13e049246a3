/**
 * Traffic statistics, as smtpf's admin commands show them: STAT WINDOW (per minute, the
 * last 60 minutes), STAT HOURLY (per hour, the last 24), and route statistics (per
 * recipient domain and day: messages accepted and refused, kilobytes; 31 days).
 * Fed by the transaction log (one summary per transaction) and the connection count.
 * The windows live in memory and start over with the host; the route statistics are
 * also kept in the store (its TTL cache, `routes:` keys, expiring after 31 days), so they
 * outlive a restart. Each writer (a process of a cluster, a host sharing Redis) keeps its
 * own totals under its own key, `routes:<day>|<domain>|<writer>` (`routes:<day>|<domain>`
 * for the single process), and the view sums them: totals written whole by several
 * writers under one key would each overwrite the others'.
 */
import { CACHE_PREFIX, type TtlCache } from '../store/ports.js';
import type { TransactionSummary } from './transaction-log.js';

export interface TrafficCounts {
  connections: number;
  /** Transactions by how they ended (see TransactionSummary.tx). */
  accepted: number;
  refused: number;
  abandoned: number;
  /** Recipients accepted and refused at RCPT. */
  rcptAccepted: number;
  rcptRefused: number;
  /** Bytes of the accepted messages. */
  bytes: number;
  /** Refusals (of a recipient or a message) by the rule that decided (`host` for the host's own, e.g. relay control). */
  refusedBy: Record<string, number>;
  /** Refusals by client address. */
  refusedIp: Record<string, number>;
}

export interface Slot extends TrafficCounts {
  /** Start of the minute or hour (ISO 8601). */
  start: string;
}

export interface RouteDay {
  day: string;
  domain: string;
  accepted: number;
  refused: number;
  kb: number;
}

const zero = (): TrafficCounts => ({ connections: 0, accepted: 0, refused: 0, abandoned: 0, rcptAccepted: 0, rcptRefused: 0, bytes: 0, refusedBy: {}, refusedIp: {} });

/** Counts per fixed-length slot, the last `slots` of them (older ones fall off). */
class Ring {
  private counts = new Map<number, TrafficCounts>();
  constructor(private readonly slotMs: number, private readonly slots: number) {}

  at(now: number): TrafficCounts {
    const k = Math.floor(now / this.slotMs);
    let c = this.counts.get(k);
    if (!c) {
      this.counts.set(k, (c = zero()));
      for (const old of this.counts.keys()) if (old <= k - this.slots) this.counts.delete(old);
    }
    return c;
  }

  /** Every slot of the window, oldest first, empty ones included. */
  list(now: number): Slot[] {
    const k = Math.floor(now / this.slotMs);
    const out: Slot[] = [];
    for (let i = k - this.slots + 1; i <= k; i++) out.push({ start: new Date(i * this.slotMs).toISOString(), ...(this.counts.get(i) ?? zero()) });
    return out;
  }
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const ROUTE_DAYS = 31;

export class TrafficStats {
  private minutes = new Ring(MINUTE, 60);
  private hours = new Ring(HOUR, 24);
  /** "day|domain" → counts. */
  private routes = new Map<string, RouteDay>();
  /** Route counts changed since the last `flush`. */
  private dirty = new Set<RouteDay>();

  /**
   * `store`: where route statistics are kept (this writer's read back at start); none:
   * memory only. `writer`: whose totals these are in a shared store ('' for a single process).
   */
  constructor(private readonly now: () => number = Date.now, private readonly store: Pick<TtlCache, 'cacheSet' | 'cacheScan'> | null = null, private readonly writer = '') {
    for (const e of this.stored()) if (e.writer === writer) this.routes.set(`${e.day}|${e.domain}`, e);
  }

  /** Every writer's route totals in the store. */
  private stored(): (RouteDay & { writer: string })[] {
    return (this.store?.cacheScan(CACHE_PREFIX.routes, this.now()) ?? []).map(([key, value]) => {
      const [day = '', domain = '', writer = ''] = key.slice(CACHE_PREFIX.routes.length).split('|');
      const c = JSON.parse(value) as Pick<RouteDay, 'accepted' | 'refused' | 'kb'>;
      return { day, domain, writer, accepted: c.accepted, refused: c.refused, kb: c.kb };
    });
  }

  connection(): void {
    const t = this.now();
    for (const r of [this.minutes, this.hours]) r.at(t).connections++;
  }

  transaction(s: TransactionSummary): void {
    const t = this.now();
    const ok = s.rcpts.filter((r) => r.reply === '250');
    for (const r of [this.minutes, this.hours]) {
      const c = r.at(t);
      c[s.tx]++;
      c.rcptAccepted += ok.length;
      c.rcptRefused += s.rcpts.length - ok.length;
      if (s.tx === 'accepted') c.bytes += s.size ?? 0;
      const refusals = [...s.rcpts.filter((x) => x.reply !== '250').map((x) => x.rule ?? 'host'), ...(s.tx === 'refused' ? [s.rule ?? 'host'] : [])];
      for (const rule of refusals) {
        c.refusedBy[rule] = (c.refusedBy[rule] ?? 0) + 1;
        c.refusedIp[s.ip] = (c.refusedIp[s.ip] ?? 0) + 1;
      }
    }
    // Per recipient domain: a refused recipient counts as refused; an accepted one as its
    // message went (accepted, refused after DATA, or nothing when the client never sent it).
    const domain = (to: string) => to.slice(to.lastIndexOf('@') + 1).toLowerCase();
    const refused = new Set(s.rcpts.filter((r) => r.reply !== '250').map((r) => domain(r.to)));
    const went = new Set(ok.map((r) => domain(r.to)));
    if (s.tx === 'refused') for (const d of went) refused.add(d);
    const touched = new Set<RouteDay>();
    for (const d of refused) {
      const e = this.route(t, d);
      e.refused++;
      touched.add(e);
    }
    if (s.tx === 'accepted') {
      for (const d of went) {
        const e = this.route(t, d);
        e.accepted++;
        e.kb += Math.ceil((s.size ?? 0) / 1024);
        touched.add(e);
      }
    }
    for (const e of touched) this.dirty.add(e);
  }

  /**
   * Writes the route counts changed since the last call to the store: the host calls it
   * every few seconds and at close, so a busy MX writes one row per domain and day per
   * interval, not one per transaction (that was ~0.1 ms of the main thread per message).
   */
  flush(): void {
    const t = this.now();
    const writer = this.writer ? `|${this.writer}` : '';
    for (const e of this.dirty) this.store?.cacheSet(`${CACHE_PREFIX.routes}${e.day}|${e.domain}${writer}`, JSON.stringify({ accepted: e.accepted, refused: e.refused, kb: e.kb }), (ROUTE_DAYS + 1) * 86_400, t);
    this.dirty.clear();
  }

  /** The counts of `domain` today (older than 31 days fall off). */
  private route(t: number, domain: string): RouteDay {
    const day = new Date(t).toISOString().slice(0, 10);
    const k = `${day}|${domain}`;
    let e = this.routes.get(k);
    if (!e) {
      this.routes.set(k, (e = { day, domain, accepted: 0, refused: 0, kb: 0 }));
      const oldest = new Date(t - ROUTE_DAYS * DAY).toISOString().slice(0, 10);
      for (const [key, x] of this.routes) if (x.day <= oldest) this.routes.delete(key);
    }
    return e;
  }

  /** STAT WINDOW: the last 60 minutes. */
  window(): Slot[] {
    return this.minutes.list(this.now());
  }

  /** The clients refused most in the last 60 minutes, most first. */
  topRefused(n = 10): { ip: string; refusals: number }[] {
    const sum = new Map<string, number>();
    for (const slot of this.window()) for (const [ip, k] of Object.entries(slot.refusedIp)) sum.set(ip, (sum.get(ip) ?? 0) + k);
    return [...sum].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, n).map(([ip, refusals]) => ({ ip, refusals }));
  }

  /** STAT HOURLY: the last 24 hours. */
  hourly(): Slot[] {
    return this.hours.list(this.now());
  }

  /** Route statistics of every writer, summed: newest day first, then by domain. */
  routeDays(): RouteDay[] {
    const sum = new Map<string, RouteDay>();
    const add = (e: RouteDay) => {
      const k = `${e.day}|${e.domain}`;
      const t = sum.get(k) ?? { day: e.day, domain: e.domain, accepted: 0, refused: 0, kb: 0 };
      sum.set(k, { ...t, accepted: t.accepted + e.accepted, refused: t.refused + e.refused, kb: t.kb + e.kb });
    };
    // Ours from memory (the store has them up to the last flush), the others' from the store.
    for (const e of this.routes.values()) add(e);
    const oldest = new Date(this.now() - ROUTE_DAYS * DAY).toISOString().slice(0, 10);
    for (const e of this.stored()) if (e.writer !== this.writer && e.day > oldest) add(e);
    return [...sum.values()].sort((a, b) => b.day.localeCompare(a.day) || a.domain.localeCompare(b.domain));
  }
}
