import type { FromSchema, JSONSchema } from 'json-schema-to-ts';
import type { BlacklistEntry, Json, Phase, PhaseEvents } from './events.js';
import type { Verdict } from './verdicts.js';

/**
 * The persistent store, shared by all rules and kept across restarts: only what must
 * outlive a session (watchlist counters, the blacklist, named lists). Per-session facts
 * go in notes (`ctx.note`), never here. Keys are shared too: prefix them with your rule's
 * name unless rules are meant to share a counter. Times are the event's `session.time`
 * (a fake clock in tests).
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
  /** An address's live blacklist entry, or null (the connecting client's is in the connect event). */
  blacklisted(ip: string): BlacklistEntry | null;
  /** True when the named list holds `value`. */
  listHas(list: string, value: string): boolean;
  /** The named list's values, in the order they were added. */
  listValues(list: string): string[];
  /** Adds a value to a named list (kept in the store, e.g. learned spam subjects). Rules only add: removing is the administrator's. */
  listAdd(list: string, value: string): void;
  /**
   * Keeps `value` under `key` for `ttlSeconds` (replacing what was there, and its time):
   * state that must outlive the session and expire, e.g. a greylisting triplet that passed.
   * @example ctx.store.remember('grey-pass:' + triplet, String(ev.session.time), 30 * 86400)
   */
  remember(key: string, value: string, ttlSeconds: number): void;
  /** What `remember` keeps under `key`, or null once it expired (or was never kept). */
  recall(key: string): string | null;
}

/**
 * The store operations, listed once: the sandbox builds `ctx.store` from this list and
 * the host answers exactly these (its table of operations is typed by `StoreOp`).
 */
export const STORE_OPS = ['hit', 'count', 'blacklisted', 'listHas', 'listValues', 'listAdd', 'remember', 'recall'] as const satisfies readonly (keyof RuleStore)[];
export type StoreOp = (typeof STORE_OPS)[number];
// Every RuleStore method is in STORE_OPS: adding one without listing it does not compile.
true satisfies Exclude<keyof RuleStore, StoreOp> extends never ? true : never;

/** Limits of what rules may ask of the host; the host enforces exactly these. */
export const RULE_LIMITS = {
  /** Longest store key, list name, list value. */
  storeKey: 512,
  listName: 64,
  listValue: 1000,
  /** Longest blacklist, `markWellBehaved` and `remember` TTL: 30 days. */
  maxSeconds: 30 * 24 * 3600,
  /** Longest watchlist window (`hit`, `count`): 7 days; the store keeps hits that long. */
  maxWatchSeconds: 7 * 24 * 3600,
  /** Header fields one rule call may add, and the longest value. */
  headers: 20,
  headerValue: 2000,
  /** Log lines one call may write, and the longest line. */
  logs: 10,
  /** Score symbols one call may add, and the largest points (either sign). */
  scores: 20,
  maxPoints: 1000,
  logLine: 1000,
  /** Longest note key, and the most a scope's notes may hold (as JSON). */
  noteKey: 128,
  notesBytes: 16 * 1024,
} as const;

/** RFC 5322 §3.6.8: a header field name is printable ASCII except ':' (we cap it at 76). */
export const HEADER_NAME_PATTERN = '^[!-9;-~]{1,76}$';

/** Writes notes for later rules and phases (see `SessionInfo.notes` and `Envelope.notes`). */
export interface NoteWriter {
  /**
   * Notes `value` under `key` for the rest of the connection (`ev.session.notes[key]` in
   * later rules and phases); `undefined` removes it.
   * @example ctx.note.session('my-rule.suspect', true)
   */
  session(key: string, value: Json | undefined): void;
  /**
   * Notes `value` under `key` for the rest of the transaction (`ev.envelope.notes[key]`),
   * from MAIL FROM to the end of the message; `undefined` removes it. Only in the phases
   * that have a transaction (mail, rcpt, data, message).
   * @example ctx.note.tx('my-rule.invalid-rcpts', ((ev.envelope.notes['my-rule.invalid-rcpts'] as number) ?? 0) + 1)
   */
  tx(key: string, value: Json | undefined): void;
}

/** What a handler may do besides returning a verdict. Effects accumulate across rules. */
export interface RuleContext<Options = Record<string, never>> {
  /** This rule's options from the config, validated against `RuleDefinition.options` and with its defaults filled in. */
  readonly options: Options;
  /**
   * Add a header field to the message if it is accepted (any phase before `message`
   * included). Names must be valid field names; values may not contain CR or LF.
   * @example ctx.addHeader('X-HELO', 'bare IP address')
   */
  addHeader(name: string, value: string): void;
  /**
   * Remove every field called `name` (any case) that came with the message, if it is
   * accepted (at the message phase; fields rules add are kept). With `addHeader` it
   * rewrites a field: remove `Subject`, add the tagged one.
   * @example for (const [n] of ev.message.headers) if (/^x-spam-/i.test(n)) ctx.removeHeader(n)
   */
  removeHeader(name: string): void;
  /**
   * Refuse every connection from this client for `ttlSeconds` (at most 30 days). An
   * entry that already lasts longer is kept: a rule only ever extends a block.
   * @example ctx.blacklist(3 * 3600, 'auth brute force')
   */
  blacklist(ttlSeconds: number, reason: string): void;
  /**
   * This client proved it is a real MTA (it retried after greylisting, say): for
   * `ttlSeconds` (at most 30 days) its connections skip the greet pause, and rules that
   * slow clients down (the tarpit) let it be. Rules read it in `session.client.wellBehaved`,
   * from the next phase of this session on. A mark that already lasts longer is kept
   * (smtpf 2.0's well-behaved hosts; postscreen's cache of clients that passed its tests).
   * @example if (!ev.session.client.wellBehaved) ctx.markWellBehaved(30 * 86400)
   */
  markWellBehaved(ttlSeconds: number): void;
  /** Hold this phase's reply for `ms` milliseconds (a tarpit); the host caps the total. */
  delay(ms: number): void;
  /** Write a line to the host log, tagged with the rule and session. */
  log(message: string): void;
  /**
   * Where an option's value came from, for log lines an admin can act on: the line of the
   * plain-text file (config `rules.settings.<name>.optionFiles`) that
   * `ctx.options[option][index]` was read from, or null when that option was not read
   * from a file (blank lines and # comments count: it is the line the admin's editor shows).
   * @example ctx.log(`pattern on line ${ctx.optionLine('patterns', i) ?? '?'} matched`)
   */
  optionLine(option: keyof Options & string, index: number): number | null;
  /**
   * Add `points` under `symbol` (a reason id: `REASON_PATTERN`) to the score of the
   * transaction (before MAIL: of the session, which every transaction of it starts with),
   * instead of deciding alone (Rspamd symbols, SpamAssassin tests, postscreen weights).
   * The config's `scores` thresholds turn the total into a tag, a tempfail or a reject
   * at the phases `scores.phases` names (default: data and message; rcpt refuses each
   * recipient); an accepted message carries the total and the symbols in a header. The same symbol twice in a transaction counts once, the last.
   * @example ctx.score('helo-unqualified', 2.5)
   */
  score(symbol: string, points: number): void;
  /** Per-session and per-transaction notes, for later rules and phases; never stored. */
  readonly note: NoteWriter;
  /** The persistent store (watchlists, blacklist, named lists). */
  readonly store: RuleStore;
}

/**
 * A rule's options as its handlers see them, derived from its JSON Schema: properties
 * with a `default` are always present. Write the schema inline in `defineRule` (or
 * `as const`) so its literal types are kept.
 */
export type OptionsOf<S> = S extends JSONSchema ? FromSchema<S> : Record<string, never>;

/** The schema of a rule without options. */
export type NoOptions = { readonly type: 'object'; readonly additionalProperties: false };

/** A handler for one phase: return a verdict, or nothing for no opinion. */
export type Handler<P extends Phase, Options> = (event: PhaseEvents[P], ctx: RuleContext<Options>) => Verdict | void;

/**
 * What a rule may ask to read of the message at its end (see `Need`), each an extra
 * cost paid only while some enabled rule asks for it.
 */
export const MESSAGE_NEEDS = ['body', 'mime', 'uris'] as const;

/**
 * The message's authentication a rule may ask for, known at the end of data only: DKIM
 * (RFC 6376), DMARC (RFC 7489, which needs SPF and DKIM) and ARC (RFC 8617), in `ev.dns`.
 */
export const AUTH_NEEDS = ['dkim', 'dmarc', 'arc'] as const;

/** What a rule may ask another server about, through the host: spamd's verdict on the message, the next hop's word on a recipient. */
export const CHECK_NEEDS = ['spamd', 'callahead'] as const;

/**
 * Extra data a rule asks the host to put into its events:
 * - `'body'`: the (capped) body in the `message` event;
 * - `'mime'`: the body's MIME parts decoded (text, HTML, attachment names, types and
 *   sizes) in `ev.message.mime` (see `MimeFacts`);
 * - `'uris'`: the hosts the text and HTML parts link to → `ev.message.uris` (see `UriFacts`);
 * - `'dnsbl:<zone>'`: the client IP looked up in a DNS block list → `ev.dns.dnsbl[zone]`;
 * - `'rhsbl:<zone>'`: the MAIL FROM domain looked up in a domain list → `ev.dns.rhsbl[zone]`;
 * - `'mx'`: the MAIL FROM domain's MX (or A/AAAA) → `ev.dns.mx`;
 * - `'ns'`: the MAIL FROM domain's name servers, each checked → `ev.dns.ns`;
 * - `'uribl:<zone>'`: the registered domain of each link host in a URI list (SURBL, URIBL,
 *   Spamhaus DBL) → `ev.dns.uribl[zone][domain]`, at `message` only;
 * - `'uribl-ip:<zone>'`: each link by IP address in an IP list → `ev.dns.uribl[zone][ip]`, at `message` only;
 * - `'uri-dns'`: each link host's address and its domain's name servers → `ev.dns.uriHosts[host]`, at `message` only;
 * - `'uri-ptr'`: each link host's address and its reverse DNS → `ev.dns.uriHosts[host].ptr`, at `message` only;
 * - `'spf'`: the client checked against the MAIL FROM domain's SPF policy → `ev.dns.spf`;
 * - `'dkim'`: the message's DKIM signatures checked (RFC 6376) → `ev.dns.dkim`, at `message` only;
 * - `'dmarc'`: the From domain's DMARC (RFC 7489) from SPF and DKIM → `ev.dns.dmarc`, at `message` only;
 * - `'arc'`: the message's ARC chain (RFC 8617) → `ev.dns.arc`, at `message` only;
 * - `'spamd'`: the message scored by SpamAssassin's spamd (config `spamd`) → `ev.message.spamd`;
 * - `'callahead'`: the recipient asked of the next hop (MAIL FROM:<>, RCPT TO) → `ev.rcpt.callahead`.
 *
 * The host looks them up (cached, in parallel, early: DNSBLs at connect, sender facts at
 * MAIL FROM) and waits for them only before a phase whose rules declared them.
 * @example needs: ['spf'], phases: { rcpt: (ev) => (ev.dns.spf?.result === 'pass' ? accept() : next()) }
 */
export type Need = (typeof MESSAGE_NEEDS)[number] | (typeof CHECK_NEEDS)[number] | (typeof AUTH_NEEDS)[number] | 'mx' | 'ns' | 'spf' | 'uri-dns' | 'uri-ptr' | `dnsbl:${string}` | `rhsbl:${string}` | `uribl:${string}` | `uribl-ip:${string}`;

/** Clients a rule does not run for. */
export interface Skip {
  /**
   * Authenticated clients (SMTP AUTH): the rule's handlers are not called once the
   * client authenticated, and the headers and score symbols it added before AUTH (at
   * connect or HELO) are withdrawn when the client authenticates.
   */
  authenticated?: boolean;
}

/** Source of the pattern of a rule's `name`: kebab-case, 1–63 characters. */
export const RULE_NAME_PATTERN = '^[a-z0-9][a-z0-9-]{0,62}$';

/** A rule: what `defineRule` takes and a rule file default-exports. */
export interface RuleDefinition<S = NoOptions> {
  /** Unique kebab-case name (`RULE_NAME_PATTERN`), used in config (`rules.settings.<name>`), logs and metrics. */
  name: string;
  /** One line on what the rule blocks; shown by the CLI. */
  description?: string;
  /** Lower runs first. Default 100. The config can override it. */
  priority?: number;
  /**
   * JSON Schema (draft 2020-12, as ajv takes it) of this rule's options, with a `default`
   * for each property. The host validates the config's options against it, and the
   * handlers' `ctx.options` get their type from it.
   */
  options?: S;
  /**
   * Extra event data to fetch (see `Need`). A function of the options when they name
   * the zones: `needs: (o) => ['dnsbl:' + o.zone]`. Evaluated once per rule load.
   */
  needs?: Need[] | ((options: OptionsOf<S>) => Need[]);
  /** Clients this rule never runs for, e.g. `{ authenticated: true }`. */
  skip?: Skip;
  /**
   * Whether the rule runs when the config says nothing of it. Default true. A rule that
   * would refuse ordinary mail until an admin has tuned it (greylisting, rate limits,
   * requiring SIZE) ships with `enabled: false`, and runs only where the config says
   * `rules.settings.<name>.enabled: true`; `enabled: false` there turns any rule off.
   */
  enabled?: boolean;
  /** One handler per phase the rule cares about; phases without a handler cost nothing. */
  phases: { [P in Phase]?: Handler<P, OptionsOf<S>> };
}

/**
 * Declare a rule. It returns its argument unchanged: it exists to give you types and
 * editor completion, including `ctx.options` typed from the `options` schema.
 * @example
 * import { defineRule, reject, next } from 'portcullis/sdk';
 * export default defineRule({
 *   name: 'no-blockme',
 *   options: { type: 'object', properties: { prefix: { type: 'string', default: 'blockme@' } } },
 *   phases: { rcpt: (ev, ctx) => (ev.rcpt.address.startsWith(ctx.options.prefix) ? reject(550, 'Blocked') : next()) },
 * });
 */
export function defineRule<const S extends JSONSchema = NoOptions>(rule: RuleDefinition<S>): RuleDefinition<S> {
  return rule;
}
