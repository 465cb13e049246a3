/**
 * Verdicts: what a rule returns. Plain JSON, because they cross the sandbox boundary.
 * Build them with the constructors below rather than by hand.
 */

/** Options every verdict may carry. */
export interface VerdictMeta {
  /** A stable kebab-case id for logs and metrics, e.g. `helo-bare-ip`. Defaults to the rule's name. */
  reason?: string;
}

/** Options of a reply-carrying verdict. */
export interface ReplyOptions extends VerdictMeta {
  /**
   * Enhanced status code without its class digit (RFC 3463), e.g. `'7.1'` (delivery not
   * authorised) or `'1.1'` (bad mailbox). The class digit comes from the reply code, so a
   * 4xx reply can never carry a `5.x.x` status. Default `'7.1'`.
   */
  status?: string;
}

export type Verdict =
  | { action: 'next' }
  | ({ action: 'accept' } & VerdictMeta)
  | ({ action: 'reject'; code: number; text: string } & ReplyOptions)
  | ({ action: 'tempfail'; code: number; text: string } & ReplyOptions)
  | ({ action: 'drop'; text: string } & VerdictMeta)
  | ({ action: 'discard' } & VerdictMeta)
  | ({ action: 'quarantine' } & VerdictMeta)
  | ({ action: 'redirect'; address: string } & VerdictMeta);

export type Action = Verdict['action'];

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
export function accept(meta: VerdictMeta = {}): Verdict {
  return { action: 'accept', ...meta };
}

/**
 * Permanent refusal: the client gets `code` (500–599) and `text`. At `rcpt` only that
 * recipient is refused; at `connect` the connection is refused and closed.
 * @example reject(550, 'Sender domain does not accept replies', { status: '7.27', reason: 'null-mx' })
 */
export function reject(code = 550, text = 'Message rejected by policy', options: ReplyOptions = {}): Verdict {
  return { action: 'reject', code, text, ...options };
}

/**
 * Temporary refusal: the client gets `code` (400–499) and retries later (greylisting,
 * rate limits). At `connect`, the reply is 421 and the connection closes.
 * @example tempfail(451, 'Greylisted, try again in 5 minutes', { status: '7.1' })
 */
export function tempfail(code = 451, text = 'Try again later', options: ReplyOptions = {}): Verdict {
  return { action: 'tempfail', code, text, ...options };
}

/**
 * Hang up: the client gets `421 4.7.0 <text>` and the connection is closed.
 * @example drop('Too many bad recipients')
 */
export function drop(text = 'Closing connection', meta: VerdictMeta = {}): Verdict {
  return { action: 'drop', text, ...meta };
}

/**
 * Pretend to accept: the client gets its normal 250 replies, but the message is not
 * delivered or spooled (SmtpEvt's bulk mail to a bad recipient).
 * @example message: (ev) => ev.message.headers.some(([n, v]) => /^precedence$/i.test(n) && /bulk/i.test(v)) ? discard({ reason: 'bulk' }) : next()
 */
export function discard(meta: VerdictMeta = {}): Verdict {
  return { action: 'discard', ...meta };
}

/**
 * Accept the message (250) but put it in the quarantine folder instead of delivering it.
 * `meta.reason` is recorded beside the message.
 * @example connect: (ev) => ev.session.client.ptr === null ? quarantine({ reason: 'no-ptr' }) : next()
 */
export function quarantine(meta: VerdictMeta = {}): Verdict {
  return { action: 'quarantine', ...meta };
}

/**
 * Accept the message but deliver it to `address` instead of its recipients (MercuryS's
 * "redirect" blacklist action).
 * @example rcpt: (ev) => ev.rcpt.address === 'old-team@localhost' ? redirect('team@localhost', { reason: 'moved' }) : next()
 */
export function redirect(address: string, meta: VerdictMeta = {}): Verdict {
  return { action: 'redirect', address, ...meta };
}
