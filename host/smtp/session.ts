/**
 * One SMTP session's state and semantics, independent of the protocol library: each
 * method is one client command, runs its phase's rules, applies the decision's effects
 * and returns the reply that refuses the command (or null: the command proceeds) with
 * the decision behind it. The smtp-server adapter (server.ts) and the rule test harness
 * (host/testing) both drive this class, so a rule behaves in a test exactly as on the
 * wire. Its state is private; what callers may read is exposed read-only.
 */
import type { Logger } from 'pino';
import {
  RULE_LIMITS, TRANSACTION_PHASES,
  type Envelope, type EnvelopeAddress, type Json, type Phase, type PhaseEvent, type PhaseEvents, type SessionInfo,
} from '../../sdk/index.js';
import type { Config } from '../config/config.js';
import type { DnsFactSource } from '../dns/checker.js';
import { NO_FACTS, SessionFacts } from '../dns/facts.js';
import type { Disposition } from '../delivery/transaction.js';
import type { Metrics } from '../metrics.js';
import { domainOf, networkList, plainIp } from '../net.js';
import { NO_DECISION, type AddedHeader, type PhaseDecision, type Pipeline } from '../pipeline/pipeline.js';
import type { EventParts } from '../sandbox/chain.js';
import type { RuleSet } from '../pipeline/ruleset.js';
import type { AuthFacts } from '../delivery/auth-results.js';
import type { CallAhead } from '../delivery/callahead.js';
import type { SpamdClient } from '../content/spamd.js';
import { ruleView, type BlacklistStore, type MailboxDirectory, type WellBehavedStore } from '../store/ports.js';
import { acceptedMessage, messageFacts } from './message.js';
import { formatReply, REPLIES, replyFor, type Reply } from './reply.js';
import { describeSymbols, scoreRefusal, scoreTotal } from './score.js';

const STRENGTH: Record<Disposition['action'], number> = { deliver: 0, redirect: 1, discard: 2, quarantine: 3 };

function stronger(a: Disposition, b: Disposition): Disposition {
  return STRENGTH[b.action] > STRENGTH[a.action] ? b : a;
}

const DELIVER: Disposition = Object.freeze({ action: 'deliver', rule: null, reason: null });

export type { Disposition };

export interface Transaction {
  mail: (EnvelopeAddress & { size: number | null }) | null;
  rcpts: EnvelopeAddress[];
  failedRcpts: number;
  headers: AddedHeader[];
  /** Fields of the message as received that rules asked to remove (`ctx.removeHeader`), lower case. */
  removeHeaders: string[];
  disposition: Disposition;
  /** A rule accepted at mail or data: the rest of the transaction skips the rules. */
  whitelisted: boolean;
  notes: Record<string, Json>;
  /** Bumped on every change of what the envelope shows (its serialised form is cached by it). */
  version: number;
  /** A refusal decided at MAIL and held until RCPT (delayChecks). */
  held: HeldRefusal | null;
  /** Score symbols (`ctx.score`): the session's from before MAIL, then the transaction's. */
  symbols: Record<string, number>;
}

/** A refusal held until RCPT (config `delayChecks`): the decision, and where it was made. */
interface HeldRefusal {
  phase: 'connect' | 'helo' | 'mail';
  decision: PhaseDecision;
}

const HOLDABLE = new Set<Phase>(['connect', 'helo', 'mail']);

/** What the connection looks like from the outside, as the protocol layer knows it. */
export interface ConnectionFacts {
  id: string;
  ip: string;
  port: number;
  ptr: string | null;
  localIp: string;
  localPort: number;
  tls(): boolean;
}

/** Config-derived checks shared by every session of a host (built once per config). */
export class SessionPolicy {
  readonly isRelayClient: (ip: string) => boolean;
  readonly isExempt: (ip: string) => boolean;
  readonly acceptedDomains: Set<string>;
  /** Our domains, lower case (`session.local.domains`). */
  readonly localDomains: string[];
  /** The phases after which the score thresholds are checked (config `scores.phases`). */
  readonly scorePhases: ReadonlySet<Phase>;
  private readonly local: Set<string>;
  constructor(readonly config: Config) {
    this.isRelayClient = networkList(config.relayNetworks);
    this.isExempt = networkList(config.exemptNetworks);
    this.acceptedDomains = new Set([...config.localDomains, ...config.relayDomains].map((x) => x.toLowerCase()));
    this.localDomains = config.localDomains.map((d) => d.toLowerCase());
    this.scorePhases = new Set(config.scores.phases);
    this.local = new Set(this.localDomains);
  }
  isLocal(domain: string): boolean {
    return this.local.has(domain);
  }
}

/** The store as a session needs it: the blacklist and well-behaved marks rules' effects write, and which mailboxes exist. */
export type SessionStore = Pick<BlacklistStore, 'blacklistGet' | 'blacklistExtend'> & WellBehavedStore & Pick<MailboxDirectory, 'mailbox'>;

export interface SessionDeps {
  policy: SessionPolicy;
  pipeline: Pipeline;
  store: SessionStore;
  log: Logger;
  metrics: Metrics;
  /** Milliseconds since the epoch (a fake clock in tests). */
  now: () => number;
  /** Waits out a tarpit delay (tests record it instead). */
  delay: (ms: number) => Promise<void>;
  /** DNS lists and MX checks; null when DNS is off (config dns.servers empty). */
  dns: DnsFactSource | null;
  /** spamd, for rules that need `spamd`; null when config `spamd` is not set. */
  spamd: Pick<SpamdClient, 'check'> | null;
  /** The next hops' word on recipients, for rules that need `callahead`. */
  callahead: Pick<CallAhead, 'check'> | null;
  /** Sessions from `ip` open now, the connecting one included (the connect event's `clientSessions`). */
  clientSessions: (ip: string) => number;
}

/** An event as the session builds it; the DNS facts are added before the rules run. */
type BareEvent = { [P in Phase]: Omit<PhaseEvents[P], 'dns'> }[Phase];

const TX_PHASES: ReadonlySet<Phase> = new Set(TRANSACTION_PHASES);

/** What one command did: the reply that refuses it (null: it proceeds) and the decision behind it. */
export interface CommandResult {
  reply: Reply | null;
  decision: PhaseDecision;
}

/** What became of a message at end of data: refused (`reply`), or accepted (where it goes, the headers to add). */
export interface MessageResult extends CommandResult {
  /**
   * `message`: the message to deliver: as received, less forged Authentication-Results
   * fields and the fields rules removed (`removeHeaders`, lower case).
   */
  accepted: { disposition: Disposition; headers: [string, string][]; message: Buffer; removeHeaders: string[] } | null;
}

export class SmtpSession {
  readonly exempt: boolean;
  readonly relayClient: boolean;
  readonly submission: boolean;
  /** A rule accepted at connect, HELO or AUTH: the rest of the connection skips the rules. */
  private whitelisted = false;
  /** The connection was refused before the greeting: nothing after counts (see close). */
  private refusedAtConnect = false;
  /** A refusal decided at connect or HELO and held until RCPT (delayChecks). */
  private heldSession: HeldRefusal | null = null;
  /** Score symbols added before any transaction (connect, HELO, AUTH): each transaction starts with them. */
  private symbols: Record<string, number> = {};
  /** The rule that added each of `symbols` (withdrawn at AUTH like its headers). */
  private symbolRules: Record<string, string> = {};
  private heloSeen: SessionInfo['helo'] = null;
  private authUser: string | null = null;
  private completed = 0;
  private mailCommands = 0;
  private refusedRecipients = 0;
  /** The client carries a well-behaved mark: read from the store at connect, set when a rule marks it. */
  private wellBehaved: boolean;
  /** Headers and dispositions decided before any transaction (connect, HELO, AUTH). */
  private headers: AddedHeader[] = [];
  private dispositions: Disposition[] = [];
  private notes: Record<string, Json> = {};
  private current: Transaction;
  /** DNS facts of this session; null when DNS is off or no rule needs any. */
  private readonly facts: SessionFacts | null;
  /** The message at end of data (its DKIM and DMARC are facts of the message phase). */
  private received: Buffer | null = null;

  /** `ruleSet` is pinned by the caller for the whole session. */
  constructor(private readonly d: SessionDeps, readonly conn: ConnectionFacts, readonly ruleSet: RuleSet) {
    this.exempt = d.policy.isExempt(conn.ip);
    this.relayClient = d.policy.isRelayClient(conn.ip);
    this.submission = d.policy.config.submissionPorts.includes(conn.localPort);
    this.current = this.newTransaction();
    this.wellBehaved = d.store.wellBehaved(plainIp(conn.ip), d.now());
    // Exempt clients skip every rule, so nothing is looked up for them either.
    this.facts = d.dns && ruleSet.dnsAll.length && !this.exempt ? new SessionFacts(d.dns, plainIp(conn.ip), d.now, () => this.heloSeen?.name ?? null) : null;
  }

  /** The last accepted HELO/EHLO, or null. */
  get helo(): SessionInfo['helo'] {
    return this.heloSeen;
  }

  /** The authenticated user, or null. */
  get user(): string | null {
    return this.authUser;
  }

  /** The transaction in progress (read-only; a new one starts at MAIL FROM and after the message). */
  get tx(): Readonly<Transaction> {
    return this.current;
  }

  private newTransaction(): Transaction {
    const disposition = this.dispositions.reduce(stronger, DELIVER);
    return { mail: null, rcpts: [], failedRcpts: 0, headers: [], removeHeaders: [], disposition, whitelisted: false, notes: {}, version: 0, held: null, symbols: { ...this.symbols } };
  }

  info(): SessionInfo {
    const c = this.conn;
    return {
      id: c.id,
      time: this.d.now(),
      client: { ip: plainIp(c.ip), port: c.port, ptr: c.ptr, wellBehaved: this.wellBehaved },
      local: { ip: plainIp(c.localIp), port: c.localPort, submission: this.submission, hostname: this.d.policy.config.hostname, domains: this.d.policy.localDomains },
      helo: this.heloSeen,
      tls: c.tls(),
      user: this.authUser,
      transactions: this.completed,
      mailCommands: this.mailCommands,
      refusedRecipients: this.refusedRecipients,
      held: this.held && { phase: this.held.phase, rule: this.held.decision.rule ?? '' },
      notes: this.notes,
    };
  }

  /** The refusal held for RCPT, if any: the session's (connect, HELO) first, else the transaction's (MAIL). */
  private get held(): HeldRefusal | null {
    return this.heldSession ?? this.current.held;
  }

  private envelope(): Envelope {
    const tx = this.current;
    return { mailFrom: tx.mail, rcptTo: tx.rcpts, failedRcpts: tx.failedRcpts, score: { total: scoreTotal(tx.symbols), symbols: tx.symbols }, notes: tx.notes };
  }

  /** Bumped when session notes change (part of the session's cache key). */
  private notesVersion = 0;
  /** The serialised session and envelope of the last event, and what they were made from. */
  private cached = { sessionKey: '', session: '', tx: null as Transaction | null, txVersion: -1, envelope: '' };

  /**
   * The event as the sandbox takes it (see EventParts). The session and the envelope change
   * far less often than once per call, and serialising them is most of the main thread's
   * cost per call (ten recipients make a long envelope): they are cached, keyed by what
   * they are made of.
   */
  private partsOf(event: PhaseEvent): EventParts {
    const { session, ...rest } = event;
    const c = this.cached;
    const key = `${this.heloSeen?.verb}\0${this.heloSeen?.name}\0${this.authUser}\0${this.completed}\0${this.mailCommands}\0${this.refusedRecipients}\0${session.tls}\0${this.notesVersion}\0${session.held?.phase}\0${session.held?.rule}\0${this.wellBehaved}`;
    if (key !== c.sessionKey) {
      const { time: _time, ...timeless } = session;
      c.session = JSON.stringify(timeless);
      c.sessionKey = key;
    }
    let envelope = '';
    if ('envelope' in rest) {
      const tx = this.current;
      if (c.tx !== tx || c.txVersion !== tx.version) {
        c.envelope = JSON.stringify(rest.envelope);
        c.tx = tx;
        c.txVersion = tx.version;
      }
      envelope = c.envelope;
    }
    const { envelope: _envelope, ...own } = rest as typeof rest & { envelope?: unknown };
    return { sid: session.id, time: session.time, session: c.session, envelope, rest: JSON.stringify(own) };
  }

  /** An envelope address with what the host knows about it (domain, ours or not, mailbox). */
  private address(address: string, args: Record<string, string>): EnvelopeAddress {
    const domain = address.includes('@') ? domainOf(address) : '';
    const local = domain !== '' && this.d.policy.isLocal(domain);
    return { address, args, domain, local, mailbox: local ? this.d.store.mailbox(address) : 'unknown' };
  }

  /** Runs a phase's rules (unless the session or transaction skips them) and applies the decision. */
  private async phase(bare: BareEvent): Promise<CommandResult> {
    const p = bare.phase;
    const skip = this.exempt || this.whitelisted || (TX_PHASES.has(p) && this.current.whitelisted);
    let decision = NO_DECISION;
    if (!skip) {
      const sender = bare.phase === 'mail' ? bare.mail.address : (this.current.mail?.address ?? null);
      const msg = bare.phase === 'message' ? { raw: this.received ?? undefined, uris: bare.message.uris } : {};
      const dns = this.facts ? await this.facts.get(this.ruleSet.dns[p] ?? [], sender, msg.raw, msg.uris) : NO_FACTS;
      const event = { ...bare, dns } as PhaseEvent;
      decision = await this.d.pipeline.runPhase(this.ruleSet, event, () => this.partsOf(event));
    }
    return { reply: await this.apply(p, decision), decision };
  }

  /** Applies a decision's effects; returns the reply that refuses the command, or null. */
  private async apply(phase: Phase, d: PhaseDecision): Promise<Reply | null> {
    const inTx = TX_PHASES.has(phase);
    const ip = plainIp(this.conn.ip);
    const sid = this.conn.id;
    if (d.headers.length) (inTx ? this.current.headers : this.headers).push(...d.headers);
    for (const h of d.removeHeaders) if (inTx) this.current.removeHeaders.push(h.name.toLowerCase());
    if (d.notes.length) this.note(d, inTx);
    for (const { rule, symbol, points } of d.scores) {
      if (!inTx) {
        this.symbols[symbol] = points;
        this.symbolRules[symbol] = rule;
      }
      this.current.symbols[symbol] = points; // the transaction under way starts with the session's too
      this.current.version++;
    }
    if (d.blacklist) {
      this.d.store.blacklistExtend(ip, d.blacklist.ttlSeconds, d.blacklist.reason, d.blacklist.rule, this.d.now());
      this.d.log.info({ session: sid, ip, rule: d.blacklist.rule, ttl: d.blacklist.ttlSeconds }, `blacklisted ${ip}: ${d.blacklist.reason}`);
    }
    if (d.wellBehaved) {
      this.d.store.markWellBehaved(ip, d.wellBehaved.ttlSeconds, d.wellBehaved.rule, this.d.now());
      if (!this.wellBehaved) this.d.log.info({ session: sid, ip, rule: d.wellBehaved.rule, ttl: d.wellBehaved.ttlSeconds }, `marked ${ip} well-behaved for ${d.wellBehaved.ttlSeconds} s: its connections skip the greet pause`);
      this.wellBehaved = true;
    }
    const ruled = replyFor(phase, d, sid);
    const reply = ruled ?? this.overScore(phase, d);
    if (d.delayMs > 0) await this.d.delay(Math.min(d.delayMs, this.d.policy.config.limits.maxDelayMs));
    if (reply && this.d.policy.config.delayChecks && HOLDABLE.has(phase) && !d.failure && !this.held) {
      // Postfix's smtpd_delay_reject: the client goes on to say whom the mail is for, so a
      // recipient's whitelist can still win; each RCPT then gets this refusal (see rcpt).
      const held: HeldRefusal = { phase: phase as HeldRefusal['phase'], decision: d };
      if (phase === 'mail') this.current.held = held;
      else this.heldSession = held;
      this.d.log.info({ session: sid, ip, phase, rule: d.rule, reply: formatReply(reply) }, `holding the refusal of ${phase} from ${ip} until RCPT (delayChecks): ${formatReply(reply)}`);
      return null;
    }
    if (reply) {
      this.d.log.info({ session: sid, ip, phase, rule: d.rule, reply: formatReply(reply) }, `refused ${phase} from ${ip}: ${formatReply(reply)}`);
      this.d.metrics.inc('replies_refused_total', { phase, rule: ruled ? (d.rule ?? 'host') : 'scores' });
      return reply;
    }
    const v = d.verdict;
    if (v.action === 'accept') {
      if (!inTx) this.whitelisted = true;
      else if (phase !== 'rcpt') this.current.whitelisted = true; // a whitelisted recipient whitelists only itself
    } else if (v.action === 'discard' || v.action === 'quarantine' || v.action === 'redirect') {
      const disp: Disposition = { action: v.action, rule: d.rule, reason: v.reason ?? d.rule, ...(v.action === 'redirect' ? { address: v.address } : {}) };
      if (!inTx) this.dispositions.push(disp);
      this.current.disposition = stronger(this.current.disposition, disp);
    }
    return null;
  }

  /**
   * The refusal the transaction's score earns against the config's thresholds at a phase
   * `scores.phases` names, or null. Logged with its symbols: the client hears only the total.
   */
  private overScore(phase: Phase, d: PhaseDecision): Reply | null {
    if (!this.d.policy.scorePhases.has(phase)) return null;
    // Accepted by a rule (the session, the transaction, at RCPT this recipient, or now), or exempt: no score refuses it.
    if (d.verdict.action === 'accept' || this.exempt || this.whitelisted || this.current.whitelisted) return null;
    // A refusal held since connect, HELO or MAIL (delayChecks) answers every RCPT first, as it would have answered its own phase.
    if (phase === 'rcpt' && this.held) return null;
    const symbols = this.current.symbols;
    const r = scoreRefusal(symbols, this.d.policy.config.scores);
    if (r) this.d.log.info({ session: this.conn.id, phase, score: r.total, limit: r.limit, symbols }, `score ${r.total} at ${phase} is at or over ${r.limit}: ${describeSymbols(symbols)}`);
    return r?.reply ?? null;
  }

  /** Applies the notes of a decision; a write past the size limit is refused and logged. */
  private note(d: PhaseDecision, inTx: boolean): void {
    for (const [scope, key, ...value] of d.notes) {
      const notes = scope === 's' ? this.notes : inTx ? this.current.notes : null;
      if (!notes) continue;
      const before = notes[key];
      if (value.length) notes[key] = value[0]!;
      else delete notes[key];
      if (scope === 's') this.notesVersion++;
      else this.current.version++;
      if (JSON.stringify(notes).length <= RULE_LIMITS.notesBytes) continue;
      if (before === undefined) delete notes[key];
      else notes[key] = before;
      this.d.metrics.inc('notes_refused_total');
      this.d.log.warn({ session: this.conn.id, scope, key }, `note ${key} refused: the ${scope === 's' ? 'session' : 'transaction'} notes would exceed ${RULE_LIMITS.notesBytes} bytes`);
    }
  }

  /** The connection opened (before the greeting). */
  async connect(): Promise<CommandResult> {
    const info = this.info();
    this.d.log.info({ session: info.id, ip: info.client.ip, port: info.client.port, ptr: info.client.ptr, localPort: info.local.port, ruleSet: this.ruleSet.version, ...(this.exempt ? { exempt: true } : {}) }, `connect from ${info.client.ptr ?? 'unknown'}[${info.client.ip}]`);
    this.d.metrics.inc('sessions_total');
    this.facts?.prefetch(this.ruleSet.dnsAll, null); // client-IP lists, while the client waits for the greeting
    const e = this.d.store.blacklistGet(info.client.ip, info.time);
    const blacklist = e ? ruleView(e) : null;
    const r = await this.phase({ phase: 'connect', session: info, blacklist, clientSessions: this.d.clientSessions(this.conn.ip) });
    this.refusedAtConnect = r.reply !== null;
    return r;
  }

  async heloCommand(verb: 'HELO' | 'EHLO', name: string): Promise<CommandResult> {
    const helo = { verb, name };
    const r = await this.phase({ phase: 'helo', session: this.info(), helo });
    if (!r.reply) {
      this.heloSeen = helo;
      this.current = this.newTransaction(); // HELO/EHLO reset the transaction (RFC 5321 §4.1.4)
    }
    return r;
  }

  /** An AUTH attempt whose password was checked: a refusal, or null (the caller answers 235 or 535). */
  async auth(method: string, username: string, success: boolean): Promise<CommandResult> {
    const r = await this.phase({ phase: 'auth', session: this.info(), auth: { method, username, success } });
    if (r.reply) return r;
    if (!success) {
      this.d.log.info({ session: this.conn.id, ip: plainIp(this.conn.ip), user: username }, 'authentication failed');
      return { ...r, reply: REPLIES.authFailed };
    }
    this.authUser = username;
    this.withdrawForAuthenticated();
    return r;
  }

  /**
   * The client authenticated: what rules that skip authenticated clients decided before
   * AUTH (their headers, dispositions and score symbols from connect and HELO) no longer
   * applies: a mail client's EHLO DESKTOP-1 counts against no one who logged in.
   * AUTH is not allowed inside a transaction (RFC 4954 §4), so only session-level
   * decisions can be affected.
   */
  private withdrawForAuthenticated(): void {
    const skips = this.ruleSet.skipsAuthenticated;
    if (this.heldSession?.decision.rule && skips.has(this.heldSession.decision.rule)) this.heldSession = null;
    const withdrawn = this.headers.filter((h) => skips.has(h.rule));
    const symbols = Object.keys(this.symbols).filter((s) => skips.has(this.symbolRules[s]!));
    if (!withdrawn.length && !symbols.length && !this.dispositions.some((x) => x.rule !== null && skips.has(x.rule))) return;
    this.headers = this.headers.filter((h) => !skips.has(h.rule));
    for (const s of symbols) delete this.symbols[s];
    this.dispositions = this.dispositions.filter((x) => x.rule === null || !skips.has(x.rule));
    this.current = this.newTransaction();
    this.d.log.info({ session: this.conn.id, headers: withdrawn.map((h) => h.name), symbols }, 'authenticated: withdrew what rules that skip authenticated clients decided before AUTH');
  }

  async mail(address: string, args: Record<string, string>): Promise<CommandResult> {
    const size = args.SIZE !== undefined && /^\d+$/.test(args.SIZE) ? Number(args.SIZE) : null;
    this.current = this.newTransaction();
    this.mailCommands++;
    const mail = { ...this.address(address, args), size };
    this.facts?.prefetch(this.ruleSet.dnsAll, address); // sender-domain facts, while the rules look at MAIL
    const r = await this.phase({ phase: 'mail', session: this.info(), envelope: this.envelope(), mail });
    if (!r.reply) {
      this.current.mail = mail;
      this.current.version++;
    }
    return r;
  }

  async rcpt(address: string, args: Record<string, string>): Promise<CommandResult> {
    const tx = this.current;
    const rcpt = this.address(address, args);
    // Relay control comes before any rule, and no rule can lift it: never an open relay.
    if (rcpt.domain && !this.d.policy.acceptedDomains.has(rcpt.domain) && !this.authUser && !this.relayClient) {
      tx.failedRcpts++;
      this.refusedRecipients++;
      tx.version++;
      this.d.metrics.inc('replies_refused_total', { phase: 'rcpt', rule: 'relay-control' });
      this.d.log.info({ session: this.conn.id, ip: plainIp(this.conn.ip), rcpt: address }, `relaying denied for ${address} from ${plainIp(this.conn.ip)}`);
      return { reply: REPLIES.relayDenied, decision: NO_DECISION };
    }
    const callahead = this.callsAhead(rcpt) ? await this.d.callahead!.check(address, this.d.now()) : undefined;
    let r = await this.phase({ phase: 'rcpt', session: this.info(), envelope: this.envelope(), rcpt: callahead ? { ...rcpt, callahead } : rcpt });
    tx.version++;
    const held = this.held;
    if (held && r.decision.verdict.action !== 'accept') {
      const reply = replyFor('rcpt', held.decision, this.conn.id)!;
      this.d.log.info({ session: this.conn.id, ip: plainIp(this.conn.ip), phase: 'rcpt', rule: held.decision.rule, heldFrom: held.phase, reply: formatReply(reply) }, `refused rcpt ${address} from ${plainIp(this.conn.ip)} with the refusal held since ${held.phase}: ${formatReply(reply)}`);
      this.d.metrics.inc('replies_refused_total', { phase: 'rcpt', rule: held.decision.rule ?? 'host' });
      r = { reply, decision: held.decision };
    }
    if (r.reply) {
      tx.failedRcpts++;
      this.refusedRecipients++;
      return r;
    }
    // A repeated RCPT replaces the earlier one (as smtp-server does): count each address once.
    const key = address.toLowerCase();
    const i = tx.rcpts.findIndex((x) => x.address.toLowerCase() === key);
    if (i >= 0) tx.rcpts[i] = rcpt;
    else tx.rcpts.push(rcpt);
    return r;
  }

  /**
   * Whether to ask the next hop about `rcpt` (the `callahead` fact): a rule needs it, the
   * rules will run, the recipient is in a domain we take mail for (call-ahead verifies
   * inbound mail, not a user's outbound), and no refusal is held for RCPT (smtpf: with
   * delay-checks, a held refusal answers first and the call-ahead is skipped).
   */
  private callsAhead(rcpt: EnvelopeAddress): boolean {
    if (!this.ruleSet.needsCallahead || !this.d.callahead || this.exempt || this.whitelisted || this.current.whitelisted || this.held) return false;
    return this.d.policy.acceptedDomains.has(rcpt.domain);
  }

  /** RSET: the transaction is abandoned (RFC 5321 §4.1.1.5). */
  rset(): void {
    this.current = this.newTransaction();
  }

  async data(): Promise<CommandResult> {
    return this.phase({ phase: 'data', session: this.info(), envelope: this.envelope() });
  }

  /**
   * End of data: runs the message phase, then says whether the message is refused or
   * accepted (and where it goes, with the headers to add). Ends the transaction: read
   * `tx` before calling this for the envelope.
   */
  async message(msg: Buffer, o: { size?: number } = {}): Promise<MessageResult> {
    this.received = msg;
    try {
      const rs = this.ruleSet;
      let r: CommandResult;
      if (this.d.pipeline.handles(rs, 'message')) {
        const message = await messageFacts(msg, { ruleSet: rs, bodyLimit: this.d.policy.config.limits.bodyLimit, size: o.size, spamd: this.d.spamd, exempt: this.exempt });
        r = await this.phase({ phase: 'message', session: this.info(), envelope: this.envelope(), message });
      } else {
        // No rule runs at the end of the message, but its score may still refuse here (scores.phases).
        r = { reply: await this.apply('message', NO_DECISION), decision: NO_DECISION };
      }
      if (r.reply) return { ...r, accepted: null };
      const { config } = this.d.policy;
      const accepted = acceptedMessage(msg, {
        added: [...this.headers, ...this.current.headers].map((h): [string, string] => [h.name, h.value]),
        symbols: this.current.symbols, scores: config.scores, hostname: config.hostname,
        auth: await this.authFacts(msg), removeHeaders: this.current.removeHeaders,
      });
      return { ...r, accepted: { disposition: this.current.disposition, ...accepted } };
    } finally {
      this.received = null;
      this.completed++; // the transaction is over, whatever its outcome
      this.current = this.newTransaction();
    }
  }

  /**
   * What SPF, DKIM, DMARC and ARC gave for the message, for its Authentication-Results
   * field: the facts some rule needed (shared with the rules: nothing is checked twice),
   * checked even when the rules were skipped (a whitelisted transaction).
   */
  private async authFacts(msg: Buffer): Promise<AuthFacts> {
    const needs = this.ruleSet.dnsAll;
    const sender = this.current.mail?.address ?? null;
    if (!this.facts) return {};
    const f: AuthFacts = {};
    const kinds = new Set(needs.map((n) => n.kind));
    if (kinds.has('spf') || kinds.has('dmarc')) f.spf = await this.facts.spfKnown(sender);
    if (SessionFacts.wantsMessage(needs)) {
      const a = await this.facts.messageAuth(msg, sender, kinds.has('dmarc'), kinds.has('arc'));
      f.dkim = a.dkim;
      if (a.dmarc) f.dmarc = a.dmarc;
      if (a.arc) f.arc = a.arc;
      f.spf ??= await this.facts.spfKnown(sender);
    }
    return f;
  }

  /**
   * The connection ended. Verdicts are logged, nothing else. A connection refused before
   * its greeting (a blacklisted client) runs no close rules: it counts for nothing but
   * its own refusal (a connect flood is not a reconnecting blacklisted client).
   */
  async close(): Promise<CommandResult> {
    const r = this.refusedAtConnect ? { reply: null, decision: NO_DECISION } : await this.phase({ phase: 'close', session: this.info() });
    this.d.log.info({ session: this.conn.id, ip: plainIp(this.conn.ip), transactions: this.completed, user: this.authUser }, `disconnect from [${plainIp(this.conn.ip)}]`);
    return r;
  }
}
