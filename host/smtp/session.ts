/**
 * One SMTP session's state and semantics, independent of the protocol library: each
 * method is one client command, runs its phase's rules, applies the decision's effects
 * and returns the reply that refuses the command (or null: the command proceeds). The
 * smtp-server adapter (server.ts) and the rule test harness (sdk/testing) both drive
 * this class, so a rule behaves in a test exactly as on the wire.
 */
import type { Logger } from 'pino';
import type { Envelope, EnvelopeAddress, Phase, PhaseEvent, PhaseEvents, SessionInfo } from '../../sdk/index.js';
import type { Config } from '../config/config.js';
import type { DnsChecker } from '../dns/checker.js';
import { NO_FACTS, SessionFacts } from '../dns/facts.js';
import type { Counters } from '../metrics.js';
import { domainOf, networkList, plainIp } from '../net.js';
import { NO_DECISION, type PhaseDecision, type Pipeline } from '../pipeline/pipeline.js';
import type { RuleSet } from '../pipeline/ruleset.js';
import type { MemoryStore } from '../store/store.js';
import { bodyOffset, parseHeaders } from './message.js';
import { dropReply, formatReply, REPLIES, verdictReply, type Reply } from './reply.js';

/** Where an accepted message goes. Stronger dispositions win: quarantine > discard > redirect > deliver. */
export interface Disposition {
  action: 'deliver' | 'redirect' | 'discard' | 'quarantine';
  rule: string | null;
  reason: string | null;
  address?: string;
}

const STRENGTH: Record<Disposition['action'], number> = { deliver: 0, redirect: 1, discard: 2, quarantine: 3 };

function stronger(a: Disposition, b: Disposition): Disposition {
  return STRENGTH[b.action] > STRENGTH[a.action] ? b : a;
}

const DELIVER: Disposition = Object.freeze({ action: 'deliver', rule: null, reason: null });

export interface Transaction {
  mail: (EnvelopeAddress & { size: number | null }) | null;
  rcpts: EnvelopeAddress[];
  failedRcpts: number;
  headers: [string, string][];
  disposition: Disposition;
  /** A rule accepted at mail or data: the rest of the transaction skips the rules. */
  whitelisted: boolean;
}

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

/** Config-derived checks shared by every session of a host (built once). */
export class SessionPolicy {
  readonly isRelayClient: (ip: string) => boolean;
  readonly isExempt: (ip: string) => boolean;
  readonly acceptedDomains: Set<string>;
  constructor(readonly config: Config) {
    this.isRelayClient = networkList(config.relayNetworks);
    this.isExempt = networkList(config.exemptNetworks);
    this.acceptedDomains = new Set([...config.localDomains, ...config.relayDomains].map((x) => x.toLowerCase()));
  }
}

export interface SessionDeps {
  policy: SessionPolicy;
  pipeline: Pipeline;
  /** The watchlist store (the blacklist effect writes there). */
  store: MemoryStore;
  log: Logger;
  counters: Counters;
  /** Milliseconds since the epoch (a fake clock in tests). */
  now: () => number;
  /** Waits out a tarpit delay (tests record it instead). */
  delay: (ms: number) => Promise<void>;
  /** DNS lists and MX checks; null when DNS is off (config dns.servers empty). */
  dns: DnsChecker | null;
}

/** An event as the session builds it; the DNS facts are added before the rules run. */
type BareEvent = { [P in Phase]: Omit<PhaseEvents[P], 'dns'> }[Phase];

/** Phases whose verdicts apply to the whole connection rather than one transaction. */
const SESSION_PHASES: ReadonlySet<Phase> = new Set(['connect', 'helo', 'auth']);

/** What became of a message at end of data. */
export type MessageOutcome =
  | { reply: Reply }
  | { accepted: { disposition: Disposition; headers: [string, string][] } };

export class SmtpSession {
  readonly exempt: boolean;
  readonly relayClient: boolean;
  readonly submission: boolean;
  /** A rule accepted at connect, HELO or AUTH: the rest of the connection skips the rules. */
  private whitelisted = false;
  helo: SessionInfo['helo'] = null;
  user: string | null = null;
  transactions = 0;
  /** Headers and disposition decided before any transaction (connect, HELO, AUTH). */
  private headers: [string, string][] = [];
  private disposition: Disposition = DELIVER;
  tx: Transaction;
  /** The decision of the last phase run (for the test harness). */
  last: PhaseDecision = NO_DECISION;
  /** DNS facts of this session; null when DNS is off or no rule needs any. */
  private readonly facts: SessionFacts | null;

  /** `ruleSet` is pinned by the caller for the whole session. */
  constructor(private readonly d: SessionDeps, readonly conn: ConnectionFacts, readonly ruleSet: RuleSet) {
    this.exempt = d.policy.isExempt(conn.ip);
    this.relayClient = d.policy.isRelayClient(conn.ip);
    this.submission = d.policy.config.submissionPorts.includes(conn.localPort);
    this.tx = this.newTransaction();
    // Exempt clients skip every rule, so nothing is looked up for them either.
    this.facts = d.dns && ruleSet.dnsAll.length && !this.exempt ? new SessionFacts(d.dns, plainIp(conn.ip), d.now) : null;
  }

  private newTransaction(): Transaction {
    return { mail: null, rcpts: [], failedRcpts: 0, headers: [], disposition: this.disposition, whitelisted: false };
  }

  info(): SessionInfo {
    const c = this.conn;
    return {
      id: c.id,
      time: this.d.now(),
      client: { ip: plainIp(c.ip), port: c.port, ptr: c.ptr },
      local: { ip: plainIp(c.localIp), port: c.localPort, submission: this.submission },
      helo: this.helo,
      tls: c.tls(),
      user: this.user,
      transactions: this.transactions,
    };
  }

  private envelope(): Envelope {
    return { mailFrom: this.tx.mail, rcptTo: this.tx.rcpts, failedRcpts: this.tx.failedRcpts };
  }

  /** Runs a phase's rules (unless the session or transaction skips them) and applies the decision. */
  private async phase(bare: BareEvent): Promise<Reply | null> {
    const p = bare.phase;
    const skip = this.exempt || this.whitelisted || (!SESSION_PHASES.has(p) && this.tx.whitelisted);
    let d = NO_DECISION;
    if (!skip) {
      const sender = bare.phase === 'mail' ? bare.mail.address : (this.tx.mail?.address ?? null);
      const dns = this.facts ? await this.facts.get(this.ruleSet.dns[p] ?? [], sender) : NO_FACTS;
      d = await this.d.pipeline.run(this.ruleSet, { ...bare, dns } as PhaseEvent);
    }
    this.last = d;
    return this.decide(p, d);
  }

  /** Applies a decision's effects; returns the reply that refuses the command, or null. */
  private async decide(phase: Phase, d: PhaseDecision): Promise<Reply | null> {
    const sessionLevel = SESSION_PHASES.has(phase);
    const ip = plainIp(this.conn.ip);
    const sid = this.conn.id;
    if (d.headers.length) (sessionLevel ? this.headers : this.tx.headers).push(...d.headers);
    if (d.blacklist) {
      this.d.store.blacklistAdd(ip, d.blacklist.ttlSeconds, d.blacklist.reason, d.blacklist.rule, this.d.now());
      this.d.log.info({ session: sid, ip, rule: d.blacklist.rule, ttl: d.blacklist.ttlSeconds }, `blacklisted ${ip}: ${d.blacklist.reason}`);
    }
    const reply = replyFor(phase, d, sid);
    if (d.delayMs > 0) await this.d.delay(Math.min(d.delayMs, this.d.policy.config.limits.maxDelayMs));
    if (reply) {
      this.d.log.info({ session: sid, ip, phase, rule: d.rule, reply: formatReply(reply) }, `refused ${phase} from ${ip}: ${formatReply(reply)}`);
      this.d.counters.inc('replies_refused_total', { phase, rule: d.rule ?? 'host' });
      return reply;
    }
    const v = d.verdict;
    if (v.action === 'accept') {
      if (sessionLevel) this.whitelisted = true;
      else if (phase !== 'rcpt') this.tx.whitelisted = true; // a whitelisted recipient whitelists only itself
    } else if (v.action === 'discard' || v.action === 'quarantine' || v.action === 'redirect') {
      const disp = { action: v.action, rule: d.rule, reason: v.reason ?? d.rule, ...(v.action === 'redirect' ? { address: v.address } : {}) };
      if (sessionLevel) this.disposition = stronger(this.disposition, disp);
      this.tx.disposition = stronger(this.tx.disposition, disp);
    }
    return null;
  }

  /** The connection opened (before the greeting). */
  async connect(): Promise<Reply | null> {
    const info = this.info();
    this.d.log.info({ session: info.id, ip: info.client.ip, port: info.client.port, ptr: info.client.ptr, localPort: info.local.port, ruleSet: this.ruleSet.version, ...(this.exempt ? { exempt: true } : {}) }, `connect from ${info.client.ptr ?? 'unknown'}[${info.client.ip}]`);
    this.d.counters.inc('connections_total');
    this.facts?.prefetch(this.ruleSet.dnsAll, null); // client-IP lists, while the client waits for the greeting
    return this.phase({ phase: 'connect', session: info });
  }

  async heloCommand(verb: 'HELO' | 'EHLO', name: string): Promise<Reply | null> {
    const helo = { verb, name };
    const reply = await this.phase({ phase: 'helo', session: this.info(), helo });
    if (!reply) {
      this.helo = helo;
      this.tx = this.newTransaction(); // HELO/EHLO reset the transaction (RFC 5321 §4.1.4)
    }
    return reply;
  }

  /** An AUTH attempt whose password was checked: a refusal, or null (the caller answers 235 or 535). */
  async auth(method: string, username: string, success: boolean): Promise<Reply | null> {
    const reply = await this.phase({ phase: 'auth', session: this.info(), auth: { method, username, success } });
    if (reply) return reply;
    if (!success) {
      this.d.log.info({ session: this.conn.id, ip: plainIp(this.conn.ip), user: username }, 'authentication failed');
      return REPLIES.authFailed;
    }
    this.user = username;
    return null;
  }

  async mail(address: string, args: Record<string, string>): Promise<Reply | null> {
    const size = args.SIZE !== undefined && /^\d+$/.test(args.SIZE) ? Number(args.SIZE) : null;
    this.tx = this.newTransaction();
    const mail = { address, args, size };
    this.facts?.prefetch(this.ruleSet.dnsAll, address); // sender-domain facts, while the rules look at MAIL
    const reply = await this.phase({ phase: 'mail', session: this.info(), envelope: this.envelope(), mail });
    if (!reply) this.tx.mail = mail;
    return reply;
  }

  async rcpt(address: string, args: Record<string, string>): Promise<Reply | null> {
    const tx = this.tx;
    const domain = domainOf(address);
    // Relay control comes before any rule, and no rule can lift it: never an open relay.
    if (domain && !this.d.policy.acceptedDomains.has(domain) && !this.user && !this.relayClient) {
      tx.failedRcpts++;
      this.d.counters.inc('replies_refused_total', { phase: 'rcpt', rule: 'relay-control' });
      this.d.log.info({ session: this.conn.id, ip: plainIp(this.conn.ip), rcpt: address }, `relaying denied for ${address} from ${plainIp(this.conn.ip)}`);
      return REPLIES.relayDenied;
    }
    const rcpt = { address, args };
    const reply = await this.phase({ phase: 'rcpt', session: this.info(), envelope: this.envelope(), rcpt });
    if (reply) {
      tx.failedRcpts++;
      return reply;
    }
    // A repeated RCPT replaces the earlier one (as smtp-server does): count each address once.
    const key = address.toLowerCase();
    const i = tx.rcpts.findIndex((r) => r.address.toLowerCase() === key);
    if (i >= 0) tx.rcpts[i] = rcpt;
    else tx.rcpts.push(rcpt);
    return null;
  }

  /** RSET: the transaction is abandoned (RFC 5321 §4.1.1.5). */
  rset(): void {
    this.tx = this.newTransaction();
  }

  async data(): Promise<Reply | null> {
    return this.phase({ phase: 'data', session: this.info(), envelope: this.envelope() });
  }

  /**
   * End of data: runs the message phase, then says whether the message is refused or
   * accepted (and where it goes, with the headers to add). Ends the transaction.
   */
  async message(msg: Buffer): Promise<MessageOutcome> {
    try {
      const rs = this.ruleSet;
      if (this.d.pipeline.handles(rs, 'message')) {
        const offset = bodyOffset(msg);
        const limit = this.d.policy.config.limits.bodyLimit;
        const body = msg.subarray(offset);
        const message = {
          headers: parseHeaders(msg, offset),
          size: msg.length,
          body: rs.needsBody ? body.subarray(0, limit).toString('utf8') : null,
          bodyTruncated: rs.needsBody && body.length > limit,
        };
        const reply = await this.phase({ phase: 'message', session: this.info(), envelope: this.envelope(), message });
        if (reply) return { reply };
      }
      return { accepted: { disposition: this.tx.disposition, headers: [...this.headers, ...this.tx.headers] } };
    } finally {
      this.transactions++; // the transaction is over, whatever its outcome
    }
  }

  /** The connection ended. Verdicts are logged, nothing else. */
  async close(): Promise<void> {
    await this.phase({ phase: 'close', session: this.info() });
    this.d.log.info({ session: this.conn.id, ip: plainIp(this.conn.ip), transactions: this.transactions, user: this.user }, `disconnect from [${plainIp(this.conn.ip)}]`);
  }
}

/** The reply a decision sends at a phase, or null when the command proceeds. */
export function replyFor(phase: Phase, d: PhaseDecision, sid: string): Reply | null {
  if (phase === 'close') return null;
  if (d.failure) return phase === 'connect' ? { ...REPLIES.ruleFailure(sid), code: 421 } : REPLIES.ruleFailure(sid);
  const v = d.verdict;
  switch (v.action) {
    case 'reject':
      // RFC 5321 §3.1: a refused connection gets 554 instead of the greeting.
      return verdictReply(phase === 'connect' ? 554 : v.code, v.text, v.status);
    case 'tempfail':
      // At connect the only temporary refusal is 421 (RFC 5321 §3.1), which closes.
      return verdictReply(phase === 'connect' ? 421 : v.code, v.text, v.status);
    case 'drop':
      return dropReply(v.text);
    default:
      return null;
  }
}

/** ESMTP parameters as a plain string map (upper-case keys; flags map to ''). */
export function argsOf(args: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (args && typeof args === 'object') {
    for (const [k, v] of Object.entries(args)) out[k.toUpperCase()] = v === true ? '' : String(v);
  }
  return out;
}
