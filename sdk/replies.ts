/**
 * The reply contract between rules and host: which codes a rule may send, the enhanced
 * status and reason formats, and the limits of reply text. Defined once here; the host's
 * verdict validator imports these, so the SDK's types and the host's checks cannot drift.
 */

/**
 * Permanent refusals a rule may send (RFC 5321 §4.2.2–4.2.3). Syntax codes (500–504) are
 * the protocol layer's, never a policy decision.
 */
export const REJECT_CODES = [
  521, // RFC 7504: this host does not accept mail (a connection-level refusal)
  550, // mailbox unavailable / refused by policy: the usual refusal
  551, // user not local (RFC 5321 §3.4)
  552, // exceeded storage allocation: message too large, too many recipients × size
  553, // mailbox name not allowed (bad sender or recipient syntax/policy)
  554, // transaction failed; at connect "no SMTP service here" (RFC 5321 §3.1)
  556, // RFC 7504: the recipient's domain does not accept mail
] as const;

/**
 * Temporary refusals a rule may send (RFC 5321 §4.2.2–4.2.3): the client keeps the
 * message and retries. 421 also closes the connection (RFC 5321 §3.8).
 */
export const TEMPFAIL_CODES = [
  421, // service not available, closing the channel
  450, // mailbox unavailable for now (greylisting, busy)
  451, // local error in processing (rate limits, lookups failed)
  452, // insufficient system storage (too many recipients for now)
  454, // RFC 3207/4954: TLS or authentication temporarily unavailable; Postfix soft_bounce of 554
] as const;

export type RejectCode = (typeof REJECT_CODES)[number];
export type TempfailCode = (typeof TEMPFAIL_CODES)[number];

export const isRejectCode = (n: unknown): n is RejectCode => (REJECT_CODES as readonly unknown[]).includes(n);
export const isTempfailCode = (n: unknown): n is TempfailCode => (TEMPFAIL_CODES as readonly unknown[]).includes(n);

/**
 * The temporary twin of a permanent code, as Postfix's `soft_bounce` turns 5xx into 4xx:
 * what the config's `action: "tempfail"` sends instead of a rule's refusal.
 */
export const SOFT_BOUNCE: { readonly [C in RejectCode]: TempfailCode } = {
  521: 421,
  550: 450,
  551: 450,
  552: 452,
  553: 450,
  554: 454,
  556: 450,
};

/**
 * An enhanced status code without its class digit (RFC 3463 §2): `subject.detail`, e.g.
 * `'7.1'`. The class (2, 4 or 5) always comes from the reply code when the line is
 * written, so a 4xx reply can never carry a `5.x.x` status (`'5.7.1'` does not compile).
 */
export type EnhancedStatus = `${0 | 1 | 2 | 3 | 4 | 5 | 6 | 7}.${bigint}`;

/** Source of the pattern every `EnhancedStatus` matches (subjects 0–7 of RFC 3463 §3, a detail of 1–3 digits). */
export const STATUS_PATTERN = '^[0-7]\\.[0-9]{1,3}$';

/** The enhanced statuses rules use most, by meaning (RFC 3463). */
export const STATUS = {
  /** X.1.1 Bad destination mailbox address: no such user. */
  badMailbox: '1.1',
  /** X.1.8 Bad sender's system address: the sender's domain cannot receive mail. */
  badSenderDomain: '1.8',
  /** X.2.2 Mailbox full. */
  mailboxFull: '2.2',
  /** X.3.4 Message too big for system. */
  tooBig: '3.4',
  /** X.4.3 Directory server failure: a DNS lookup the decision needs failed; retry later. */
  directoryFailure: '4.3',
  /** X.4.5 Mail system congestion (rate limits). */
  congestion: '4.5',
  /** X.5.3 Too many recipients. */
  tooManyRecipients: '5.3',
  /** X.6.0 Other or undefined media error: the message's content or format is at fault (a header RFC 5322 requires is missing or malformed). */
  mediaError: '6.0',
  /** X.7.0 Other or undefined security status (the host's drop). */
  security: '7.0',
  /** X.7.1 Delivery not authorized, message refused: a policy refusal, and the default. */
  notAuthorized: '7.1',
  /** X.7.23 SPF validation failed (RFC 7372 §3.2): the sender's domain does not authorise the client. */
  spfFailed: '7.23',
  /** X.7.26 Multiple authentication checks failed (RFC 7372): SPF/DKIM/DMARC. */
  authChecksFailed: '7.26',
} as const satisfies Record<string, EnhancedStatus>;

/** The status a refusal carries when the rule gives none: a policy refusal. */
export const DEFAULT_STATUS: EnhancedStatus = STATUS.notAuthorized;

/** Longest reply text the host sends for a rule (one line; RFC 5321 §4.5.3.1.5 caps a reply line at 512 octets). */
export const MAX_REPLY_TEXT = 400;

/**
 * Source of the pattern reply text matches: printable US-ASCII and spaces (RFC 5321
 * §4.2), so a rule's text can never split a reply or inject a line.
 */
export const REPLY_TEXT_PATTERN = '^[ -~]*$';

/**
 * Makes any string safe as reply text: every control or non-ASCII character (an
 * internationalised address, a CR LF from a header) becomes `?`, and the text is cut to
 * MAX_REPLY_TEXT. The verdict constructors do this, so a rule quoting client data in
 * its refusal always gets the reply it meant.
 * @example replyText(`No such user here: ${ev.rcpt.address}`)
 */
export function replyText(text: string): string {
  const s = String(text).replace(/[^ -~]/g, '?');
  return s.length > MAX_REPLY_TEXT ? s.slice(0, MAX_REPLY_TEXT) : s;
}

/**
 * Source of the pattern of a verdict's `reason`: a stable id for logs and metrics
 * (lower case letters, digits, `.`, `_`, `-`; at most 64 characters), e.g. `helo-bare-ip`.
 */
export const REASON_PATTERN = '^[a-z0-9][a-z0-9._-]{0,63}$';

/**
 * Turns any name into a valid reason id: lower case, other characters as `-`, at most 64
 * characters (`'My List'` → `'my-list'`). The verdict constructors do this, so a reason
 * taken from an option (a list's name) is always valid.
 */
export function reasonId(name: string): string {
  const s = String(name).toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 64);
  return s || 'unnamed';
}
