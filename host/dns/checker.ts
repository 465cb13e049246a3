/**
 * DNS block lists, the sender-domain MX check and SPF, with a TTL cache in the store.
 *
 * The rules never see DNS errors as listings: a timeout or SERVFAIL gives `error`, which
 * is never cached and never "listed" (RFC 5782 §2.1 leaves the meaning of failures to
 * the client; every serious MTA fails open). NXDOMAIN and "no record" are cached like
 * listings (negative caching, RFC 2308), for `cacheTtlSeconds` (SmtpEvt: 30 minutes).
 */
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import { NS_MAX_HOSTS, type DnsListAnswer, type DnsMxAnswer, type DnsNsAnswer, type DnsPtrAnswer, type NsHost, type SpfAnswer, type UriHostAnswer } from '../../sdk/index.js';
import type { Metrics } from '../metrics.js';
import { CACHE_PREFIX, type TtlCache } from '../store/ports.js';
import { nodeBackend, realTimers, type DnsBackend } from './backend.js';
import { checkMessageAuth, dmarcSample, type MessageAuth } from './auth.js';
import { hostName, ipInName, registeredDomain } from './names.js';
import { checkSpf, spfIdentity } from './spf.js';

export type ListKind = 'dnsbl' | 'rhsbl';

/** A host's addresses, A records first, and whether it has any. */
export interface HostAddresses {
  status: UriHostAnswer['address'];
  addresses: string[];
}

/** Error codes that mean "the name or record does not exist" (a definite answer). */
const NOT_FOUND = new Set(['ENOTFOUND', 'ENODATA']);

const errorCode = (e: unknown): string => (e as { code?: string }).code ?? 'EUNKNOWN';

/** The DNSBL query name of an IP (RFC 5782 §2.1 for IPv4, §2.4 nibbles for IPv6). */
export function reversedIp(ip: string): string | null {
  if (isIP(ip) === 4) return ip.split('.').reverse().join('.');
  if (isIP(ip) !== 6) return null;
  const [head, tail = ''] = ip.toLowerCase().split('::') as [string, string?];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  if (t.some((g) => g.includes('.'))) return null; // IPv4-mapped forms are handled as IPv4 upstream
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => g.padStart(4, '0')).join('').split('').reverse().join('.');
}

/** A domain we may look up: letters, digits, hyphens, dots; no IP literal. */
const isLookupDomain = (d: string): boolean => /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/i.test(d) && isIP(d) === 0;

export interface DnsCheckerOptions {
  backend: DnsBackend;
  /** Where answers are cached (the store), for `ttlSeconds`. */
  cache: TtlCache;
  metrics: Metrics;
  log: Logger;
  ttlSeconds: number;
  /** The DNS deadline (config `dns.timeoutMs`): the backend applies it per query, SPF to its whole check. */
  timeoutMs: number;
  /** Each message's DMARC pct sample, 0–99 (`DmarcAnswer.sample`): random, unless a test fixes it. */
  dmarcSample?: () => number;
}

export class DnsChecker {
  /** Lookups in flight, shared by every session that asks the same thing at once. */
  private inflight = new Map<string, Promise<unknown>>();
  /** Zones that refused us recently (logged at most once every 10 minutes each). */
  private refusedLogged = new Map<string, number>();

  private readonly backend: DnsBackend;
  private readonly cache: TtlCache;
  private readonly metrics: Metrics;
  private readonly log: Logger;
  private readonly ttlSeconds: number;
  private readonly timeoutMs: number;
  private readonly dmarcSample: () => number;

  constructor(o: DnsCheckerOptions) {
    ({ backend: this.backend, cache: this.cache, metrics: this.metrics, log: this.log, ttlSeconds: this.ttlSeconds, timeoutMs: this.timeoutMs } = o);
    this.dmarcSample = o.dmarcSample ?? dmarcSample;
  }

  /** Looks `subject` (an IP for dnsbl, a domain for rhsbl) up in `zone`; null when it cannot be looked up. */
  list(kind: ListKind, zone: string, subject: string, now: number): Promise<DnsListAnswer> | null {
    const label = kind === 'dnsbl' ? reversedIp(subject) : isLookupDomain(subject) ? subject.toLowerCase() : null;
    if (!label) return null;
    return this.cached(`${CACHE_PREFIX.dns}${kind}:${zone}:${label}`, kind, now, () => this.queryList(`${label}.${zone}`, zone, subject), (a) => a.status !== 'error');
  }

  /** Whether `domain` can receive mail: MX, else A/AAAA (RFC 5321 §5.1); null MX (RFC 7505) = none. */
  mx(domain: string, now: number): Promise<DnsMxAnswer> | null {
    if (!isLookupDomain(domain)) return null;
    return this.cached(`${CACHE_PREFIX.dns}mx:${domain.toLowerCase()}`, 'mx', now, () => this.queryMx(domain), (a) => a.status !== 'error');
  }

  /**
   * The name servers of `domain`'s registered domain (where the registry delegates it),
   * at most `NS_MAX_HOSTS`, each with whether its own registered domain exists and the
   * address its name carries (smtpf 2.0's ns-nxdomain and ip-in-ns tests). Cached whole,
   * unless a lookup in it failed. Null for a name without a registered domain.
   */
  ns(domain: string, now: number): Promise<DnsNsAnswer> | null {
    const reg = registeredDomain(domain);
    if (!reg || !isLookupDomain(reg)) return null;
    return this.cached(`${CACHE_PREFIX.dns}ns:${reg}`, 'ns', now, () => this.queryNs(reg, now), (a) => a.status !== 'error' && a.hosts.every((h) => h.domainStatus !== 'error'));
  }

  /** The addresses of `host`, A then AAAA (a link host that does not resolve: smtpf's uri-reject-unknown). */
  addresses(host: string, now: number): Promise<HostAddresses> | null {
    if (!isLookupDomain(host)) return null;
    return this.cached(`${CACHE_PREFIX.dns}address:${host.toLowerCase()}`, 'address', now, () => this.queryAddresses(host), (a) => a.status !== 'error');
  }

  /** The reverse DNS of `ip` (smtpf's uri-require-ptr, uri-ip-in-ptr). */
  ptr(ip: string, now: number): Promise<DnsPtrAnswer> | null {
    const label = reversedIp(ip);
    if (!label) return null;
    const name = `${label}.${isIP(ip) === 4 ? 'in-addr' : 'ip6'}.arpa`;
    return this.cached(`${CACHE_PREFIX.dns}ptr:${ip}`, 'ptr', now, () => this.queryPtr(ip, name), (a) => a.status !== 'error');
  }

  /**
   * The SPF check (RFC 7208) of `ip` for the MAIL FROM `sender` ('' for the null sender:
   * the HELO name is checked, §2.4). Cached per client IP and domain; a temperror is not
   * cached, nor a result that depended on the sender's local part or HELO name.
   */
  spf(ip: string, sender: string, helo: string | null, now: number): Promise<SpfAnswer> {
    const { identity, domain } = spfIdentity(sender, helo);
    // §4.3: a name that is malformed or not multi-label (a bare HELO word, an IP literal) is "none", without DNS.
    if (!isLookupDomain(domain) || !domain.includes('.')) return Promise.resolve({ result: 'none', domain, identity });
    let personal = false;
    const check = async (): Promise<SpfAnswer> => {
      const o = await checkSpf(this.backend, { ip, sender, helo }, this.timeoutMs);
      personal = o.personal;
      if (o.why) this.log.info({ ip, sender, domain, result: o.answer.result }, `SPF check of ${ip} for ${domain}: ${o.answer.result} (${o.why})`);
      if (o.code) this.metrics.inc('dns_errors_total', { zone: 'spf', code: o.code });
      return o.answer;
    };
    // Sessions asking at once share a check only when they ask the same question (a
    // policy may read the local part or the HELO name, §7.2).
    const share = `dns:spf:${ip}:${sender.toLowerCase()}:${helo ?? ''}`;
    return this.cached(`dns:spf:${ip}:${domain}`, 'spf', now, check, (a) => a.result !== 'temperror' && !personal, share);
  }

  /**
   * DKIM, and as asked DMARC (from `spf` too) and ARC, of a received message (RFC 6376,
   * 7489, 8617). Never cached: each message is its own question.
   */
  async messageAuth(msg: Buffer, spf: SpfAnswer | null, want: { dmarc: boolean; arc: boolean }): Promise<MessageAuth> {
    this.metrics.inc('dns_lookups_total', { kind: 'message-auth' });
    const a = await checkMessageAuth(this.backend, msg, spf, want, this.timeoutMs, realTimers, this.dmarcSample());
    const temp = a.dkim.some((s) => s.result === 'temperror') || a.dmarc?.result === 'temperror';
    if (temp) {
      this.metrics.inc('dns_errors_total', { zone: 'message-auth', code: 'ETEMPERROR' });
      this.log.info({ dkim: a.dkim.map((s) => `${s.domain}:${s.result}`), dmarc: a.dmarc?.result }, 'DKIM/DMARC check of a message gave temperror (DNS failed or the deadline ran out)');
    }
    return a;
  }

  /** The answer under `key`: cached, else the one `query` gives (shared under `share` while it runs), cached when `cacheable`. */
  private cached<T>(key: string, kind: string, now: number, query: () => Promise<T>, cacheable: (a: T) => boolean, share = key): Promise<T> {
    const hit = this.cache.cacheGet(key, now);
    if (hit !== undefined) {
      this.metrics.inc('dns_cache_hits_total', { kind });
      return Promise.resolve(JSON.parse(hit) as T);
    }
    const running = this.inflight.get(share);
    if (running) return running as Promise<T>;
    this.metrics.inc('dns_lookups_total', { kind });
    const p = query()
      .then((a) => {
        if (cacheable(a) && this.ttlSeconds > 0) {
          this.cache.cacheSet(key, JSON.stringify(a), this.ttlSeconds, now);
        }
        return a;
      })
      .finally(() => this.inflight.delete(share));
    this.inflight.set(share, p);
    return p;
  }

  private async queryList(name: string, zone: string, subject: string): Promise<DnsListAnswer> {
    let codes: string[];
    try {
      codes = await this.backend.a(name);
    } catch (e) {
      const code = errorCode(e);
      if (NOT_FOUND.has(code)) return { status: 'clear', codes: [], text: null };
      return this.failed(zone, subject, code);
    }
    const ours = codes.filter((c) => c.startsWith('127.'));
    if (ours.length === 0) {
      // Answers outside 127/8 come from a resolver that rewrites NXDOMAIN, not from the list.
      this.log.warn({ zone, subject, codes }, `DNS list ${zone} answered ${codes.join(', ')} for ${subject}: not a list answer (a resolver rewriting NXDOMAIN?); treated as not listed`);
      return this.failed(zone, subject, 'EBADANSWER');
    }
    if (ours.every((c) => c.startsWith('127.255.255.'))) {
      // Spamhaus: 127.255.255.252–255 = the query was refused (public resolver, over quota, typo'd zone).
      this.metrics.inc('dns_refused_total', { zone });
      const last = this.refusedLogged.get(zone) ?? 0;
      if (Date.now() - last > 600_000) {
        this.refusedLogged.set(zone, Date.now());
        this.log.error({ zone, codes: ours }, `DNS list ${zone} REFUSED our queries (answer ${ours.join(', ')}): are you querying through a public resolver or over the list's quota? Its answers are treated as not listed`);
      }
      return { status: 'refused', codes: ours, text: null };
    }
    this.metrics.inc('dns_listed_total', { zone });
    const text = await this.backend.txt(name).then((t) => t.join(' ') || null, () => null);
    return { status: 'listed', codes: ours.sort(), text };
  }

  private failed(zone: string, subject: string, code: string): DnsListAnswer {
    this.metrics.inc('dns_errors_total', { zone, code });
    this.log.info({ zone, subject, code }, `DNS list ${zone} lookup for ${subject} failed (${code}): treated as not listed`);
    return { status: 'error', codes: [], text: null };
  }

  private async queryMx(domain: string): Promise<DnsMxAnswer> {
    try {
      const mx = await this.backend.mx(domain);
      // RFC 7505: a single MX of "." with preference 0 says the domain takes no mail.
      const hosts = mx.filter((h) => h !== '' && h !== '.');
      return hosts.length ? { status: 'found', hosts } : { status: 'none', hosts: [] };
    } catch (e) {
      const code = errorCode(e);
      if (code === 'ENOTFOUND') return { status: 'none', hosts: [] };
      if (code !== 'ENODATA') return this.mxFailed(domain, code);
    }
    // No MX: the domain itself is the implicit MX if it has an address (RFC 5321 §5.1).
    const answers = await Promise.allSettled([this.backend.a(domain), this.backend.aaaa(domain)]);
    if (answers.some((r) => r.status === 'fulfilled' && r.value.length)) return { status: 'found', hosts: [domain.toLowerCase()] };
    const failure = answers.find((r) => r.status === 'rejected' && !NOT_FOUND.has(errorCode(r.reason)));
    return failure?.status === 'rejected' ? this.mxFailed(domain, errorCode(failure.reason)) : { status: 'none', hosts: [] };
  }

  private async queryNs(domain: string, now: number): Promise<DnsNsAnswer> {
    let names: string[];
    try {
      names = (await this.backend.ns(domain)).map(hostName).filter((n) => n !== '');
    } catch (e) {
      const code = errorCode(e);
      if (NOT_FOUND.has(code)) return { status: 'none', domain, hosts: [] };
      this.lookupFailed('ns', { domain }, `NS lookup for ${domain}`, code);
      return { status: 'error', domain, hosts: [] };
    }
    const hosts = await Promise.all(
      [...new Set(names)].slice(0, NS_MAX_HOSTS).map(async (name): Promise<NsHost> => {
        const d = registeredDomain(name);
        // A name server inside the domain itself exists as surely as the delegation we just read.
        const domainStatus = d === null || d === domain ? 'exists' : await this.domainStatus(d, now);
        return { name, domain: d, domainStatus, ipInName: ipInName(name) };
      }),
    );
    return hosts.length ? { status: 'found', domain, hosts } : { status: 'none', domain, hosts: [] };
  }

  /** Whether a registered domain exists: any answer but NXDOMAIN to its NS query (RFC 8020: NXDOMAIN means nothing is under it either). */
  private domainStatus(domain: string, now: number): Promise<NsHost['domainStatus']> {
    const query = async (): Promise<NsHost['domainStatus']> => {
      try {
        await this.backend.ns(domain);
        return 'exists';
      } catch (e) {
        const code = errorCode(e);
        if (code === 'ENODATA') return 'exists';
        if (code === 'ENOTFOUND') return 'nxdomain';
        this.lookupFailed('ns', { domain }, `lookup of name server domain ${domain}`, code);
        return 'error';
      }
    };
    return this.cached(`${CACHE_PREFIX.dns}exists:${domain}`, 'exists', now, query, (a) => a !== 'error');
  }

  private async queryAddresses(host: string): Promise<HostAddresses> {
    const answers = await Promise.allSettled([this.backend.a(host), this.backend.aaaa(host)]);
    const addresses = answers.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
    if (addresses.length) return { status: 'found', addresses };
    const failure = answers.find((r) => r.status === 'rejected' && !NOT_FOUND.has(errorCode(r.reason)));
    if (failure?.status !== 'rejected') return { status: 'none', addresses: [] };
    const code = errorCode(failure.reason);
    this.lookupFailed('address', { host }, `address lookup for ${host}`, code);
    return { status: 'error', addresses: [] };
  }

  private async queryPtr(address: string, name: string): Promise<DnsPtrAnswer> {
    try {
      const names = (await this.backend.ptr(name)).map(hostName);
      return names.length ? { status: 'found', address, names, ipInName: ipInName(names[0]!) } : { status: 'none', address, names: [], ipInName: null };
    } catch (e) {
      const code = errorCode(e);
      if (NOT_FOUND.has(code)) return { status: 'none', address, names: [], ipInName: null };
      this.lookupFailed('ptr', { address }, `PTR lookup for ${address}`, code);
      return { status: 'error', address, names: [], ipInName: null };
    }
  }

  /** A lookup that failed other than by "no such name": counted under `zone` and logged, `what` naming it. */
  private lookupFailed(zone: string, subject: Record<string, string>, what: string, code: string): void {
    this.metrics.inc('dns_errors_total', { zone, code });
    this.log.info({ ...subject, code }, `${what} failed (${code})`);
  }

  private mxFailed(domain: string, code: string): DnsMxAnswer {
    this.metrics.inc('dns_errors_total', { zone: 'mx', code });
    this.log.info({ domain, code }, `MX lookup for ${domain} failed (${code}): treated as valid`);
    return { status: 'error', hosts: [] };
  }
}

/**
 * What a session asks of DNS (SessionFacts): the live checker, or in a recorded session's
 * replay the answers the record kept (host/record).
 */
export type DnsFactSource = Pick<DnsChecker, 'list' | 'mx' | 'ns' | 'addresses' | 'ptr' | 'spf' | 'messageAuth'>;

/** The checker for a config's `dns` section, or null when DNS is off (no servers). */
export function dnsCheckerFor(dns: { servers: string[]; timeoutMs: number; cacheTtlSeconds: number }, cache: TtlCache, metrics: Metrics, log: Logger, sample?: () => number): DnsChecker | null {
  if (!dns.servers.length) return null;
  return new DnsChecker({ backend: nodeBackend(dns.servers, dns.timeoutMs), cache, metrics, log, ttlSeconds: dns.cacheTtlSeconds, timeoutMs: dns.timeoutMs, dmarcSample: sample });
}
