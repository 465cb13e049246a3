/**
 * Call-ahead, the `callahead` fact: asks a recipient's next hop whether it would take
 * mail for it, by a real SMTP dialogue (RFC 5321 §3.3), before we answer RCPT:
 *
 *   EHLO us / MAIL FROM:<> / RCPT TO:<rcpt> / [RCPT TO:<random>] / RSET / QUIT
 *
 * SmtpEvt's "mailcheck for secondaries" (seed 000): a backup MX that cannot tell a
 * real mailbox from a typo accepts the message and bounces it later (backscatter); asking
 * the primary first lets it refuse during the session. smtpf 2.0's "false RCPT" (seed
 * 003): after an accepted recipient we ask for a random impossible local part; a next hop
 * that accepts that too accepts everything (a catch-all, or accept-then-bounce), so its
 * answers mean nothing: `unknown`, remembered per next hop and domain.
 *
 * No answer, a 4xx, a network error: `unknown`, and the recipient is allowed (SmtpEvt's
 * rule: the check must never lose mail). Definite answers are cached 5 minutes per
 * recipient in the store's TTL cache; failures are not cached.
 *
 * The dialogue is a small raw client: nodemailer's SMTPConnection (our next-hop
 * transport) has no RCPT-without-DATA operation.
 */
import { randomBytes } from 'node:crypto';
import { connect as plainConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { CallaheadAnswer } from '../../sdk/index.js';
import type { DeliveryConfig, NextHopConfig } from '../config/config.js';
import { domainOf } from '../net.js';
import { CACHE_PREFIX, type TtlCache } from '../store/ports.js';
import { hopConfigFor } from './routes.js';

/** How long an answer is kept: smtpf's and SmtpEvt's 5 minutes. */
export const CALLAHEAD_TTL_SECONDS = 300;
/** The longest one dialogue may take, whatever the next hop's own timeouts. */
const MAX_DIALOGUE_MS = 15_000;

const UNKNOWN: CallaheadAnswer = Object.freeze({ result: 'unknown', reply: null });

/** One SMTP reply: its code and its text lines joined (`550 5.1.1 No such user`). */
interface Reply {
  code: number;
  line: string;
}

/** Reads SMTP replies off a socket (multi-line replies, RFC 5321 §4.2.1, come back whole). */
class ReplyReader {
  private buffered = '';
  private lines: string[] = [];
  private waiting: ((r: Reply | Error) => void) | null = null;
  private ready: (Reply | Error)[] = [];

  constructor(socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.feed(chunk));
    socket.on('error', (e) => this.push(e));
    socket.on('close', () => this.push(new Error('connection closed')));
  }

  next(): Promise<Reply> {
    const r = this.ready.shift();
    if (r) return r instanceof Error ? Promise.reject(r) : Promise.resolve(r);
    return new Promise((resolve, reject) => (this.waiting = (x) => (x instanceof Error ? reject(x) : resolve(x))));
  }

  private feed(chunk: string): void {
    this.buffered += chunk;
    let i: number;
    while ((i = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, i).replace(/\r$/, '');
      this.buffered = this.buffered.slice(i + 1);
      this.lines.push(line.slice(4));
      if (line[3] === '-') continue; // more lines of the same reply
      const code = Number(line.slice(0, 3));
      this.push({ code: Number.isInteger(code) ? code : 0, line: `${line.slice(0, 3)} ${this.lines.join(' ')}`.trim() });
      this.lines = [];
    }
  }

  private push(r: Reply | Error): void {
    const w = this.waiting;
    this.waiting = null;
    if (w) w(r);
    else this.ready.push(r);
  }
}

/** What the next hop answered: to the real recipient, and to the false one (null: not asked). */
interface Dialogue {
  rcpt: Reply;
  falseRcpt: Reply | null;
}

/** The dialogue with `hop`; throws on a network error, a timeout or an unexpected reply before RCPT. */
async function ask(hop: NextHopConfig, heloName: string, rcpt: string, falseRcpt: string): Promise<Dialogue> {
  const deadline = Math.min(hop.timeoutMs, MAX_DIALOGUE_MS);
  const socket = hop.secure
    ? tlsConnect({ host: hop.host, port: hop.port, servername: hop.host, rejectUnauthorized: false })
    : plainConnect({ host: hop.host, port: hop.port });
  const timer = setTimeout(() => socket.destroy(new Error(`no answer within ${deadline} ms`)), deadline);
  const replies = new ReplyReader(socket);
  const command = async (line: string, expect: number): Promise<Reply> => {
    socket.write(`${line}\r\n`);
    const r = await replies.next();
    if (expect && Math.floor(r.code / 100) !== expect) throw new Error(`${line.split(':')[0]} answered ${r.line}`);
    return r;
  };
  try {
    const greeting = await replies.next();
    if (greeting.code !== 220) throw new Error(`greeting ${greeting.line}`);
    await command(`EHLO ${heloName}`, 2);
    await command('MAIL FROM:<>', 2); // the null sender: no bounce can come of the probe
    const answer = await command(`RCPT TO:<${rcpt}>`, 0);
    const accepted = Math.floor(answer.code / 100) === 2;
    const falseAnswer = accepted ? await command(`RCPT TO:<${falseRcpt}>`, 0) : null;
    await command('RSET', 0);
    socket.write('QUIT\r\n');
    return { rcpt: answer, falseRcpt: falseAnswer };
  } finally {
    clearTimeout(timer);
    socket.end();
    setTimeout(() => socket.destroy(), 1000).unref();
  }
}

export interface CallAheadOptions {
  delivery: DeliveryConfig;
  /** Our name in EHLO (config `hostname`). */
  heloName: string;
  cache: TtlCache;
  /** Tells why an answer is `unknown` (network errors, accept-all next hops). */
  log: (message: string) => void;
}

export class CallAhead {
  constructor(private readonly o: CallAheadOptions) {}

  /** What the next hop says of `rcpt`; `unknown` when there is no next hop or no clear answer. */
  async check(rcpt: string, now: number): Promise<CallaheadAnswer> {
    const hop = hopConfigFor(this.o.delivery, rcpt);
    const domain = domainOf(rcpt);
    if (!hop || !domain) return UNKNOWN;
    const cache = this.o.cache;
    const allKey = `${CACHE_PREFIX.callahead}all:${hop.host}:${hop.port}:${domain}`;
    const rcptKey = `${CACHE_PREFIX.callahead}rcpt:${rcpt.toLowerCase()}`;
    const known = cache.cacheGet(allKey, now) ?? cache.cacheGet(rcptKey, now);
    if (known !== undefined) return JSON.parse(known) as CallaheadAnswer;
    // smtpf's false RCPT: a local part no one has (random, and longer than any mailbox name).
    const falseRcpt = `portcullis-no-such-user-${randomBytes(12).toString('hex')}@${domain}`;
    let d: Dialogue;
    try {
      d = await ask(hop, this.o.heloName, rcpt, falseRcpt);
    } catch (e) {
      this.o.log(`call-ahead to ${hop.host}:${hop.port} for ${rcpt} failed (${(e as Error).message}): recipient allowed`);
      return UNKNOWN;
    }
    const cls = Math.floor(d.rcpt.code / 100);
    if (d.falseRcpt && Math.floor(d.falseRcpt.code / 100) === 2) {
      const a: CallaheadAnswer = { result: 'unknown', reply: d.rcpt.line };
      this.o.log(`call-ahead: ${hop.host}:${hop.port} accepts any recipient in ${domain} (it accepted <${falseRcpt}>): its answers are not checked for ${CALLAHEAD_TTL_SECONDS} s`);
      cache.cacheSet(allKey, JSON.stringify(a), CALLAHEAD_TTL_SECONDS, now);
      return a;
    }
    if (cls !== 2 && cls !== 5) return { result: 'unknown', reply: d.rcpt.line }; // 4xx: ask again next time
    const a: CallaheadAnswer = { result: cls === 2 ? 'accepted' : 'refused', reply: d.rcpt.line };
    cache.cacheSet(rcptKey, JSON.stringify(a), CALLAHEAD_TTL_SECONDS, now);
    return a;
  }
}
