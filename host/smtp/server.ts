/**
 * The protocol adapter: smtp-server's hooks → SmtpSession (one rule event per phase, the
 * pipeline's decision, relay control) → the exact SMTP reply; accepted mail goes to
 * delivery (host/delivery), which answers the final dot.
 */
import type { Socket } from 'node:net';
import { resolve } from 'node:path';
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { replyClass, type Metrics } from '../metrics.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { RuleSet } from '../pipeline/ruleset.js';
import type { MemoryStore } from '../store/store.js';
import { dnsCheckerFor } from '../dns/checker.js';
import { headerLines } from '../delivery/header.js';
import { CallAhead } from '../delivery/callahead.js';
import { SpamdClient } from '../content/spamd.js';
import { plainIp } from '../net.js';
import type { DeliveryOutcome } from '../delivery/outcome.js';
import type { AcceptedTransaction } from '../delivery/transaction.js';
import { ExternalChecker } from '../external-checker.js';
import { verifyPassword } from '../password.js';
import { authOffered } from './auth.js';
import { connectionClass, isStoppable, type Greeting } from './connection.js';
import { outcomeReply } from './outcome-reply.js';
import { formatReply, REPLIES, ReplyError, type Reply } from './reply.js';
import type { TrafficStats } from './traffic.js';
import { TransactionLog } from './transaction-log.js';
import { SessionPolicy, SmtpSession, type ConnectionFacts, type Disposition, type MessageResult, type SessionDeps, type Transaction } from './session.js';
import type { SessionRecorder, SessionTap } from './tap.js';
import type { RecordedReply } from '../../sdk/index.js';
import { TlsCertificate } from './tls.js';

/** An open session as the admin API lists it (smtpf's CONN). */
export interface LiveSession {
  id: string;
  ip: string;
  ptr: string | null;
  helo: string | null;
  user: string | null;
  tls: boolean;
  /** When it connected (ISO 8601). */
  since: string;
  /** Transactions it completed; the one under way: its sender and accepted recipients. */
  transactions: number;
  mailFrom: string | null;
  rcpts: number;
  /** The RuleSet version it is pinned to. */
  ruleSet: number;
  /** In a cluster (`--processes N`): the worker process serving it, by slot, and its pid (the primary adds them). */
  worker?: { slot: number; pid: number };
}

/** How a well-behaved client is greeted: at once, and a command it sends early waits for the 220. */
const WELL_BEHAVED_GREETING: Greeting = Object.freeze({ pauseMs: 0, earlyTalk: 'hold' });

/** A message the rules accepted: where it goes and the headers to add. */
type Accepted = { disposition: Disposition; headers: [string, string][]; message: Buffer };

export interface FrontDoorDeps {
  config: Config;
  pipeline: Pipeline;
  /** Where accepted mail goes (host/delivery): spool, quarantine or the next hop. */
  delivery: { accept(t: AcceptedTransaction): Promise<DeliveryOutcome> };
  store: MemoryStore;
  log: Logger;
  metrics: Metrics;
  /** The RuleSet a new session pins, and the call that unpins it when the session ends. */
  rules: { pin(): RuleSet; unpin(rs: RuleSet): void };
  /** Traffic statistics (the admin API's windows and routes): told of each connection and transaction. */
  stats: Pick<TrafficStats, 'connection' | 'transaction'>;
  /** Records sessions for `portcullis replay` (config `record`; host/record): absent, nothing is recorded. */
  recorder?: SessionRecorder;
}

export class FrontDoor {
  readonly server: SMTPServer;
  /** Listeners beyond the first (config.listen has several entries). */
  readonly extra: import('node:net').Server[] = [];
  /** Each open session: its state, its transaction log line in the making (transaction-log.ts), and when it connected. */
  private sessions = new Map<string, { session: SmtpSession; txlog: TransactionLog; since: number; tap: SessionTap | null }>();
  /** Open sessions per client IP (as the socket gives it), kept with `sessions`. */
  private perIp = new Map<string, number>();
  /** The live config and what sessions are built from; configure() replaces both. */
  private config: Config;
  private deps!: SessionDeps;
  private checker: ExternalChecker | null = null;
  /** The STARTTLS certificate, re-read at each configure() and, once watch() is called, when its files change. */
  readonly tls: TlsCertificate;

  constructor(private readonly d: FrontDoorDeps) {
    const c = (this.config = d.config);
    this.server = new SMTPServer({
      ...this.liveOptions(c),
      authOptional: true,
      authMethods: ['PLAIN', 'LOGIN'],
      // We send enhanced status codes, so we advertise them (RFC 2034 §3).
      hideENHANCEDSTATUSCODES: false,
      logger: false,
      onConnect: (s, cb) => void this.onConnect(s).then((r) => cb(refusal(r)), (e) => cb(this.failedError(s, e))),
      onAuth: (a, s, cb) => void this.onAuth(a, s).then((r) => (typeof r === 'string' ? cb(null, { user: r }) : cb(new ReplyError(r))), (e) => cb(this.failedError(s, e))),
      onMailFrom: (a, s, cb) => void this.command(s, 'mail', a.address, argsOf(a.args)).then((r) => cb(refusal(r))),
      onRcptTo: (a, s, cb) => void this.command(s, 'rcpt', a.address, argsOf(a.args)).then((r) => cb(refusal(r))),
      onData: (stream, s, cb) => this.onData(stream, s, cb),
      onClose: (s) => {
        const p = this.onClose(s).finally(() => this.closing.delete(p));
        this.closing.add(p);
      },
    });
    this.tls = new TlsCertificate(this.server, d.log);
    this.tls.load(c.tls, 'start', { throwOnError: true });
    this.configure(c);
    this.installConnectionClass();
    this.server.on('error', (e) => d.log.warn({ err: e }, `smtp server error: ${e.message}`));
  }

  /** smtp-server options that follow the config; smtp-server reads them per connection or command. */
  private liveOptions(c: Config) {
    return {
      name: c.hostname,
      banner: c.banner,
      size: c.limits.maxMessageBytes,
      maxClients: c.limits.maxClients,
      socketTimeout: c.limits.socketTimeoutMs,
      maxRecipients: c.limits.maxRecipients,
      allowInsecureAuth: c.auth.allowInsecure,
      disabledCommands: [...(authOffered(c) ? [] : ['AUTH']), ...(c.tls ? [] : ['STARTTLS'])],
      disableReverseLookup: !c.reverseDns,
    };
  }

  /**
   * Applies a new config to new sessions (sessions in flight keep what they started
   * with), and reads the TLS files again. Listen addresses, data dir and sandbox
   * settings need a restart.
   */
  configure(c: Config): void {
    this.config = c;
    this.tls.load(c.tls, 'reload');
    Object.assign(this.server.options, this.liveOptions(c));
    this.checker = c.checker ? new ExternalChecker(c.checker, resolve(c.dataDir), this.d.log, this.d.metrics) : null;
    this.deps = {
      policy: new SessionPolicy(c), pipeline: this.d.pipeline, store: this.d.store, log: this.d.log, metrics: this.d.metrics,
      now: Date.now, delay: (ms) => new Promise((r) => setTimeout(r, ms)),
      dns: dnsCheckerFor(c.dns, this.d.store, this.d.metrics, this.d.log),
      spamd: c.spamd ? new SpamdClient(c.spamd) : null,
      callahead: new CallAhead({ delivery: c.delivery, heloName: c.hostname, cache: this.d.store, log: (m) => this.d.log.info(m) }),
      clientSessions: (ip) => this.perIp.get(ip) ?? 0,
    };
  }

  /** SMTP sessions open now. */
  get openSessions(): number {
    return this.sessions.size;
  }

  /** Our connection subclass (HELO/DATA hooks, exact replies, greeting pause): see connection.ts. */
  private installConnectionClass(): void {
    const Conn = connectionClass({
      // A client marked well-behaved (ctx.markWellBehaved) proved it is a real MTA: no
      // greet pause, and no early-talker refusal (postscreen hands such clients straight to smtpd).
      greeting: (ip) => (this.d.store.wellBehaved(plainIp(ip)) ? WELL_BEHAVED_GREETING : { pauseMs: this.config.greetPauseMs, earlyTalk: 'refuse' }),
      replied: (code) => this.d.metrics.inc('replies_total', { class: replyClass(code) }),
      helo: async (s, verb, name) => {
        const open = this.sessions.get(s.id);
        open?.txlog.abandon(verb); // HELO/EHLO reset the transaction (RFC 5321 §4.1.4)
        const t = Date.now();
        const r = await this.session(s).heloCommand(verb, name);
        open?.tap?.step({ cmd: 'helo', t, verb, name, ...recorded(r.reply, r.decision.rule, s.secure) });
        return r.reply;
      },
      data: (s) => this.command(s, 'data', '', {}),
      rset: (s) => {
        const open = this.sessions.get(s.id);
        open?.txlog.abandon('RSET');
        open?.session.rset();
        open?.tap?.step({ cmd: 'rset', t: Date.now() });
      },
      failed: (s, e) => this.failed(s, e),
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

  /**
   * The one place an unexpected error becomes a reply, in every phase: logged with the
   * session and counted, then 451 with the session id and nothing internal revealed.
   */
  private failed(s: SMTPServerSession, e: unknown): Reply {
    this.d.log.error({ session: s.id, err: e }, `internal error while handling the session: ${(e as Error)?.message ?? String(e)}`);
    this.d.metrics.inc('internal_errors_total');
    return REPLIES.internal(s.id);
  }

  private failedError(s: SMTPServerSession, e: unknown): ReplyError {
    return new ReplyError(this.failed(s, e));
  }

  /**
   * Runs one MAIL, RCPT or DATA command of the session and writes it into the
   * transaction's log line: the reply that refuses it (or null), an internal error
   * turned into its 451.
   */
  private async command(s: SMTPServerSession, phase: 'mail' | 'rcpt' | 'data', address: string, args: Record<string, string>): Promise<Reply | null> {
    const t0 = performance.now();
    const t = Date.now();
    let reply: Reply | null;
    let rule: string | null = null;
    try {
      const x = this.session(s);
      const r = await (phase === 'mail' ? x.mail(address, args) : phase === 'rcpt' ? x.rcpt(address, args) : x.data());
      reply = r.reply;
      rule = r.decision.rule;
    } catch (e) {
      reply = this.failed(s, e);
    }
    const open = this.sessions.get(s.id);
    // Built only when recording (the optional call skips its argument otherwise).
    open?.tap?.step(phase === 'data' ? { cmd: 'data', t, ...recorded(reply, rule, s.secure) } : { cmd: phase, t, address, args, ...recorded(reply, rule, s.secure) });
    const log = open?.txlog;
    const ms = performance.now() - t0;
    if (phase === 'mail') log?.mail(address, reply, rule, ms);
    else if (phase === 'rcpt') log?.rcpt(address, reply, rule, ms);
    else log?.data(reply, rule, ms);
    return reply;
  }

  private session(s: SMTPServerSession): SmtpSession {
    const open = this.sessions.get(s.id);
    if (!open) throw new Error(`no state for session ${s.id}`);
    return open.session;
  }

  private async onConnect(s: SMTPServerSession): Promise<Reply | null> {
    const host = s.clientHostname;
    const conn: ConnectionFacts = {
      id: s.id, ip: s.remoteAddress, port: s.remotePort, ptr: host && !host.startsWith('[') ? host : null,
      localIp: s.localAddress, localPort: s.localPort, tls: () => s.secure,
    };
    const ruleSet = this.d.rules.pin();
    const tap = this.d.recorder?.open(conn, this.deps, ruleSet.version) ?? null;
    const session = new SmtpSession(tap?.deps ?? this.deps, conn, ruleSet);
    const ip = plainIp(conn.ip);
    const client = () => ({ session: s.id, ip, ptr: conn.ptr, helo: session.helo?.name ?? null, user: session.user });
    const since = Date.now();
    this.sessions.set(s.id, { session, txlog: new TransactionLog(this.d.log, client, (t) => this.d.stats.transaction(t)), since, tap });
    this.d.stats.connection();
    this.perIp.set(conn.ip, (this.perIp.get(conn.ip) ?? 0) + 1);
    const r = await session.connect();
    tap?.step({ cmd: 'connect', t: since, ...recorded(r.reply, r.decision.rule, s.secure) });
    return r.reply;
  }

  /** Resolves to the user name on success, or the refusal reply. */
  private async onAuth(a: SMTPServerAuthentication, s: SMTPServerSession): Promise<string | Reply> {
    const username = a.username ?? '';
    const users = this.config.auth.users;
    const success = await verifyPassword(Object.hasOwn(users, username) ? users[username] : undefined, a.password ?? '');
    const t = Date.now();
    const r = await this.session(s).auth(a.method, username, success);
    this.sessions.get(s.id)?.tap?.step({ cmd: 'auth', t, method: a.method, user: username, success, ...recorded(r.reply, r.decision.rule, s.secure) });
    return r.reply ?? username;
  }

  private onData(stream: SMTPServerDataStream, s: SMTPServerSession, cb: (err?: Error | null, msg?: string) => void): void {
    const chunks: Buffer[] = [];
    let size = 0;
    const max = this.config.limits.maxMessageBytes;
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= max) chunks.push(c);
    });
    const t0 = performance.now();
    stream.on('end', () => {
      this.d.metrics.inc('received_bytes_total', {}, size);
      // Over the limit: smtp-server itself answers 552 (RFC 5321 §4.5.3.1.7) whatever we say.
      if (stream.sizeExceeded) {
        this.sessions.get(s.id)?.txlog.message(REPLIES.tooBig(max), null, performance.now() - t0, size);
        return cb(null);
      }
      const t = Date.now();
      const msg = Buffer.concat(chunks, size);
      this.endOfMessage(s, msg).catch((e: unknown) => ({ reply: this.failed(s, e), rule: null, result: null })).then(({ reply, rule, result }) => {
        const open = this.sessions.get(s.id);
        open?.txlog.message(reply, rule, performance.now() - t0, size);
        open?.tap?.message(t, msg, result, reply, s.secure);
        if (reply.code === 250) cb(null, formatReply(reply).slice(4));
        else cb(new ReplyError(reply));
      });
    });
  }

  /** The reply to the final dot, and the rule behind a refusal (null: the host's own). */
  private async endOfMessage(s: SMTPServerSession, msg: Buffer): Promise<{ reply: Reply; rule: string | null; result: MessageResult }> {
    const session = this.session(s);
    const tx = session.tx; // message() ends the transaction; keep its envelope for delivery
    const result = await session.message(msg);
    if (!result.accepted) return { reply: result.reply ?? REPLIES.internal(s.id), rule: result.decision.rule, result };
    const checked = await this.externalCheck(session, tx, result.accepted, result.accepted.message);
    if ('reply' in checked) return { reply: checked.reply, rule: 'external-checker', result };
    return { reply: await this.deliver(session, s, tx, checked, checked.message), rule: null, result };
  }

  /** Runs the external checker (if configured) on a message the rules accepted for delivery. */
  private async externalCheck(session: SmtpSession, tx: Transaction, accepted: Accepted, msg: Buffer): Promise<Accepted | { reply: Reply }> {
    const checker = this.checker;
    const action = accepted.disposition.action;
    if (!checker || action === 'discard' || action === 'quarantine') return accepted;
    const added = headerLines(accepted.headers);
    const r = await checker.check({ session: session.conn.id, message: [Buffer.from(added), msg], ip: session.info().client.ip, sender: tx.mail?.address ?? '', rcpts: tx.rcpts.map((x) => x.address) });
    if (r.verdict !== 'accept') return { reply: r.verdict === 'reject' ? REPLIES.checkerRejected : REPLIES.checkerFailed(session.conn.id) };
    return { ...accepted, headers: [...accepted.headers, ...r.headers] };
  }

  /**
   * Hands an accepted message to delivery, which builds its envelope and added headers and
   * reports what became of it; the reply is 250 only once the message is safe (spooled, or
   * taken by the next hop).
   */
  private async deliver(session: SmtpSession, s: SMTPServerSession, tx: Transaction, accepted: Accepted, msg: Buffer): Promise<Reply> {
    const info = session.info();
    const outcome = await this.d.delivery.accept({
      sessionId: s.id,
      client: { ip: info.client.ip, port: info.client.port, helo: session.helo?.name ?? null, ptr: info.client.ptr, user: session.user },
      protocol: s.transmissionType,
      mailFrom: tx.mail ?? { address: '', args: {} },
      rcptTo: tx.rcpts,
      disposition: accepted.disposition,
      headers: accepted.headers,
      message: msg,
    });
    return outcomeReply(outcome, s.id);
  }

  /** Every open session, oldest first (the admin API's CONN). */
  liveSessions(): LiveSession[] {
    return [...this.sessions.values()].map(({ session: x, since }): LiveSession => {
      const info = x.info();
      return {
        id: x.conn.id, ip: info.client.ip, ptr: info.client.ptr, helo: info.helo?.name ?? null, user: info.user, tls: info.tls,
        since: new Date(since).toISOString(), transactions: info.transactions,
        mailFrom: x.tx.mail?.address ?? null, rcpts: x.tx.rcpts.length, ruleSet: x.ruleSet.version,
      };
    }).sort((a, b) => a.since.localeCompare(b.since));
  }

  /**
   * Ends a session now (the admin API's KILL): the client gets `421 4.7.0 … Connection
   * closed by the administrator` and the socket closes, whatever it was doing; a message
   * not yet answered 250 is not kept (the client still has it). False: no such session.
   */
  kill(id: string): boolean {
    for (const conn of this.server.connections) {
      if ((conn as { id?: string }).id === id && isStoppable(conn)) {
        conn.stop(REPLIES.killed(this.config.hostname), true);
        this.d.log.info({ session: id }, `session ${id} ended by the administrator`);
        return true;
      }
    }
    return false;
  }

  /** Close phases still running (they may call rules): close() waits for them. */
  private closing = new Set<Promise<void>>();

  /**
   * Stops listening and ends every session (RFC 5321 §3.8): a client between commands
   * gets `421 4.3.2 <host> Service shutting down` at once; one whose command or message is
   * being answered gets that reply first (a message on its way in may finish, and is
   * spooled or refused as usual), then the 421. After `limits.shutdownGraceMs` everyone
   * still connected gets the 421. Then waits for the sessions' close phases.
   */
  async close(): Promise<void> {
    const { shutdownGraceMs } = this.config.limits;
    const bye = REPLIES.shuttingDown(this.config.hostname);
    for (const srv of this.extra) srv.close();
    // smtp-server stops accepting and drops sockets still in a TLS handshake; its own
    // 421 after closeTimeout is only a backstop behind ours.
    this.server.options.closeTimeout = shutdownGraceMs + 1000;
    const closed = new Promise<void>((ok) => this.server.close(() => ok()));
    for (const conn of this.server.connections) if (isStoppable(conn)) conn.stop(bye);
    const grace = setTimeout(() => {
      for (const conn of this.server.connections) if (isStoppable(conn)) conn.stop(bye, true);
    }, shutdownGraceMs);
    await closed;
    clearTimeout(grace);
    await this.tls.close();
    await Promise.allSettled([...this.closing]);
  }

  private async onClose(s: SMTPServerSession): Promise<void> {
    const open = this.sessions.get(s.id);
    if (!open) return;
    const { session } = open;
    open.txlog.abandon('connection closed');
    const t = Date.now();
    try {
      const r = await session.close();
      open.tap?.step({ cmd: 'close', t, ...recorded(r.reply, r.decision.rule, s.secure) });
    } catch (e) {
      this.failed(s, e); // nobody hears a reply after close; it is logged and counted
    } finally {
      open.tap?.end();
      this.sessions.delete(s.id);
      const n = (this.perIp.get(session.conn.ip) ?? 1) - 1;
      if (n > 0) this.perIp.set(session.conn.ip, n);
      else this.perIp.delete(session.conn.ip);
      this.d.pipeline.endSession(s.id);
      this.d.rules.unpin(session.ruleSet);
    }
  }
}

/** A command's outcome as a recorded session keeps it (host/record). */
function recorded(reply: Reply | null, rule: string | null, tls: boolean): RecordedReply {
  return { reply: reply && formatReply(reply), rule, ...(tls ? { tls: true } : {}) };
}

/** The error that refuses a command with `reply`, or null to let it proceed. */
function refusal(reply: Reply | null): ReplyError | null {
  return reply ? new ReplyError(reply) : null;
}

/** ESMTP parameters as a plain string map (upper-case keys; flags map to ''). */
export function argsOf(args: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (args && typeof args === 'object') {
    for (const [k, v] of Object.entries(args)) out[k.toUpperCase()] = v === true ? '' : String(v);
  }
  return out;
}
