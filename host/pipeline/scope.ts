/**
 * Where a rule runs: `rules.settings.<name>.only` and `.except`, the config's answer to
 * Spammer Deterrent's check rules (`allow-filter:<client>:<from>:<to>` turns its content
 * filter on for some mail only) and to Postfix's per-client and per-recipient
 * restriction classes. A rule is written once; the admin says for whom it runs.
 *
 * A scope matches an event when every part it gives matches:
 * - `clients`: the client's address is in one of these networks (known at every phase);
 * - `senders`: the MAIL FROM address (known from the mail phase on);
 * - `recipients`: at rcpt, the recipient being given; later (data, message), any of the
 *   transaction's recipients.
 * A part the phase cannot know yet (the sender at connect, the recipients at mail) does
 * not match: a rule kept to some senders does not run before MAIL, and a rule that
 * excepts some recipients still runs at MAIL.
 */
import type { PhaseEvent } from '../../sdk/index.js';
import type { RuleScope } from '../config/config.js';
import { domainOf, networkList } from '../net.js';

/** Whether `ev` is in the scope. */
export type ScopeTest = (ev: PhaseEvent) => boolean;

/**
 * Address patterns, case-insensitive: `user@example.org` that address, `example.org` any
 * address at that domain, `.example.org` any at its subdomains (Postfix's notation), and
 * `<>` the null sender (RFC 5321 §4.5.5: bounces and other notifications).
 */
export function addressTest(patterns: readonly string[]): (address: string) => boolean {
  const exact = new Set<string>();
  const domains = new Set<string>();
  const parents: string[] = [];
  for (const p of patterns.map((s) => s.toLowerCase())) {
    if (p === '<>') exact.add('');
    else if (p.includes('@')) exact.add(p);
    else if (p.startsWith('.')) parents.push(p);
    else domains.add(p);
  }
  return (address) => {
    const a = address.toLowerCase();
    const d = domainOf(a);
    return exact.has(a) || (d !== '' && (domains.has(d) || parents.some((s) => d.endsWith(s))));
  };
}

export function scopeTest(scope: RuleScope): ScopeTest {
  const client = scope.clients && networkList(scope.clients);
  const sender = scope.senders && addressTest(scope.senders);
  const rcpt = scope.recipients && addressTest(scope.recipients);
  return (ev) => {
    if (client && !client(ev.session.client.ip)) return false;
    if (sender) {
      const from = ev.phase === 'mail' ? ev.mail : 'envelope' in ev ? ev.envelope?.mailFrom : null;
      if (!from || !sender(from.address)) return false;
    }
    if (rcpt) {
      if (ev.phase === 'rcpt') return rcpt(ev.rcpt.address);
      if (!('envelope' in ev && ev.envelope?.rcptTo.some((r) => rcpt(r.address)))) return false;
    }
    return true;
  };
}

/** The place in words, for `portcullis check`: `only recipients example.org; except clients 192.0.2.0/24`. */
export function describePlace(only: RuleScope | undefined, except: RuleScope | undefined): string | null {
  const words = (s: RuleScope) => Object.entries(s).map(([part, list]) => `${part} ${(list as string[]).join(' ')}`).join(', ');
  const out = [only && `only ${words(only)}`, except && `except ${words(except)}`].filter(Boolean);
  return out.length ? out.join('; ') : null;
}

/** A rule's place: it runs where `only` matches (when given) and `except` does not. */
export function placeTest(only: RuleScope | undefined, except: RuleScope | undefined): ScopeTest | null {
  if (!only && !except) return null;
  const inOnly = only ? scopeTest(only) : () => true;
  const inExcept = except ? scopeTest(except) : () => false;
  return (ev) => inOnly(ev) && !inExcept(ev);
}
