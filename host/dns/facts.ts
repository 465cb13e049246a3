/**
 * Per-session DNS facts: what the rules declared they need (`needs`), looked up early
 * and in parallel — client-IP lists at connect, sender facts (MX, RHSBL, SPF) at MAIL
 * FROM — and awaited only before a phase whose rules need them, so rules stay
 * synchronous and a phase without DNS rules never waits for DNS.
 */
import type { DnsFacts, DnsListAnswer, DnsMxAnswer, SpfAnswer } from '../../sdk/index.js';
import { domainOf } from '../net.js';
import type { DnsChecker } from './checker.js';

export type DnsNeed = { kind: 'dnsbl' | 'rhsbl'; zone: string } | { kind: 'mx' } | { kind: 'spf' };

const ZONE = /^(?=.{1,200}$)[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)+$/i;

/** Needs the host meets beside DNS: the body, spamd's verdict, the next hop's word on a recipient. */
export const CONTENT_NEEDS = ['body', 'spamd', 'callahead'] as const;
export type ContentNeed = (typeof CONTENT_NEEDS)[number];

/** Parses one declared need: a content need, a DNS need, or an error message. */
export function parseNeed(s: string): DnsNeed | ContentNeed | { error: string } {
  if ((CONTENT_NEEDS as readonly string[]).includes(s)) return s as ContentNeed;
  if (s === 'mx' || s === 'spf') return { kind: s };
  const m = /^(dnsbl|rhsbl):(.*)$/.exec(s);
  if (m && ZONE.test(m[2]!)) return { kind: m[1] as 'dnsbl' | 'rhsbl', zone: m[2]!.toLowerCase() };
  if (m) return { error: `needs: "${s}": ${JSON.stringify(m[2])} is not a DNS zone name` };
  return { error: `needs: unknown need "${s}" (known: body, spamd, callahead, mx, spf, dnsbl:<zone>, rhsbl:<zone>)` };
}

/** A need as rules write it: `mx`, `spf`, `dnsbl:<zone>`… */
export const needName = (n: DnsNeed): string => ('zone' in n ? `${n.kind}:${n.zone}` : n.kind);

/** Deduplicates needs (by kind and zone). */
export function uniqueNeeds(needs: DnsNeed[]): DnsNeed[] {
  return [...new Map(needs.map((n) => [needName(n), n])).values()];
}

type Answer = DnsListAnswer | DnsMxAnswer | SpfAnswer;

export const NO_FACTS: DnsFacts = Object.freeze({ dnsbl: Object.freeze({}), rhsbl: Object.freeze({}) });

export class SessionFacts {
  /** Lookups started for this session, by need and subject. */
  private started = new Map<string, Promise<Answer> | null>();

  /** `helo`: the session's HELO name now (SPF checks it for the null sender). */
  constructor(private readonly checker: DnsChecker, private readonly ip: string, private readonly now: () => number, private readonly helo: () => string | null) {}

  /** Starts the lookups of `needs` that apply (IP lists always; sender facts with a sender). */
  prefetch(needs: DnsNeed[], sender: string | null): void {
    for (const n of needs) this.lookup(n, sender);
  }

  /** The facts for `needs`, waiting for lookups still running. */
  async get(needs: DnsNeed[], sender: string | null): Promise<DnsFacts> {
    if (!needs.length) return NO_FACTS;
    const facts: DnsFacts = { dnsbl: {}, rhsbl: {} };
    await Promise.all(
      needs.map(async (n) => {
        const answer = await this.lookup(n, sender);
        if (!answer) return;
        if (n.kind === 'mx') facts.mx = answer as DnsMxAnswer;
        else if (n.kind === 'spf') facts.spf = answer as SpfAnswer;
        else facts[n.kind][n.zone] = answer as DnsListAnswer;
      }),
    );
    return facts;
  }

  private lookup(n: DnsNeed, sender: string | null): Promise<Answer> | null {
    if (n.kind === 'spf') {
      // SPF needs MAIL FROM; with the null sender it checks the HELO name (RFC 7208 §2.4).
      if (sender === null) return null;
      const helo = this.helo();
      return this.once(`spf:${sender}\0${helo ?? ''}`, () => this.checker.spf(this.ip, sender, helo, this.now()));
    }
    // The null sender and a sender without a domain have no sender-domain facts.
    const subject = n.kind === 'dnsbl' ? this.ip : sender ? domainOf(sender) : '';
    if (!subject) return null;
    return this.once(`${needName(n)}:${subject}`, () => (n.kind === 'mx' ? this.checker.mx(subject, this.now()) : this.checker.list(n.kind, n.zone, subject, this.now())));
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
