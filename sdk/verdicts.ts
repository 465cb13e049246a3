/**
 * Verdicts: what a rule returns. Plain JSON, because they cross the sandbox boundary.
 * Build them with the constructors below: their types accept only the reply codes a
 * verdict can carry (`reject(450, …)` does not compile), and they clean what they are
 * given (reason ids, reply text) so a verdict they build is always one the host takes.
 */
import { isRejectCode, isTempfailCode, REJECT_CODES, reasonId, replyText, TEMPFAIL_CODES, type EnhancedStatus, type RejectCode, type TempfailCode } from './replies.js';

/** Options every verdict may carry. */
export interface VerdictMeta {
  /**
   * A stable id for logs and metrics, e.g. `helo-bare-ip`. Defaults to the rule's name.
   * Any string is turned into a valid id (`'My List'` → `'my-list'`, see `reasonId`).
   */
  reason?: string;
}

/** Options of a reply-carrying verdict. */
export interface ReplyOptions extends VerdictMeta {
  /**
   * Enhanced status code without its class digit (RFC 3463), e.g. `'7.1'` (delivery not
   * authorised, the default) or `STATUS.badMailbox` (`'1.1'`). The class digit comes from
   * the reply code, so a 4xx reply can never carry a `5.x.x` status.
   */
  status?: EnhancedStatus;
}

export type Verdict =
  | { action: 'next' }
  | ({ action: 'accept' } & VerdictMeta)
  | ({ action: 'reject'; code: RejectCode; text: string } & ReplyOptions)
  | ({ action: 'tempfail'; code: TempfailCode; text: string } & ReplyOptions)
  | ({ action: 'drop'; text: string } & VerdictMeta)
  | ({ action: 'discard' } & VerdictMeta)
  | ({ action: 'quarantine' } & VerdictMeta)
  | ({ action: 'redirect'; address: string } & VerdictMeta);

export type Action = Verdict['action'];

/** The verdict's meta with its reason made a valid id. */
function meta<M extends VerdictMeta>(m: M): M {
  return m.reason === undefined ? m : { ...m, reason: reasonId(m.reason) };
}

/**
 * No opinion: the next rule decides. Returning nothing (`undefined`) means the same.
 * @example rcpt: (ev) => ev.rcpt.address.endsWith('@example.org') ? reject(550, 'No') : next()
 */
export function next(): Verdict {
  return { action: 'next' };
}

/**
 * Whitelist: this phase is accepted and the rest of the transaction (or, at connect,
 * HELO and AUTH, the rest of the connection) skips the remaining rules.
 * @example connect: (ev) => ev.session.client.ip === '192.0.2.7' ? accept() : next()
 */
export function accept(m: VerdictMeta = {}): Verdict {
  return { action: 'accept', ...meta(m) };
}

/**
 * Permanent refusal with a 5xx code (`REJECT_CODES`; 550 by default). At `rcpt` only that
 * recipient is refused; at `connect` the client gets 554 and the connection closes.
 * @example reject(550, 'Sender domain does not accept replies', { status: STATUS.badSenderDomain, reason: 'null-mx' })
 */
export function reject(code: RejectCode = 550, text = 'Message rejected by policy', options: ReplyOptions = {}): Verdict {
  // For rules in plain JavaScript (or a cast): fail here, at the rule's own line.
  if (!isRejectCode(code)) throw new RangeError(`reject() takes one of ${REJECT_CODES.join(', ')}, got ${String(code)} (a 4xx is tempfail())`);
  return { action: 'reject', code, text: replyText(text), ...meta(options) };
}

/**
 * Temporary refusal with a 4xx code (`TEMPFAIL_CODES`; 451 by default): the client keeps
 * the message and retries later (greylisting, rate limits). At `connect` the reply is 421
 * and the connection closes; 421 closes it at any phase (RFC 5321 §3.8).
 * @example tempfail(450, 'Greylisted, try again in 5 minutes')
 */
export function tempfail(code: TempfailCode = 451, text = 'Try again later', options: ReplyOptions = {}): Verdict {
  if (!isTempfailCode(code)) throw new RangeError(`tempfail() takes one of ${TEMPFAIL_CODES.join(', ')}, got ${String(code)} (a 5xx is reject())`);
  return { action: 'tempfail', code, text: replyText(text), ...meta(options) };
}

/**
 * Hang up: the client gets `421 4.7.0 <text>` and the connection is closed.
 * @example drop('Too many bad recipients')
 */
export function drop(text = 'Closing connection', m: VerdictMeta = {}): Verdict {
  return { action: 'drop', text: replyText(text), ...meta(m) };
}

/**
 * Pretend to accept: the client gets its normal 250 replies, but the message is not
 * delivered or spooled (SmtpEvt's bulk mail to a bad recipient).
 * @example message: (ev) => ev.message.headers.some(([n, v]) => /^precedence$/i.test(n) && /bulk/i.test(v)) ? discard({ reason: 'bulk' }) : next()
 */
export function discard(m: VerdictMeta = {}): Verdict {
  return { action: 'discard', ...meta(m) };
}

/**
 * Accept the message (250) but put it in the quarantine folder instead of delivering it.
 * `reason` is recorded beside the message.
 * @example connect: (ev) => ev.session.client.ptr === null ? quarantine({ reason: 'no-ptr' }) : next()
 */
export function quarantine(m: VerdictMeta = {}): Verdict {
  return { action: 'quarantine', ...meta(m) };
}

/**
 * Accept the message but deliver it to `address` instead of its recipients (MercuryS's
 * "redirect" blacklist action).
 * @example rcpt: (ev) => ev.rcpt.address === 'old-team@localhost' ? redirect('team@localhost', { reason: 'moved' }) : next()
 */
export function redirect(address: string, m: VerdictMeta = {}): Verdict {
  return { action: 'redirect', address, ...meta(m) };
}
