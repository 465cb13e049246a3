/**
 * One log line per transaction, as Postfix admins read theirs: who (client PTR[IP],
 * HELO), what (sender, each recipient with the reply it got, size), what became of it
 * (the final reply, the rule that decided, the queue id) and where the time went (the
 * milliseconds each phase took to answer, rules and DNS waits included).
 *
 *   tx accepted: from=<a@example.org> to=<b@localhost> size=1822 client=mx.example.org[192.0.2.7] helo=mx.example.org: 250 2.0.0 Ok: queued as M1
 *   tx refused: from=<x@spam.example> to=<b@localhost> client=unknown[192.0.2.9] helo=x: 550 5.7.1 Subject looks like spam (rule subject-spam)
 *   tx abandoned: from=<a@example.org> to=<c@localhost>(550 5.1.1 …) client=… helo=…: no DATA (RSET)
 *
 * A transaction ends with its final reply (accepted or refused after DATA), or is
 * abandoned: refused at MAIL, left without DATA by RSET, a new MAIL or HELO, or the
 * connection closing. Either way it gets exactly one line; the per-rule lines
 * (`refused rcpt …`, the rules' own) stay at their phases for the detail.
 */
import type { Logger } from 'pino';
import { formatReply, type Reply } from './reply.js';

/** The phases a transaction's time is counted in. */
type TxPhase = 'mail' | 'rcpt' | 'data' | 'message';

export interface Recipient {
  to: string;
  /** The reply it got, e.g. "250" or "550 5.1.1 Mailbox unavailable". */
  reply: string;
  rule?: string;
}

/** What the session knows of the client when a line is written. */
export interface ClientFacts {
  session: string;
  ip: string;
  ptr: string | null;
  helo: string | null;
  user: string | null;
}

export type TxResult = 'accepted' | 'refused' | 'abandoned';

/** One transaction as it ended: what the log line says, for whoever counts them too (statistics). */
export interface TransactionSummary extends ClientFacts {
  tx: TxResult;
  from: string;
  rcpts: Recipient[];
  /** Bytes of the message as received; null when it never came (refused before DATA, abandoned). */
  size: number | null;
  /** The final reply, or why it was abandoned. */
  reply: string;
  rule: string | null;
  ms: Partial<Record<TxPhase, number>>;
}

const round = (ms: number) => Math.round(ms * 100) / 100;

/** A reply as a log reads it; a proceeding command (null) got smtp-server's 250. */
const replyText = (r: Reply | null) => (r ? formatReply(r) : '250');

export class TransactionLog {
  private from: string | null = null;
  private rcpts: Recipient[] = [];
  private ms: Partial<Record<TxPhase, number>> = {};

  /** `counted`: told of every transaction as it ends (the host's traffic statistics). */
  constructor(private readonly log: Logger, private readonly client: () => ClientFacts, private readonly counted: (t: TransactionSummary) => void = () => undefined) {}

  /** MAIL FROM answered: a new transaction starts (smtp-server refuses a nested MAIL itself, 503). */
  mail(address: string, reply: Reply | null, rule: string | null, ms: number): void {
    this.abandon('a new MAIL');
    this.from = address;
    this.add('mail', ms);
    if (reply) this.end('refused', reply, rule);
  }

  rcpt(address: string, reply: Reply | null, rule: string | null, ms: number): void {
    if (this.from === null) return; // RCPT before MAIL: smtp-server answers 503, no transaction
    this.rcpts.push({ to: address, reply: replyText(reply), ...(reply && rule ? { rule } : {}) });
    this.add('rcpt', ms);
  }

  /** DATA refused before the 354 ends the transaction. */
  data(reply: Reply | null, rule: string | null, ms: number): void {
    this.add('data', ms);
    if (reply) this.end('refused', reply, rule);
  }

  /** The final reply to the message: accepted (2xx) or refused. */
  message(reply: Reply, rule: string | null, ms: number, size: number): void {
    this.add('message', ms);
    this.end(reply.code < 300 ? 'accepted' : 'refused', reply, rule, size);
  }

  /** The transaction under way, if any, ends without DATA: RSET, HELO, the connection closing… */
  abandon(why: string): void {
    if (this.from === null) return;
    this.write('abandoned', `no DATA (${why})`, null);
  }

  private add(phase: TxPhase, ms: number): void {
    this.ms[phase] = round((this.ms[phase] ?? 0) + ms);
  }

  private end(result: TxResult, reply: Reply, rule: string | null, size?: number): void {
    this.write(result, formatReply(reply), rule, size);
  }

  private write(result: TxResult, reply: string, rule: string | null, size?: number): void {
    const t: TransactionSummary = { ...this.client(), tx: result, from: this.from ?? '', rcpts: this.rcpts, size: size ?? null, reply, rule, ms: this.ms };
    const to = t.rcpts.map((r) => (r.reply === '250' ? `<${r.to}>` : `<${r.to}>(${r.reply}${r.rule ? ` rule ${r.rule}` : ''})`)).join(',');
    const who = `client=${t.ptr ?? 'unknown'}[${t.ip}] helo=${t.helo ?? 'none'}${t.user ? ` user=${t.user}` : ''}`;
    this.log.info(t, `tx ${result}: from=<${t.from}>${to ? ` to=${to}` : ''}${t.size !== null ? ` size=${t.size}` : ''} ${who}: ${reply}${rule ? ` (rule ${rule})` : ''}`);
    this.counted(t);
    this.reset();
  }

  private reset(): void {
    this.from = null;
    this.rcpts = [];
    this.ms = {};
  }
}
