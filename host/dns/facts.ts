/**
 * Per-session DNS facts: what the rules declared they need (`needs`), looked up early
 * and in parallel — client-IP lists at connect, sender facts (MX, NS, RHSBL, SPF) at
 * MAIL FROM, the message's own (DKIM, DMARC, ARC, its links) at end of data — and
 * awaited only before a phase whose rules need them, so rules stay synchronous and a
 * phase without DNS rules never waits for DNS.
 */
import { AUTH_NEEDS, CHECK_NEEDS, MESSAGE_NEEDS, type DnsFacts, type DnsListAnswer, type DnsMxAnswer, type DnsNsAnswer, type SpfAnswer, type UriFacts, type UriHostAnswer } from '../../sdk/index.js';
import { domainOf } from '../net.js';
import type { MessageAuth } from './auth.js';
import type { DnsFactSource } from './checker.js';

/** The message's authentication facts (the SDK's `AUTH_NEEDS`), looked up at end of data only. */
export type AuthNeed = (typeof AUTH_NEEDS)[number];

/** Lists keyed by zone: the client IP (`dnsbl`), the sender domain (`rhsbl`), the link hosts' domains (`uribl`) and IP links (`uribl-ip`). */
export type ZoneKind = 'dnsbl' | 'rhsbl' | 'uribl' | 'uribl-ip';

export type DnsNeed = { kind: ZoneKind; zone: string } | { kind: 'mx' } | { kind: 'ns' } | { kind: 'spf' } | { kind: 'uri-dns' | 'uri-ptr' } | { kind: AuthNeed };

const isAuthNeed = (s: string): s is AuthNeed => (AUTH_NEEDS as readonly string[]).includes(s);

/** Facts of the message's links (`uribl`, `uribl-ip`, `uri-dns`, `uri-ptr`): looked up at end of data only, from `ev.message.uris`. */
export const isUriNeed = (n: DnsNeed): boolean => n.kind === 'uribl' || n.kind === 'uribl-ip' || n.kind === 'uri-dns' || n.kind === 'uri-ptr';

const ZONE = /^(?=.{1,200}$)[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)+$/i;

/** Needs the host meets without DNS: reads of the message (`body`, `mime`) and checks by another server (`spamd`, `callahead`). */
export type HostNeed = (typeof MESSAGE_NEEDS)[number] | (typeof CHECK_NEEDS)[number];

/** Whether a declared need is one the host meets without DNS (see `HostNeed`). */
export const isHostNeed = (s: string): s is HostNeed => (MESSAGE_NEEDS as readonly string[]).includes(s) || (CHECK_NEEDS as readonly string[]).includes(s);

/** Parses one declared need: a host need, a DNS need, or an error message. */
export function parseNeed(s: string): DnsNeed | HostNeed | { error: string } {
  if (isHostNeed(s)) return s;
  if (s === 'mx' || s === 'ns' || s === 'spf' || s === 'uri-dns' || s === 'uri-ptr') return { kind: s };
  if (isAuthNeed(s)) return { kind: s };
  const m = /^(dnsbl|rhsbl|uribl|uribl-ip):(.*)$/.exec(s);
  if (m && ZONE.test(m[2]!)) return { kind: m[1] as ZoneKind, zone: m[2]!.toLowerCase() };
  if (m) return { error: `needs: "${s}": ${JSON.stringify(m[2])} is not a DNS zone name` };
  return { error: `needs: unknown need "${s}" (known: ${[...MESSAGE_NEEDS, ...CHECK_NEEDS].join(', ')}, mx, ns, spf, ${AUTH_NEEDS.join(', ')}, uri-dns, uri-ptr, dnsbl:<zone>, rhsbl:<zone>, uribl:<zone>, uribl-ip:<zone>)` };
}

/** A need as rules write it: `mx`, `spf`, `dnsbl:<zone>`… */
export const needName = (n: DnsNeed): string => ('zone' in n ? `${n.kind}:${n.zone}` : n.kind);

/** Deduplicates needs (by kind and zone). */
export function uniqueNeeds(needs: DnsNeed[]): DnsNeed[] {
  return [...new Map(needs.map((n) => [needName(n), n])).values()];
}

type Answer = DnsListAnswer | DnsMxAnswer | DnsNsAnswer | SpfAnswer;

export const NO_FACTS: DnsFacts = Object.freeze({ dnsbl: Object.freeze({}), rhsbl: Object.freeze({}) });

export class SessionFacts {
  /** Lookups started for this session, by need and subject. */
  private started = new Map<string, Promise<Answer> | null>();
  /** The message whose DKIM/DMARC/ARC are being checked, and that check (one per message). */
  private checked: { msg: Buffer; dmarc: boolean; arc: boolean; auth: Promise<MessageAuth> } | null = null;

  /** `helo`: the session's HELO name now (SPF checks it for the null sender). */
  constructor(private readonly checker: DnsFactSource, private readonly ip: string, private readonly now: () => number, private readonly helo: () => string | null) {}

  /** Starts the lookups of `needs` that apply (IP lists always; sender facts with a sender). */
  prefetch(needs: DnsNeed[], sender: string | null): void {
    for (const n of needs) this.lookup(n.kind === 'dmarc' ? { kind: 'spf' } : n, sender); // DMARC will want SPF
  }

  /** Whether `needs` include a fact of the message itself (DKIM, DMARC, ARC). */
  static wantsMessage(needs: DnsNeed[]): boolean {
    return needs.some((n) => isAuthNeed(n.kind));
  }

  /**
   * The facts for `needs`, waiting for lookups still running; the message's own (DKIM…)
   * only with `msg`, and its links' only with `uris`, at end of data.
   */
  async get(needs: DnsNeed[], sender: string | null, msg?: Buffer, uris?: UriFacts): Promise<DnsFacts> {
    if (!needs.length) return NO_FACTS;
    const facts: DnsFacts = { dnsbl: {}, rhsbl: {} };
    const kinds = new Set(needs.map((n) => n.kind));
    const own = AUTH_NEEDS.filter((k) => kinds.has(k));
    await Promise.all(
      needs.map(async (n) => {
        if (isAuthNeed(n.kind) || isUriNeed(n)) return;
        const answer = await this.lookup(n, sender);
        if (!answer) return;
        if (n.kind === 'mx') facts.mx = answer as DnsMxAnswer;
        else if (n.kind === 'ns') facts.ns = answer as DnsNsAnswer;
        else if (n.kind === 'spf') facts.spf = answer as SpfAnswer;
        else if (n.kind === 'dnsbl' || n.kind === 'rhsbl') facts[n.kind][n.zone] = answer as DnsListAnswer;
      }),
    );
    if (uris && needs.some(isUriNeed)) await this.uriFacts(needs, uris, facts);
    if (msg && own.length) {
      const auth = await this.messageAuth(msg, sender, kinds.has('dmarc'), kinds.has('arc'));
      if (kinds.has('dkim')) facts.dkim = auth.dkim;
      if (auth.dmarc && kinds.has('dmarc')) facts.dmarc = auth.dmarc;
      if (auth.arc && kinds.has('arc')) facts.arc = auth.arc;
    }
    return facts;
  }

  /**
   * The link hosts' facts, all at once (each lookup cached, and shared with any session
   * asking the same): their registered domains (or addresses) in the URI lists; for
   * `uri-dns`, whether each host resolves and its domain's name servers; for `uri-ptr`,
   * the reverse DNS of its first address.
   */
  private async uriFacts(needs: DnsNeed[], uris: UriFacts, facts: DnsFacts): Promise<void> {
    const now = this.now();
    const jobs: Promise<void>[] = [];
    for (const n of needs) {
      if (n.kind !== 'uribl' && n.kind !== 'uribl-ip') continue;
      const answers: Record<string, DnsListAnswer> = {};
      (facts.uribl ??= {})[n.zone] = answers;
      const subjects = new Set(uris.hosts.map((h) => (n.kind === 'uribl' ? h.domain : h.ip)).filter((x): x is string => x !== null));
      for (const s of subjects) {
        const p = this.checker.list(n.kind === 'uribl' ? 'rhsbl' : 'dnsbl', n.zone, s, now);
        if (p) jobs.push(p.then((a) => void (answers[s] = a)));
      }
    }
    const wantNs = needs.some((n) => n.kind === 'uri-dns');
    const wantPtr = needs.some((n) => n.kind === 'uri-ptr');
    if (wantNs || wantPtr) {
      const hosts: Record<string, UriHostAnswer> = {};
      facts.uriHosts = hosts;
      for (const h of uris.hosts) {
        const address = h.ip !== null ? Promise.resolve({ status: 'found' as const, addresses: [h.ip] }) : this.checker.addresses(h.host, now);
        if (!address) continue;
        const ns = wantNs && h.domain ? this.checker.ns(h.domain, now) : null;
        const ptr = wantPtr ? address.then((a) => (a.addresses[0] ? this.checker.ptr(a.addresses[0], now) : null)) : null;
        jobs.push(Promise.all([address, ns, ptr]).then(([a, n, p]) => void (hosts[h.host] = { address: a.status, ns: n, ptr: p })));
      }
    }
    await Promise.all(jobs);
  }

  /**
   * The DKIM check of `msg` (with DMARC, from this session's SPF answer, and ARC when
   * asked), made once per message: the rules' facts and the Authentication-Results
   * header share it. A later call asking for more checks again.
   */
  messageAuth(msg: Buffer, sender: string | null, dmarc: boolean, arc: boolean): Promise<MessageAuth> {
    const c = this.checked;
    if (c && c.msg === msg && (c.dmarc || !dmarc) && (c.arc || !arc)) return c.auth;
    const auth = (async () => {
      const spf = dmarc ? ((await this.lookup({ kind: 'spf' }, sender)) as SpfAnswer | null) : null;
      return this.checker.messageAuth(msg, spf, { dmarc, arc });
    })();
    this.checked = { msg, dmarc, arc, auth };
    return auth;
  }

  /** The SPF answer this session has (or is getting) for `sender`, without starting a check. */
  spfKnown(sender: string | null): Promise<SpfAnswer> | null {
    if (sender === null) return null;
    return (this.started.get(`spf:${sender}\0${this.helo() ?? ''}`) as Promise<SpfAnswer> | null | undefined) ?? null;
  }

  private lookup(n: DnsNeed, sender: string | null): Promise<Answer> | null {
    if (isAuthNeed(n.kind) || isUriNeed(n)) return null; // known at end of data only (get with the message)
    if (n.kind === 'spf') {
      // SPF needs MAIL FROM; with the null sender it checks the HELO name (RFC 7208 §2.4).
      if (sender === null) return null;
      const helo = this.helo();
      return this.once(`spf:${sender}\0${helo ?? ''}`, () => this.checker.spf(this.ip, sender, helo, this.now()));
    }
    // The null sender and a sender without a domain have no sender-domain facts.
    const subject = n.kind === 'dnsbl' ? this.ip : sender ? domainOf(sender) : '';
    if (!subject) return null;
    return this.once(`${needName(n)}:${subject}`, () => {
      if (n.kind === 'mx') return this.checker.mx(subject, this.now());
      if (n.kind === 'ns') return this.checker.ns(subject, this.now());
      return n.kind === 'dnsbl' || n.kind === 'rhsbl' ? this.checker.list(n.kind, n.zone, subject, this.now()) : null;
    });
  }

  /** The lookup started under `k` in this session, or `start`ed now. */
  private once(k: string, start: () => Promise<Answer> | null): Promise<Answer> | null {
    let p = this.started.get(k);
    if (p === undefined) {
      p = start();
      this.started.set(k, p);
    }
    return p;
  }
}
