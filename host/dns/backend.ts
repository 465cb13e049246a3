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
}

/** `servers`: ["system"] for /etc/resolv.conf, or "IP", "IP:PORT", "[IPv6]:PORT". */
export function nodeBackend(servers: string[], timeoutMs: number): DnsBackend {
  // One try: a DNSBL that does not answer within the timeout is skipped, not retried.
  const r = new Resolver({ timeout: timeoutMs, tries: 1 });
  if (!(servers.length === 1 && servers[0] === 'system')) r.setServers(servers);
  return {
    a: (n) => r.resolve4(n),
    aaaa: (n) => r.resolve6(n),
    txt: async (n) => (await r.resolveTxt(n)).map((chunks) => chunks.join('')),
    mx: async (n) => (await r.resolveMx(n)).sort((x, y) => x.priority - y.priority).map((m) => m.exchange),
  };
}

/** Fake answers for tests: name → records, or an error code (`'ETIMEOUT'`) for the whole name. */
export type DnsTable = Record<string, { A?: string[]; AAAA?: string[]; TXT?: string[]; MX?: string[] } | string>;

export function tableBackend(table: DnsTable): DnsBackend {
  const entries = new Map(Object.entries(table).map(([k, v]) => [k.toLowerCase().replace(/\.$/, ''), v]));
  const look = (type: 'A' | 'AAAA' | 'TXT' | 'MX') => async (name: string): Promise<string[]> => {
    const e = entries.get(name.toLowerCase());
    if (e === undefined) throw Object.assign(new Error(`queryA ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    if (typeof e === 'string') throw Object.assign(new Error(`query ${e} ${name}`), { code: e });
    const v = e[type];
    if (!v?.length) throw Object.assign(new Error(`query ENODATA ${name}`), { code: 'ENODATA' });
    return v;
  };
  return { a: look('A'), aaaa: look('AAAA'), txt: look('TXT'), mx: look('MX') };
}
