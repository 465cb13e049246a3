/**
 * Per-session DNS facts: what the rules declared they need (`needs`), looked up early
 * and in parallel — client-IP lists at connect, sender-domain facts at MAIL FROM — and
 * awaited only before a phase whose rules need them, so rules stay synchronous and a
 * phase without DNS rules never waits for DNS.
 */
import { MESSAGE_NEEDS, type DnsFacts, type DnsListAnswer, type DnsMxAnswer } from '../../sdk/index.js';
import { domainOf } from '../net.js';
import type { DnsChecker } from './checker.js';

export type DnsNeed = { kind: 'dnsbl' | 'rhsbl'; zone: string } | { kind: 'mx' };

const ZONE = /^(?=.{1,200}$)[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)+$/i;

export type MessageNeed = (typeof MESSAGE_NEEDS)[number];

/** Whether a declared need is one of the message's (`body`, `mime`) rather than a DNS fact. */
export const isMessageNeed = (s: string): s is MessageNeed => (MESSAGE_NEEDS as readonly string[]).includes(s);

/** Parses one declared need: a message need (`body`, `mime`), a DNS fact, or an error message. */
export function parseNeed(s: string): DnsNeed | MessageNeed | { error: string } {
  if (isMessageNeed(s)) return s;
  if (s === 'mx') return { kind: 'mx' };
  const m = /^(dnsbl|rhsbl):(.*)$/.exec(s);
  if (m && ZONE.test(m[2]!)) return { kind: m[1] as 'dnsbl' | 'rhsbl', zone: m[2]!.toLowerCase() };
  if (m) return { error: `needs: "${s}": ${JSON.stringify(m[2])} is not a DNS zone name` };
  return { error: `needs: unknown need "${s}" (known: ${MESSAGE_NEEDS.join(', ')}, mx, dnsbl:<zone>, rhsbl:<zone>)` };
}

const key = (n: DnsNeed): string => (n.kind === 'mx' ? 'mx' : `${n.kind}:${n.zone}`);

/** Deduplicates needs (by kind and zone). */
export function uniqueNeeds(needs: DnsNeed[]): DnsNeed[] {
  return [...new Map(needs.map((n) => [key(n), n])).values()];
}

export const NO_FACTS: DnsFacts = Object.freeze({ dnsbl: Object.freeze({}), rhsbl: Object.freeze({}) });

export class SessionFacts {
  /** Lookups started for this session, by need and subject. */
  private started = new Map<string, Promise<DnsListAnswer | DnsMxAnswer> | null>();

  constructor(private readonly checker: DnsChecker, private readonly ip: string, private readonly now: () => number) {}

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
        else facts[n.kind][n.zone] = answer as DnsListAnswer;
      }),
    );
    return facts;
  }

  private lookup(n: DnsNeed, sender: string | null): Promise<DnsListAnswer | DnsMxAnswer> | null {
    // The null sender and a sender without a domain have no sender-domain facts.
    const subject = n.kind === 'dnsbl' ? this.ip : sender ? domainOf(sender) : '';
    if (!subject) return null;
    const k = `${key(n)}:${subject}`;
    let p = this.started.get(k);
    if (p === undefined) {
      p = n.kind === 'mx' ? this.checker.mx(subject, this.now()) : this.checker.list(n.kind, n.zone, subject, this.now());
      this.started.set(k, p);
    }
    return p;
  }
}
