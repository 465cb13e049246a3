/**
 * One next hop: an SMTP server we pass mail to, through a pool of nodemailer connections
 * that are reused across messages. `send` never throws: every outcome, down to a refused
 * connection, comes back as a result per recipient.
 *
 * Not supported: XCLIENT/XFORWARD (passing the original client's address to the next
 * hop, Postfix style). nodemailer cannot send them and we do not hand-write SMTP; the
 * client's address, HELO and PTR travel in our Received header instead.
 */
import nodemailer from 'nodemailer';
import type { NodemailerError } from 'nodemailer/lib/errors';
import type { NextHopConfig } from '../config/config.js';
import type { Dsn } from '../spool/spool.js';

/** What became of one recipient at the next hop. */
export interface RcptResult {
  rcpt: string;
  /** accepted: the next hop said 250 to the message for this recipient. */
  status: 'accepted' | 'refused' | 'deferred';
  /** The next hop's reply code (0 when there was none: connection failed, timed out…). */
  code: number;
  /** The next hop's reply line, or what went wrong. */
  text: string;
  /** The next hop, `host:port` (absent for local delivery). */
  remote?: string;
}

type PoolTransport = ReturnType<typeof nodemailer.createTransport>;

export class NextHop {
  private readonly transport: PoolTransport;
  /** `host:port`, as logs and replies name it. */
  readonly name: string;

  constructor(readonly config: NextHopConfig, heloName: string) {
    this.name = `${config.host}:${config.port}`;
    const tls = config.starttls;
    this.transport = nodemailer.createTransport({
      pool: true,
      maxConnections: config.poolSize,
      // A connection that drops mid-message is our queue's to retry, not the pool's: a
      // silent resend could deliver twice, and in relay mode the client is waiting.
      maxRequeues: 0,
      host: config.host,
      port: config.port,
      secure: config.secure,
      name: heloName,
      ignoreTLS: tls === 'off',
      requireTLS: tls === 'required',
      opportunisticTLS: tls === 'opportunistic',
      // Opportunistic TLS does not verify the certificate (Postfix 'may', RFC 7435); required does.
      tls: { rejectUnauthorized: tls === 'required' },
      ...(config.auth ? { auth: { user: config.auth.user, pass: config.auth.pass } } : {}),
      connectionTimeout: config.connectTimeoutMs,
      greetingTimeout: config.connectTimeoutMs,
      socketTimeout: config.timeoutMs,
      logger: false,
    });
  }

  /**
   * Sends `message` (exactly these bytes, dot-stuffed on the wire; nodemailer turns bare
   * CR and bare LF into CRLF, so nothing in it can end the DATA early downstream) to `to`.
   */
  async send(from: string, to: string[], message: Buffer, dsn?: Dsn): Promise<RcptResult[]> {
    try {
      const info = await this.transport.sendMail({
        envelope: { from: from === '' ? false : from, to, ...(has8bit(message) ? { use8BitMime: true } : {}) },
        raw: message,
        ...(dsn ? { dsn: dsnFor(dsn, to) } : {}),
      });
      const refused = new Map<string, NodemailerError>();
      for (const e of info.rejectedErrors ?? []) if (e.recipient) refused.set(e.recipient, e);
      return to.map((rcpt): RcptResult => {
        const e = refused.get(rcpt);
        if (!e) return { rcpt, status: 'accepted', code: 250, text: info.response, remote: this.name };
        return errorResult(rcpt, e, this.name);
      });
    } catch (err) {
      const e = err as NodemailerError;
      const byRcpt = new Map((e.rejectedErrors ?? []).filter((x) => x.recipient).map((x) => [x.recipient!, x]));
      return to.map((rcpt) => errorResult(rcpt, byRcpt.get(rcpt) ?? e, this.name));
    }
  }

  /** Closes every connection, those delivering too: their messages fail (and are retried later). */
  close(): void {
    this.transport.close({ force: true });
  }
}

/**
 * A failure as a recipient's result: 5xx (except 503, RFC 5321 §4.2.1) is final, anything
 * else is retried. A refused AUTH is our configuration's fault, not the message's: it is
 * retried (as Postfix defers on a SASL failure), never bounced.
 */
function errorResult(rcpt: string, e: NodemailerError, remote: string): RcptResult {
  const code = e.code === 'EAUTH' ? 0 : (e.responseCode ?? 0);
  const text = e.code === 'EAUTH' ? `EAUTH: next hop refused our credentials: ${e.response ?? e.message}` : (e.response ?? `${e.code ?? 'error'}: ${e.message}`);
  const permanent = code >= 500 && code !== 503;
  return { rcpt, status: permanent ? 'refused' : 'deferred', code, text: oneLine(text), remote };
}

/** A reply or error as one printable ASCII line (it may end up in our own reply). */
export function oneLine(s: string, max = 300): string {
  const flat = s.replace(/[^ -~]+/g, ' ').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

/**
 * The client's DSN parameters for the next hop, sent when it offers DSN (RFC 3461 §4.1:
 * a relay passes them on). nodemailer takes one NOTIFY and one ORCPT per message: the
 * caller sends recipients with different NOTIFY apart (Routes.send); ORCPT goes along when
 * there is one recipient.
 */
function dsnFor(dsn: Dsn, to: string[]): { ret?: string; envid?: string; notify?: string; orcpt?: string } {
  const notify = new Set(to.map((r) => dsn.notify?.[r]));
  const one = notify.size === 1 ? [...notify][0] : undefined;
  const orcpt = to.length === 1 ? dsn.orcpt?.[to[0]!] : undefined;
  return { ...(dsn.ret ? { ret: dsn.ret } : {}), ...(dsn.envid ? { envid: dsn.envid } : {}), ...(one ? { notify: one } : {}), ...(orcpt ? { orcpt } : {}) };
}

/** Any byte above 127: the next hop is told BODY=8BITMIME (RFC 6152) when it offers it. */
function has8bit(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! > 127) return true;
  return false;
}
