/**
 * Per-session DNS facts: what the rules declared they need (`needs`), looked up early
 * and in parallel — client-IP lists at connect, sender facts (MX, RHSBL, SPF) at MAIL
 * FROM — and awaited only before a phase whose rules need them, so rules stay
 * synchronous and a phase without DNS rules never waits for DNS.
 */
import { AUTH_NEEDS, CHECK_NEEDS, MESSAGE_NEEDS, type DnsFacts, type DnsListAnswer, type DnsMxAnswer, type SpfAnswer } from '../../sdk/index.js';
import { domainOf } from '../net.js';
import type { MessageAuth } from './auth.js';
import type { DnsFactSource } from './checker.js';

/** The message's authentication facts (the SDK's `AUTH_NEEDS`), looked up at end of data only. */
export type AuthNeed = (typeof AUTH_NEEDS)[number];

export type DnsNeed = { kind: 'dnsbl' | 'rhsbl'; zone: string } | { kind: 'mx' } | { kind: 'spf' } | { kind: AuthNeed };

const isAuthNeed = (s: string): s is AuthNeed => (AUTH_NEEDS as readonly string[]).includes(s);

const ZONE = /^(?=.{1,200}$)[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)+$/i;

/** Needs the host meets without DNS: reads of the message (`body`, `mime`) and checks by another server (`spamd`, `callahead`). */
export type HostNeed = (typeof MESSAGE_NEEDS)[number] | (typeof CHECK_NEEDS)[number];

/** Whether a declared need is one the host meets without DNS (see `HostNeed`). */
export const isHostNeed = (s: string): s is HostNeed => (MESSAGE_NEEDS as readonly string[]).includes(s) || (CHECK_NEEDS as readonly string[]).includes(s);

/** Parses one declared need: a host need, a DNS need, or an error message. */
export function parseNeed(s: string): DnsNeed | HostNeed | { error: string } {
  if (isHostNeed(s)) return s;
  if (s === 'mx' || s === 'spf') return { kind: s };
  if (isAuthNeed(s)) return { kind: s };
  const m = /^(dnsbl|rhsbl):(.*)$/.exec(s);
  if (m && ZONE.test(m[2]!)) return { kind: m[1] as 'dnsbl' | 'rhsbl', zone: m[2]!.toLowerCase() };
  if (m) return { error: `needs: "${s}": ${JSON.stringify(m[2])} is not a DNS zone name` };
  return { error: `needs: unknown need "${s}" (known: ${[...MESSAGE_NEEDS, ...CHECK_NEEDS].join(', ')}, mx, spf, ${AUTH_NEEDS.join(', ')}, dnsbl:<zone>, rhsbl:<zone>)` };
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

  /** The facts for `needs`, waiting for lookups still running; the message's own (DKIM…) only with `msg`, at end of data. */
  async get(needs: DnsNeed[], sender: string | null, msg?: Buffer): Promise<DnsFacts> {
    if (!needs.length) return NO_FACTS;
    const facts: DnsFacts = { dnsbl: {}, rhsbl: {} };
    const kinds = new Set(needs.map((n) => n.kind));
    const own = AUTH_NEEDS.filter((k) => kinds.has(k));
    await Promise.all(
      needs.map(async (n) => {
        if (isAuthNeed(n.kind)) return;
        const answer = await this.lookup(n, sender);
        if (!answer) return;
        if (n.kind === 'mx') facts.mx = answer as DnsMxAnswer;
        else if (n.kind === 'spf') facts.spf = answer as SpfAnswer;
        else if ('zone' in n) facts[n.kind][n.zone] = answer as DnsListAnswer;
      }),
    );
    if (msg && own.length) {
      const auth = await this.messageAuth(msg, sender, kinds.has('dmarc'), kinds.has('arc'));
      if (kinds.has('dkim')) facts.dkim = auth.dkim;
      if (auth.dmarc && kinds.has('dmarc')) facts.dmarc = auth.dmarc;
      if (auth.arc && kinds.has('arc')) facts.arc = auth.arc;
    }
    return facts;
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
    if (isAuthNeed(n.kind)) return null; // known at end of data only (get with the message)
    if (n.kind === 'spf') {
      // SPF needs MAIL FROM; with the null sender it checks the HELO name (RFC 7208 §2.4).
      if (sender === null) return null;
      const helo = this.helo();
      return this.once(`spf:${sender}\0${helo ?? ''}`, () => this.checker.spf(this.ip, sender, helo, this.now()));
    }
    // The null sender and a sender without a domain have no sender-domain facts.
    const subject = n.kind === 'dnsbl' ? this.ip : sender ? domainOf(sender) : '';
    if (!subject) return null;
    return this.once(`${needName(n)}:${subject}`, () => (n.kind === 'mx' ? this.checker.mx(subject, this.now()) : 'zone' in n ? this.checker.list(n.kind, n.zone, subject, this.now()) : null));
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
