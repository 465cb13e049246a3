/**
 * One session's recording: the session's fact sources (DNS checker, spamd, call-ahead,
 * the store's blacklist, well-behaved and mailbox answers) are wrapped so every answer
 * the session got is kept under its fact key, cache hits included (the checker's TTL
 * cache answers without the network: recording below it would miss them); each command's
 * outcome is appended as the front door reports it. At `end` the whole session goes to
 * `done` as one object: nothing is serialised or written while the session runs.
 */
import { RECORD_VERSION, type RecordedSession, type RecordedStep } from '../../sdk/index.js';
import type { RecordBodies } from '../config/config.js';
import type { DnsFactSource } from '../dns/checker.js';
import { bodyOffset } from '../delivery/header.js';
import { plainIp } from '../net.js';
import { formatReply, type Reply } from '../smtp/reply.js';
import type { ConnectionFacts, MessageResult, SessionDeps, SessionStore } from '../smtp/session.js';
import type { SessionTap } from '../smtp/tap.js';
import { factKey } from './facts.js';

/**
 * Steps one record keeps: a connection that sends message after message for hours must
 * not grow its record without bound in memory (it is written when the session ends).
 */
export const MAX_STEPS = 10_000;

export interface TapOptions {
  bodies: RecordBodies;
  /** `capped`: bytes of body kept (config limits.bodyLimit). */
  bodyLimit: number;
  done: (s: RecordedSession) => void;
}

export class RecordingTap implements SessionTap {
  readonly deps: SessionDeps;
  private readonly rec: RecordedSession;
  /** Messages seen so far: the index of the message whose facts (`auth:<n>`, `spamd:<n>`) are being fetched. */
  private messages = 0;

  constructor(conn: ConnectionFacts, base: SessionDeps, ruleSet: number, private readonly o: TapOptions) {
    this.rec = {
      v: RECORD_VERSION, id: conn.id, ruleSet,
      client: { ip: plainIp(conn.ip), port: conn.port, ptr: conn.ptr, localIp: plainIp(conn.localIp), localPort: conn.localPort },
      blacklist: null, wellBehaved: false, dns: base.dns !== null, steps: [], facts: {},
    };
    const facts = this.rec.facts;
    const keep = <T>(key: string, p: Promise<T>): Promise<T> => p.then((a) => ((facts[key] = a), a));
    /** `p` kept under `key`; null (the subject cannot be looked up) kept as null. */
    const kept = <T>(key: string, p: Promise<T> | null): Promise<T> | null => {
      if (!p) facts[key] = null;
      return p && keep(key, p);
    };
    const dns = base.dns;
    const spamd = base.spamd;
    const callahead = base.callahead;
    this.deps = {
      ...base,
      store: this.store(base.store),
      clientSessions: (ip) => (facts[factKey.clientSessions] = base.clientSessions(ip)) as number,
      dns: dns && {
        list: (kind, zone, subject, now) => kept(factKey.list(kind, zone, subject), dns.list(kind, zone, subject, now)),
        mx: (domain, now) => kept(factKey.mx(domain), dns.mx(domain, now)),
        ns: (domain, now) => kept(factKey.ns(domain), dns.ns(domain, now)),
        addresses: (host, now) => kept(factKey.addresses(host), dns.addresses(host, now)),
        ptr: (ip, now) => kept(factKey.ptr(ip), dns.ptr(ip, now)),
        spf: (ip, sender, helo, now) => keep(factKey.spf(ip, sender, helo), dns.spf(ip, sender, helo, now)),
        messageAuth: (msg, spf, want) => keep(factKey.auth(this.messages), dns.messageAuth(msg, spf, want)),
      } satisfies DnsFactSource,
      spamd: spamd && { check: (msg) => keep(factKey.spamd(this.messages), spamd.check(msg)) },
      callahead: callahead && { check: (rcpt, now) => keep(factKey.callahead(rcpt), callahead.check(rcpt, now)) },
    };
  }

  /** The store as the session reads it, its answers about this client and its mailboxes kept. */
  private store(s: SessionStore): SessionStore {
    const rec = this.rec;
    return {
      blacklistGet: (ip, now) => {
        const e = s.blacklistGet(ip, now);
        rec.blacklist = e ? { reason: e.reason, rule: e.rule, expires: e.expires } : null;
        return e;
      },
      blacklistExtend: (...a) => s.blacklistExtend(...a),
      wellBehaved: (ip, now) => (rec.wellBehaved = s.wellBehaved(ip, now)),
      markWellBehaved: (...a) => s.markWellBehaved(...a),
      mailbox: (address) => (rec.facts[factKey.mailbox(address)] = s.mailbox(address)),
    };
  }

  step(s: Exclude<RecordedStep, { cmd: 'message' }>): void {
    if (s.cmd === 'close' || this.room()) this.rec.steps.push(s);
  }

  /** Whether the record has room for another step (past MAX_STEPS it is cut, its close still kept). */
  private room(): boolean {
    if (this.rec.steps.length < MAX_STEPS) return true;
    this.rec.cut = true;
    return false;
  }

  message(t: number, msg: Buffer, result: MessageResult | null, wire: Reply, tls: boolean): void {
    if (!this.room()) return void this.messages++;
    const offset = bodyOffset(msg);
    const body = this.o.bodies === 'none' ? null : msg.subarray(offset, this.o.bodies === 'capped' ? offset + this.o.bodyLimit : msg.length).toString('latin1');
    const a = result?.accepted;
    this.rec.steps.push({
      cmd: 'message', t, head: msg.subarray(0, offset).toString('latin1'), body, size: msg.length,
      reply: result ? result.reply && formatReply(result.reply) : formatReply(wire),
      rule: result?.decision.rule ?? null,
      accepted: a ? { disposition: a.disposition.action, rule: a.disposition.rule, headers: a.headers } : null,
      wire: formatReply(wire),
      ...(tls ? { tls: true } : {}),
    });
    this.messages++;
  }

  end(): void {
    this.o.done(this.rec);
  }
}
