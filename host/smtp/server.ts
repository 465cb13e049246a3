/**
 * The protocol adapter: smtp-server's hooks → one rule event per phase → the pipeline's
 * decision → the exact SMTP reply, plus relay control, the blacklist, and spooling of
 * accepted mail before the 250.
 */
import type { Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Logger } from 'pino';
import type { Phase, PhaseEvent } from '../../sdk/index.js';
import type { Blacklist } from '../blacklist.js';
import type { Config } from '../config/config.js';
import type { Counters } from '../metrics.js';
import { domainOf, networkList, plainIp } from '../net.js';
import { NO_DECISION, type PhaseDecision, type Pipeline } from '../pipeline/pipeline.js';
import type { RuleSet } from '../pipeline/ruleset.js';
import { newMessageId, type Spool, type SpoolEnvelope } from '../spool/spool.js';
import { verifyPassword } from './auth.js';
import { connectionClass, replyError } from './connection.js';
import { bodyOffset, headerLine, parseHeaders, receivedHeader } from './message.js';
import { dropReply, formatReply, REPLIES, verdictReply, type Reply } from './reply.js';
import { argsOf, DELIVER, envelope, newTransaction, sessionInfo, stronger, type SessionState } from './session.js';

export interface FrontDoorDeps {
  config: Config;
  pipeline: Pipeline;
  spool: Spool;
  blacklist: Blacklist;
  log: Logger;
  counters: Counters;
  /** The RuleSet a new session pins, and the call that unpins it when the session ends. */
  rules: { pin(): RuleSet; unpin(rs: RuleSet): void };
}

/** Phases whose verdicts apply to the whole connection rather than one transaction. */
const SESSION_PHASES: ReadonlySet<Phase> = new Set(['connect', 'helo', 'auth']);

export class FrontDoor {
  readonly server: SMTPServer;
  /** Listeners beyond the first (config.listen has several entries). */
  readonly extra: import('node:net').Server[] = [];
  private sessions = new Map<string, SessionState>();
  private isRelayClient: (ip: string) => boolean;
  private isExempt: (ip: string) => boolean;
  private acceptedDomains: Set<string>;

  constructor(private readonly d: FrontDoorDeps) {
    const c = d.config;
    this.isRelayClient = networkList(c.relayNetworks);
    this.isExempt = networkList(c.exemptNetworks);
    this.acceptedDomains = new Set([...c.localDomains, ...c.relayDomains].map((x) => x.toLowerCase()));
    const hasUsers = Object.keys(c.auth.users).length > 0;
    this.server = new SMTPServer({
      name: c.hostname,
      banner: c.banner,
      size: c.limits.maxMessageBytes,
      maxClients: c.limits.maxClients,
      socketTimeout: c.limits.socketTimeoutMs,
      maxRecipients: c.limits.maxRecipients,
      authOptional: true,
      authMethods: ['PLAIN', 'LOGIN'],
      allowInsecureAuth: c.auth.allowInsecure,
      disabledCommands: [...(hasUsers ? [] : ['AUTH']), ...(c.tls ? [] : ['STARTTLS'])],
      // We send enhanced status codes, so we advertise them (RFC 2034 §3).
      hideENHANCEDSTATUSCODES: false,
      disableReverseLookup: !c.reverseDns,
      logger: false,
      ...(c.tls ? { key: readFileSync(c.tls.key), cert: readFileSync(c.tls.cert) } : {}),
      onConnect: (s, cb) => void this.onConnect(s).then((r) => cb(r ? replyError(r) : null), (e) => cb(this.internal(s, e))),
      onAuth: (a, s, cb) => void this.onAuth(a, s).then((r) => (typeof r === 'string' ? cb(null, { user: r }) : cb(replyError(r))), (e) => cb(this.internal(s, e))),
      onMailFrom: (a, s, cb) => void this.onMailFrom(a, s).then((r) => cb(r ? replyError(r) : null), (e) => cb(this.internal(s, e))),
      onRcptTo: (a, s, cb) => void this.onRcptTo(a, s).then((r) => cb(r ? replyError(r) : null), (e) => cb(this.internal(s, e))),
      onData: (stream, s, cb) => this.onData(stream, s, cb),
      onClose: (s) => void this.onClose(s),
    });
    this.installConnectionClass();
    this.server.on('error', (e) => d.log.warn({ err: e }, `smtp server error: ${e.message}`));
  }

  /** Our connection subclass (HELO/DATA hooks, exact replies, greeting pause): see connection.ts. */
  private installConnectionClass(): void {
    const Conn = connectionClass({
      greetPauseMs: this.d.config.greetPauseMs,
      helo: (s, verb, name) => this.onHelo(s, verb, name),
      data: (s) => this.onDataCommand(s),
    });
    type Internals = { _onError(e: Error): void; _onClientConnect(d: unknown): void };
    const server = this.server as SMTPServer & Internals;
    server.connect = (socket: Socket, socketOptions: object) => {
      const conn = new Conn(server, socket, socketOptions);
      server.connections.add(conn);
      conn.on('error', (e: Error) => server._onError(e));
      conn.on('connect', (data: unknown) => server._onClientConnect(data));
      conn.init();
    };
  }

  /** Logs an unexpected host error and answers 451 with the session id, revealing nothing else. */
  private internal(s: SMTPServerSession, e: unknown): Error {
    this.d.log.error({ session: s.id, err: e }, 'internal error while handling the session');
    this.d.counters.inc('internal_errors_total');
    return replyError(REPLIES.internal(s.id));
  }

  private state(s: SMTPServerSession): SessionState {
    const st = this.sessions.get(s.id);
    if (!st) throw new Error(`no state for session ${s.id}`);
    return st;
  }

  /** Runs a phase's rules unless the session or transaction skips them. */
  private async run(st: SessionState, event: PhaseEvent): Promise<PhaseDecision> {
    if (st.exempt || st.whitelisted || (!SESSION_PHASES.has(event.phase) && st.tx.whitelisted)) return NO_DECISION;
    return this.d.pipeline.run(st.ruleSet, event);
  }

  /**
   * Applies a decision's effects and returns the reply that refuses the command, or null
   * when the command proceeds.
   */
  private async decide(st: SessionState, s: SMTPServerSession, phase: Phase, d: PhaseDecision): Promise<Reply | null> {
    const sessionLevel = SESSION_PHASES.has(phase);
    const ip = plainIp(s.remoteAddress);
    if (d.headers.length) (sessionLevel ? st.headers : st.tx.headers).push(...d.headers);
    if (d.blacklist) {
      this.d.blacklist.add(ip, d.blacklist.ttlSeconds, d.blacklist.reason, d.blacklist.rule);
      this.d.log.info({ session: s.id, ip, rule: d.blacklist.rule, ttl: d.blacklist.ttlSeconds }, `blacklisted ${ip}: ${d.blacklist.reason}`);
    }
    const reply = this.replyFor(phase, d, s.id);
    if (d.delayMs > 0) await new Promise((r) => setTimeout(r, Math.min(d.delayMs, this.d.config.limits.maxDelayMs)));
    if (reply) {
      this.d.log.info({ session: s.id, ip, phase, rule: d.rule, reply: formatReply(reply) }, `refused ${phase} from ${ip}: ${formatReply(reply)}`);
      this.d.counters.inc('replies_refused_total', { phase, rule: d.rule ?? 'host' });
      return reply;
    }
    const v = d.verdict;
    if (v.action === 'accept') {
      if (sessionLevel) st.whitelisted = true;
      else if (phase !== 'rcpt') st.tx.whitelisted = true; // a whitelisted recipient whitelists only itself
    } else if (v.action === 'discard' || v.action === 'quarantine' || v.action === 'redirect') {
      const disp = { action: v.action, rule: d.rule, reason: v.reason ?? d.rule, ...(v.action === 'redirect' ? { address: v.address } : {}) };
      if (sessionLevel) st.disposition = stronger(st.disposition, disp);
      st.tx.disposition = stronger(st.tx.disposition, disp);
    }
    return null;
  }

  private replyFor(phase: Phase, d: PhaseDecision, sid: string): Reply | null {
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

  private async onConnect(s: SMTPServerSession): Promise<Reply | null> {
    const cfg = this.d.config;
    const st: SessionState = {
      ruleSet: this.d.rules.pin(),
      exempt: this.isExempt(s.remoteAddress),
      relayClient: this.isRelayClient(s.remoteAddress),
      whitelisted: false,
      submission: cfg.submissionPorts.includes(s.localPort),
      helo: null,
      user: null,
      transactions: 0,
      headers: [],
      disposition: DELIVER,
      tx: newTransaction({ disposition: DELIVER }),
    };
    this.sessions.set(s.id, st);
    this.d.counters.inc('connections_total');
    const info = sessionInfo(st, s);
    this.d.log.info({ session: s.id, ip: info.client.ip, port: info.client.port, ptr: info.client.ptr, localPort: info.local.port, ruleSet: st.ruleSet.version, ...(st.exempt ? { exempt: true } : {}) }, `connect from ${info.client.ptr ?? 'unknown'}[${info.client.ip}]`);
    const listed = this.d.blacklist.get(info.client.ip);
    if (listed) {
      this.d.log.info({ session: s.id, ip: info.client.ip, rule: listed.rule }, `refused blacklisted client ${info.client.ip}: ${listed.reason}`);
      this.d.counters.inc('replies_refused_total', { phase: 'connect', rule: 'blacklist' });
      return REPLIES.blacklisted(listed.reason);
    }
    return this.decide(st, s, 'connect', await this.run(st, { phase: 'connect', session: info }));
  }

  private async onHelo(s: SMTPServerSession, verb: 'HELO' | 'EHLO', name: string): Promise<Reply | null> {
    const st = this.state(s);
    const helo = { verb, name };
    const reply = await this.decide(st, s, 'helo', await this.run(st, { phase: 'helo', session: sessionInfo(st, s), helo }));
    if (!reply) {
      st.helo = helo;
      st.tx = newTransaction(st); // HELO/EHLO reset the transaction (RFC 5321 §4.1.4)
    }
    return reply;
  }

  /** Resolves to the user name on success, or the refusal reply. */
  private async onAuth(a: SMTPServerAuthentication, s: SMTPServerSession): Promise<string | Reply> {
    const st = this.state(s);
    const username = a.username ?? '';
    const success = await verifyPassword(this.d.config.auth.users[username], a.password ?? '');
    const event = { phase: 'auth' as const, session: sessionInfo(st, s), auth: { method: a.method, username, success } };
    const reply = await this.decide(st, s, 'auth', await this.run(st, event));
    if (reply) return reply;
    if (!success) {
      this.d.log.info({ session: s.id, ip: event.session.client.ip, user: username }, 'authentication failed');
      return REPLIES.authFailed;
    }
    st.user = username;
    return username;
  }

  private async onMailFrom(a: SMTPServerAddress, s: SMTPServerSession): Promise<Reply | null> {
    const st = this.state(s);
    const args = argsOf(a.args);
    const size = args.SIZE !== undefined && /^\d+$/.test(args.SIZE) ? Number(args.SIZE) : null;
    st.tx = newTransaction(st);
    const mail = { address: a.address, args, size };
    const reply = await this.decide(st, s, 'mail', await this.run(st, { phase: 'mail', session: sessionInfo(st, s), envelope: envelope(st.tx), mail }));
    if (!reply) st.tx.mail = mail;
    return reply;
  }

  private async onRcptTo(a: SMTPServerAddress, s: SMTPServerSession): Promise<Reply | null> {
    const st = this.state(s);
    const tx = st.tx;
    const rcpt = { address: a.address, args: argsOf(a.args) };
    const domain = domainOf(a.address);
    const info = sessionInfo(st, s);
    // Relay control comes before any rule, and no rule can lift it: never an open relay.
    if (domain && !this.acceptedDomains.has(domain) && !st.user && !st.relayClient) {
      tx.failedRcpts++;
      this.d.counters.inc('replies_refused_total', { phase: 'rcpt', rule: 'relay-control' });
      this.d.log.info({ session: s.id, ip: info.client.ip, rcpt: a.address }, `relaying denied for ${a.address} from ${info.client.ip}`);
      return REPLIES.relayDenied;
    }
    const reply = await this.decide(st, s, 'rcpt', await this.run(st, { phase: 'rcpt', session: info, envelope: envelope(tx), rcpt }));
    if (reply) {
      tx.failedRcpts++;
      return reply;
    }
    // A repeated RCPT replaces the earlier one (as smtp-server does): count each address once.
    const key = a.address.toLowerCase();
    const i = tx.rcpts.findIndex((r) => r.address.toLowerCase() === key);
    if (i >= 0) tx.rcpts[i] = rcpt;
    else tx.rcpts.push(rcpt);
    return null;
  }

  private async onDataCommand(s: SMTPServerSession): Promise<Reply | null> {
    const st = this.state(s);
    return this.decide(st, s, 'data', await this.run(st, { phase: 'data', session: sessionInfo(st, s), envelope: envelope(st.tx) }));
  }

  private onData(stream: SMTPServerDataStream, s: SMTPServerSession, cb: (err?: Error | null, msg?: string) => void): void {
    const chunks: Buffer[] = [];
    let size = 0;
    const max = this.d.config.limits.maxMessageBytes;
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= max) chunks.push(c);
    });
    stream.on('end', () => {
      // Over the limit: smtp-server itself answers 552 (RFC 5321 §4.5.3.1.7) whatever we say.
      if (stream.sizeExceeded) return cb(null);
      this.endOfMessage(s, Buffer.concat(chunks, size)).then(
        (r) => (r.code === 250 ? cb(null, formatReply(r).slice(4)) : cb(replyError(r))),
        (e) => cb(this.internal(s, e)),
      );
    });
  }

  private async endOfMessage(s: SMTPServerSession, msg: Buffer): Promise<Reply> {
    const st = this.state(s);
    try {
      const rs = st.ruleSet;
      if (this.d.pipeline.handles(rs, 'message')) {
        const offset = bodyOffset(msg);
        const limit = this.d.config.limits.bodyLimit;
        const body = msg.subarray(offset);
        const message = {
          headers: parseHeaders(msg, offset),
          size: msg.length,
          body: rs.needsBody ? body.subarray(0, limit).toString('utf8') : null,
          bodyTruncated: rs.needsBody && body.length > limit,
        };
        const reply = await this.decide(st, s, 'message', await this.run(st, { phase: 'message', session: sessionInfo(st, s), envelope: envelope(st.tx), message }));
        if (reply) return reply;
      }
      return await this.deliver(st, s, msg);
    } finally {
      st.transactions++; // the transaction is over, whatever its outcome
    }
  }

  /** Spools (or quarantines, or discards) an accepted message; 250 only once it is on disk. */
  private async deliver(st: SessionState, s: SMTPServerSession, msg: Buffer): Promise<Reply> {
    const tx = st.tx;
    const id = newMessageId();
    const disp = tx.disposition;
    const info = sessionInfo(st, s);
    const log = { session: s.id, id, ip: info.client.ip, from: tx.mail?.address ?? '', rcpts: tx.rcpts.length, size: msg.length };
    if (disp.action === 'discard') {
      this.d.log.info({ ...log, rule: disp.rule, reason: disp.reason }, `discarded message ${id} (rule ${disp.rule})`);
      this.d.counters.inc('messages_total', { disposition: 'discard' });
      return REPLIES.queued(id);
    }
    const rcptTo = tx.rcpts.map((r) => r.address);
    const env: SpoolEnvelope = {
      id,
      receivedAt: new Date().toISOString(),
      client: { ip: info.client.ip, port: info.client.port, helo: st.helo?.name ?? null, ptr: info.client.ptr, user: st.user },
      mailFrom: tx.mail?.address ?? '',
      rcptTo: disp.action === 'redirect' && disp.address ? [disp.address] : rcptTo,
      ...(disp.action === 'deliver' ? {} : { disposition: { action: disp.action, rule: disp.rule, reason: disp.reason, originalRcptTo: rcptTo } }),
    };
    const added = [...st.headers, ...tx.headers].map(([n, v]) => headerLine(n, v)).join('');
    const trace = this.d.config.received
      ? receivedHeader({ heloName: st.helo?.name ?? null, ip: info.client.ip, ptr: info.client.ptr, by: this.d.config.hostname, protocol: s.transmissionType, id, rcpt: rcptTo.length === 1 ? rcptTo[0] : undefined, date: new Date() })
      : '';
    const area = disp.action === 'quarantine' ? 'quarantine' : 'spool';
    try {
      await this.d.spool.store(area, env, [Buffer.from(trace + added), msg]);
    } catch (e) {
      this.d.log.error({ ...log, err: e }, `could not spool message ${id}: ${(e as Error).message}`);
      this.d.counters.inc('spool_failures_total');
      return REPLIES.spoolFailure(s.id);
    }
    this.d.log.info({ ...log, disposition: disp.action, rule: disp.rule }, `${area === 'quarantine' ? 'quarantined' : 'queued'} message ${id}`);
    this.d.counters.inc('messages_total', { disposition: disp.action });
    return REPLIES.queued(id);
  }

  /** Stops listening and closes every connection (smtp-server gives them 30 s to finish). */
  async close(): Promise<void> {
    for (const srv of this.extra) srv.close();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }

  private async onClose(s: SMTPServerSession): Promise<void> {
    const st = this.sessions.get(s.id);
    if (!st) return;
    try {
      await this.decide(st, s, 'close', await this.run(st, { phase: 'close', session: sessionInfo(st, s) }));
    } catch (e) {
      this.d.log.error({ session: s.id, err: e }, 'close phase failed');
    } finally {
      this.d.log.info({ session: s.id, ip: plainIp(s.remoteAddress), transactions: st.transactions, user: st.user }, `disconnect from [${plainIp(s.remoteAddress)}]`);
      this.sessions.delete(s.id);
      this.d.pipeline.endSession(s.id);
      this.d.rules.unpin(st.ruleSet);
    }
  }
}
