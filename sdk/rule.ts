import type { Phase, PhaseEvents } from './events.js';
import type { Verdict } from './verdicts.js';

/**
 * The watchlist store, shared by all rules and kept across restarts. Keys are shared
 * too: prefix them with your rule's name unless rules are meant to share a counter.
 * Times are the event's `session.time` (a fake clock in tests).
 */
export interface RuleStore {
  /**
   * Records one event under `key` and returns how many happened in the last
   * `windowSeconds`, this one included.
   * @example if (ctx.store.hit('auth-fail:' + ev.session.client.ip, 120) > 5) return drop('Too many failed logins')
   */
  hit(key: string, windowSeconds: number): number;
  /** How many events happened under `key` in the last `windowSeconds` (records nothing). */
  count(key: string, windowSeconds: number): number;
  /** The client's live blacklist entry, or null. */
  blacklisted(ip: string): { reason: string; rule: string; expires: number } | null;
  /**
   * Whether a local mailbox exists: 'unknown' for other domains and for local domains
   * with no mailbox list (every address is valid then); postmaster@ always exists.
   */
  mailbox(address: string): 'exists' | 'missing' | 'unknown';
  /** True for a domain we receive mail for (config localDomains). */
  localDomain(domain: string): boolean;
  listHas(list: string, value: string): boolean;
  listValues(list: string): string[];
  /** Adds a value to a named list (kept in the store, e.g. learned spam subjects). */
  listAdd(list: string, value: string): void;
}

/** What a handler may do besides returning a verdict. Effects accumulate across rules. */
export interface RuleContext<Options = Record<string, unknown>> {
  /** This rule's options from the config, validated against `RuleDefinition.options` and with its defaults filled in. */
  readonly options: Options;
  /**
   * Add a header field to the message if it is accepted (any phase before `message`
   * included). Names must be valid field names; values may not contain CR or LF.
   * @example ctx.addHeader('X-HELO', 'bare IP address')
   */
  addHeader(name: string, value: string): void;
  /**
   * Refuse every connection from this client for `ttlSeconds` (at most 30 days).
   * @example ctx.blacklist(3 * 3600, 'auth brute force')
   */
  blacklist(ttlSeconds: number, reason: string): void;
  /** Hold this phase's reply for `ms` milliseconds (a tarpit); the host caps the total. */
  delay(ms: number): void;
  /** Write a line to the host log, tagged with the rule and session. */
  log(message: string): void;
  /** The watchlist store (blacklist, counters, mailboxes, lists). */
  readonly store: RuleStore;
}

/** A handler for one phase: return a verdict, or nothing for no opinion. */
export type Handler<P extends Phase, Options> = (event: PhaseEvents[P], ctx: RuleContext<Options>) => Verdict | void;

/**
 * Extra data a rule asks the host to put into its events:
 * - `'body'`: the (capped) body in the `message` event;
 * - `'dnsbl:<zone>'`: the client IP looked up in a DNS block list → `ev.dns.dnsbl[zone]`;
 * - `'rhsbl:<zone>'`: the MAIL FROM domain looked up in a domain list → `ev.dns.rhsbl[zone]`;
 * - `'mx'`: the MAIL FROM domain's MX (or A/AAAA) → `ev.dns.mx`.
 *
 * The host looks them up (cached, in parallel, early: DNSBLs at connect, sender facts at
 * MAIL FROM) and waits for them only before a phase whose rules declared them.
 */
export type Need = 'body' | 'mx' | `dnsbl:${string}` | `rhsbl:${string}`;

/** A rule: what `defineRule` takes and a rule file default-exports. */
export interface RuleDefinition<Options = Record<string, unknown>> {
  /** Unique kebab-case name, used in config (`rules.settings.<name>`), logs and metrics. */
  name: string;
  /** One line on what the rule blocks; shown by the CLI. */
  description?: string;
  /** Lower runs first. Default 100. The config can override it. */
  priority?: number;
  /**
   * JSON Schema (draft 2020-12 subset that ajv accepts) of this rule's options, with a
   * `default` for each property. The host validates the config's options against it.
   */
  options?: Record<string, unknown>;
  /**
   * Extra event data to fetch (see `Need`). A function of the options when they name
   * the zones: `needs: (o) => ['dnsbl:' + o.zone]`. Evaluated once per rule load.
   */
  needs?: Need[] | ((options: Options) => Need[]);
  /** One handler per phase the rule cares about; phases without a handler cost nothing. */
  phases: { [P in Phase]?: Handler<P, Options> };
}

/**
 * Declare a rule. It returns its argument unchanged: it exists to give you types and
 * editor completion.
 * @example
 * import { defineRule, reject, next } from 'portcullis/sdk';
 * export default defineRule({
 *   name: 'no-blockme',
 *   phases: { rcpt: (ev) => (ev.rcpt.address.startsWith('blockme@') ? reject(550, 'Blocked') : next()) },
 * });
 */
export function defineRule<Options = Record<string, unknown>>(rule: RuleDefinition<Options>): RuleDefinition<Options> {
  return rule;
}

/** The effects of one rule call, as they cross the sandbox boundary. */
export interface Effects {
  headers?: [string, string][];
  blacklist?: { ttlSeconds: number; reason: string };
  delayMs?: number;
  logs?: string[];
}
