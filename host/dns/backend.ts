/**
 * The record lookups DNS checks are made of. Production uses Node's resolver (c-ares)
 * pointed at the configured servers; the SDK test harness uses a table of answers.
 * Errors carry Node's codes: ENOTFOUND (NXDOMAIN), ENODATA (no such record), ETIMEOUT,
 * ESERVFAIL, ECONNREFUSED, EREFUSED…
 */
import { Resolver } from 'node:dns/promises';

export interface DnsBackend {
  a(name: string): Promise<string[]>;
  aaaa(name: string): Promise<string[]>;
  txt(name: string): Promise<string[]>;
  /** Exchanges sorted by preference. */
  mx(name: string): Promise<string[]>;
  /** The names of a reverse name (`4.3.2.1.in-addr.arpa`): SPF's `ptr` mechanism and `%{p}` macro (RFC 7208 §5.5, §7.3). */
  ptr(name: string): Promise<string[]>;
  /** The name servers a name delegates to (RFC 1035 §3.3.11): the sender's and link domains' NS facts. */
  ns(name: string): Promise<string[]>;
}

/** `servers`: ["system"] for /etc/resolv.conf, or "IP", "IP:PORT", "[IPv6]:PORT". */
export function nodeBackend(servers: string[], timeoutMs: number): DnsBackend {
  // One try: a DNSBL that does not answer within the timeout is skipped, not retried.
  const r = new Resolver({ timeout: timeoutMs, tries: 1 });
  if (!(servers.length === 1 && servers[0] === 'system')) r.setServers(servers);
  return withDeadline({
    a: (n) => r.resolve4(n),
    aaaa: (n) => r.resolve6(n),
    txt: async (n) => (await r.resolveTxt(n)).map((chunks) => chunks.join('')),
    mx: async (n) => (await r.resolveMx(n)).sort((x, y) => x.priority - y.priority).map((m) => m.exchange),
    ptr: (n) => r.resolvePtr(n),
    ns: (n) => r.resolveNs(n),
  }, timeoutMs);
}

/** The timer functions withDeadline uses; a test passes fakes it fires by hand. */
export interface DeadlineTimers {
  setTimeout(fire: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

export const realTimers: DeadlineTimers = {
  setTimeout: (fire, ms) => setTimeout(fire, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout),
};

/** One deadline for a whole check of several queries (SPF's check_host, a message's DKIM and DMARC). */
export interface CheckDeadline {
  /** True once `ms` has passed: no query should start after it. */
  readonly expired: boolean;
  /** Resolves 'expired' when it passes: race the check (or a query) against it. */
  readonly reached: Promise<'expired'>;
  /** The check is over: stops the timer. */
  clear(): void;
}

export function checkDeadline(ms: number, timers: DeadlineTimers = realTimers): CheckDeadline {
  let expired = false;
  let timer: unknown;
  const reached = new Promise<'expired'>((resolve) => {
    timer = timers.setTimeout(() => {
      expired = true;
      resolve('expired');
    }, ms);
  });
  return { get expired() { return expired; }, reached, clear: () => timers.clearTimeout(timer) };
}

/**
 * `backend` with each query bounded by our own deadline: a query still unanswered after
 * `ms` rejects with code ETIMEOUT, like a resolver timeout. Node's resolver checks its
 * timeouts on a coarse tick (a 2000 ms timeout held MAIL FROM for about 3 s), so the host
 * keeps its own clock. The query itself may go on; its late answer is dropped.
 */
export function withDeadline(backend: DnsBackend, ms: number, timers: DeadlineTimers = realTimers): DnsBackend {
  const bounded = (type: string, query: (name: string) => Promise<string[]>) => (name: string) => {
    const answer = query(name); // a query that throws at once does so before any timer exists
    return new Promise<string[]>((resolve, reject) => {
      const timer = timers.setTimeout(() => reject(Object.assign(new Error(`query${type} ETIMEOUT ${name} (no answer within ${ms} ms)`), { code: 'ETIMEOUT' })), ms);
      answer.then(
        (records) => {
          timers.clearTimeout(timer);
          resolve(records);
        },
        (e: unknown) => {
          timers.clearTimeout(timer);
          reject(e);
        },
      );
    });
  };
  return {
    a: bounded('A', (n) => backend.a(n)),
    aaaa: bounded('AAAA', (n) => backend.aaaa(n)),
    txt: bounded('TXT', (n) => backend.txt(n)),
    mx: bounded('MX', (n) => backend.mx(n)),
    ptr: bounded('PTR', (n) => backend.ptr(n)),
    ns: bounded('NS', (n) => backend.ns(n)),
  };
}

/** Fake answers for tests: name → records, or an error code (`'ETIMEOUT'`) for the whole name. */
export type DnsTable = Record<string, { A?: string[]; AAAA?: string[]; TXT?: string[]; MX?: string[]; PTR?: string[]; NS?: string[] } | string>;

export function tableBackend(table: DnsTable): DnsBackend {
  const entries = new Map(Object.entries(table).map(([k, v]) => [k.toLowerCase().replace(/\.$/, ''), v]));
  const look = (type: 'A' | 'AAAA' | 'TXT' | 'MX' | 'PTR' | 'NS') => async (name: string): Promise<string[]> => {
    const e = entries.get(name.toLowerCase());
    if (e === undefined) throw Object.assign(new Error(`queryA ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    if (typeof e === 'string') throw Object.assign(new Error(`query ${e} ${name}`), { code: e });
    const v = e[type];
    if (!v?.length) throw Object.assign(new Error(`query ENODATA ${name}`), { code: 'ENODATA' });
    return v;
  };
  return { a: look('A'), aaaa: look('AAAA'), txt: look('TXT'), mx: look('MX'), ptr: look('PTR'), ns: look('NS') };
}
