/**
 * The facts of a recorded session, by key (`RecordedSession.facts`): written by the
 * recording tap, read back in a replay in place of DNS, spamd and call-ahead, so a replay
 * needs no network and sees exactly what the live host saw (cache hits included).
 *
 * What is recorded is each fact's answer, not the DNS records behind it: SPF, DKIM, DMARC
 * and ARC results come from the record as mailauth computed them (a DKIM result needs the
 * body, which the record may not keep). A fact a candidate rule needs that the record
 * lacks (a new zone, DMARC where only DKIM was checked) is answered as a failed lookup
 * would be, and reported as missing: the replay counts it and says which.
 */
import type { CallaheadAnswer, DnsListAnswer, DnsMxAnswer, DnsNsAnswer, DnsPtrAnswer, MailboxState, SpamdFact, SpfAnswer } from '../../sdk/index.js';
import { noRecord, type MessageAuth } from '../dns/auth.js';
import type { DnsFactSource, HostAddresses, ListKind } from '../dns/checker.js';
import { spfIdentity } from '../dns/spf.js';

/** The key each fact is kept under. */
export const factKey = {
  list: (kind: ListKind, zone: string, subject: string) => `${kind}:${zone}:${subject.toLowerCase()}`,
  mx: (domain: string) => `mx:${domain.toLowerCase()}`,
  ns: (domain: string) => `ns:${domain.toLowerCase()}`,
  /** A link host's addresses (`uri-dns`, `uri-ptr`). */
  addresses: (host: string) => `address:${host.toLowerCase()}`,
  ptr: (ip: string) => `ptr:${ip}`,
  spf: (ip: string, sender: string, helo: string | null) => `spf:${ip}:${sender.toLowerCase()}:${helo ?? ''}`,
  /** DKIM/DMARC/ARC of the session's n-th message (from 0). */
  auth: (n: number) => `auth:${n}`,
  spamd: (n: number) => `spamd:${n}`,
  callahead: (rcpt: string) => `callahead:${rcpt.toLowerCase()}`,
  mailbox: (address: string) => `mailbox:${address.toLowerCase()}`,
  clientSessions: 'clientSessions',
} as const;

/** What a replay answers for a fact the record lacks (as the live host answers a failed lookup), and the need it is reported as. */
const FAILED_LIST: DnsListAnswer = Object.freeze({ status: 'error', codes: [], text: null });
const FAILED_MX: DnsMxAnswer = Object.freeze({ status: 'error', hosts: [] });

/**
 * A settled promise that says when someone waits for it. The session starts DNS lookups
 * early (SessionFacts.prefetch: client lists at connect) and waits only where a phase
 * needs them; a live session that ended first never got (so never recorded) the answer,
 * and a replay must count it as lacking only if a phase waits for it. A subclass, not a
 * patched native promise: `await` of a native promise never calls its `then`.
 */
class Watched<T> extends Promise<T> {
  static override get [Symbol.species](): PromiseConstructor {
    return Promise;
  }

  private waited: (() => void) | null = null;

  static of<T>(value: T, waited: () => void): Promise<T> {
    const p = new Watched<T>((ok) => ok(value));
    p.waited = waited;
    return p;
  }

  override then<A = T, B = never>(ok?: ((v: T) => A | PromiseLike<A>) | null, fail?: ((e: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    this.waited?.();
    return super.then(ok, fail);
  }
}

/** A recorded session's facts as the session's sources, noting each fact asked for that the record lacks. */
export class RecordedFacts {
  /** The facts asked for that the record lacks, by need (`dnsbl:zen.example`, `spf`, `dmarc`…). */
  readonly missing = new Set<string>();
  /** The message being replayed (the `n` of `auth:<n>`, `spamd:<n>`). */
  message = 0;

  constructor(private readonly facts: Record<string, unknown>) {}

  private get<T>(key: string, need: string): T | undefined {
    if (Object.hasOwn(this.facts, key)) return this.facts[key] as T;
    this.missing.add(need);
    return undefined;
  }

  /** The recorded answer under `key` (null: it could not be looked up), or `failed`, noted as lacking once a phase waits for it. */
  private prefetchable<T>(key: string, need: string, failed: T): Promise<T> | null {
    if (!Object.hasOwn(this.facts, key)) return Watched.of(failed, () => this.missing.add(need));
    const a = this.facts[key] as T | null;
    return a === null ? null : Promise.resolve(a);
  }

  readonly dns: DnsFactSource = {
    list: (kind, zone, subject) => this.prefetchable(factKey.list(kind, zone, subject), `${kind}:${zone}`, FAILED_LIST),
    mx: (domain) => this.prefetchable(factKey.mx(domain), 'mx', FAILED_MX),
    ns: (domain) => this.prefetchable<DnsNsAnswer>(factKey.ns(domain), 'ns', { status: 'error', domain: domain.toLowerCase(), hosts: [] }),
    addresses: (host) => this.prefetchable<HostAddresses>(factKey.addresses(host), 'uri-dns', { status: 'error', addresses: [] }),
    ptr: (ip) => this.prefetchable<DnsPtrAnswer>(factKey.ptr(ip), 'uri-ptr', { status: 'error', address: ip, names: [], ipInName: null }),
    spf: (ip, sender, helo) => this.prefetchable<SpfAnswer>(factKey.spf(ip, sender, helo), 'spf', { result: 'temperror', ...spfIdentity(sender, helo) }) ?? Promise.resolve({ result: 'temperror', ...spfIdentity(sender, helo) }),
    messageAuth: (_msg, _spf, want) => {
      const a = this.get<MessageAuth>(factKey.auth(this.message), 'dkim');
      if (a && want.dmarc && !a.dmarc) this.missing.add('dmarc');
      if (a && want.arc && !a.arc) this.missing.add('arc');
      return Promise.resolve({ dkim: a?.dkim ?? [], ...(want.dmarc ? { dmarc: a?.dmarc ?? noRecord('temperror', '', 0) } : {}), ...(want.arc ? { arc: a?.arc ?? { result: 'fail', instances: 0 } } : {}) });
    },
  };

  readonly spamd = { check: (): Promise<SpamdFact> => Promise.resolve(this.get<SpamdFact>(factKey.spamd(this.message), 'spamd') ?? { error: 'spamd: not in the record' }) };

  readonly callahead = { check: (rcpt: string): Promise<CallaheadAnswer> => Promise.resolve(this.get<CallaheadAnswer>(factKey.callahead(rcpt), 'callahead') ?? { result: 'unknown', reply: null }) };

  /** The mailbox state recorded for `address`, or what `current` says now (mailboxes are config, not traffic). */
  mailbox(address: string, current: (a: string) => MailboxState): MailboxState {
    const k = factKey.mailbox(address);
    return Object.hasOwn(this.facts, k) ? (this.facts[k] as MailboxState) : current(address);
  }

  clientSessions(): number {
    const n = this.facts[factKey.clientSessions];
    return typeof n === 'number' ? n : 1;
  }
}
