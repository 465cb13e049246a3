/**
 * The events a rule receives, one per SMTP phase. They are plain JSON: the host builds
 * them, serialises them into the rule's sandbox and the rule reads them. Nothing in an
 * event is a live object of the host.
 */

/** The phases of an SMTP session, in the order they happen. */
export const PHASES = ['connect', 'helo', 'auth', 'mail', 'rcpt', 'data', 'message', 'close'] as const;

/**
 * One SMTP phase:
 * - `connect`: a client connected, before the 220 greeting (Postfix: smtpd_client_restrictions, Haraka: connect).
 * - `helo`: HELO or EHLO (smtpd_helo_restrictions, Haraka: helo/ehlo).
 * - `auth`: each AUTH attempt, after the credentials were checked, with its result.
 * - `mail`: MAIL FROM (smtpd_sender_restrictions, Haraka: mail).
 * - `rcpt`: each RCPT TO (smtpd_recipient_restrictions, Haraka: rcpt).
 * - `data`: the DATA command, before 354 (smtpd_data_restrictions, Haraka: data).
 * - `message`: after the final dot, headers parsed (smtpd_end_of_data_restrictions, Haraka: data_post, milter eom).
 * - `close`: the connection ended; verdicts are logged but cannot change anything.
 */
export type Phase = (typeof PHASES)[number];

/**
 * The phases inside a transaction (MAIL FROM to the end of the message): their events
 * have an `envelope` and transaction notes. The others (connect, helo, auth, close)
 * belong to the connection.
 */
export const TRANSACTION_PHASES = ['mail', 'rcpt', 'data', 'message'] as const satisfies readonly Phase[];

/** A JSON value: what notes hold (they cross the sandbox boundary as JSON). */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** Notes rules wrote (see `RuleContext.note`), by key. Read-only in the event. */
export type Notes = Readonly<Record<string, Json>>;

/** What is known about the connection, at every phase. */
export interface SessionInfo {
  /** Session id, also shown to the client in failure replies and written in every log line. */
  id: string;
  /** Milliseconds since the epoch when the event was made (use this, not a clock of your own). */
  time: number;
  client: {
    ip: string;
    port: number;
    /** Reverse DNS name of the client, or null when it has none or it was not looked up. */
    ptr: string | null;
    /**
     * True when a rule marked this client well-behaved (`ctx.markWellBehaved`: it proved
     * it is a real MTA) and the mark has not run out: it was spared the greet pause, and
     * rules that slow clients down let it be. Read from the store at connect; true from
     * the phase after a rule marks it.
     */
    wellBehaved: boolean;
  };
  local: {
    ip: string;
    port: number;
    /** True on a submission port (587, 2525 by default): mail from users, not from the world. */
    submission: boolean;
    /** Our host name (config `hostname`): a client greeting with it is lying. */
    hostname: string;
    /** The domains we receive mail for (config `localDomains`), lower case. */
    domains: string[];
  };
  /** The last HELO/EHLO, or null before the client sent one. */
  helo: { verb: 'HELO' | 'EHLO'; name: string } | null;
  /** True when the connection is TLS (implicit or after STARTTLS). */
  tls: boolean;
  /** The authenticated user name, or null. */
  user: string | null;
  /** Number of transactions (MAIL FROM … end of data) completed on this connection so far. */
  transactions: number;
  /**
   * MAIL FROM commands the client sent on this connection, refused ones included (at the
   * `mail` phase, this one included). 0 at `close` means it never tried to send mail.
   */
  mailCommands: number;
  /**
   * RCPT commands of this connection refused so far, in every transaction (RSET does not
   * reset it), whoever refused them: a rule, relay control, or a held refusal (config
   * `delayChecks`). A harvester probing addresses shows here (the current
   * transaction's count is `envelope.failedRcpts`).
   */
  refusedRecipients: number;
  /**
   * A refusal decided at connect, HELO or MAIL and held until RCPT (config `delayChecks`,
   * Postfix's smtpd_delay_reject): which rule, at which phase. Each RCPT gets that
   * refusal unless a rcpt rule accepts the recipient (a per-recipient whitelist). Null
   * when nothing is held.
   */
  held: { phase: 'connect' | 'helo' | 'mail'; rule: string } | null;
  /**
   * Session notes: what rules noted for the rest of the connection with
   * `ctx.note.session(key, value)`. Dropped when the connection closes; never stored.
   */
  notes: Notes;
}

/**
 * Whether a local mailbox exists (config `mailboxes`, `portcullis mailbox add`):
 * `unknown` for other domains and for local domains with no mailbox list (every address
 * is valid there); `postmaster@` always exists (RFC 5321 §4.5.1).
 */
export type MailboxState = 'exists' | 'missing' | 'unknown';

/** An address from MAIL FROM or RCPT TO with its ESMTP parameters (upper-cased keys). */
export interface EnvelopeAddress {
  /** The address without angle brackets; '' for the null sender `<>`. */
  address: string;
  args: Record<string, string>;
  /** The domain, lower case; '' for the null sender and addresses without one. */
  domain: string;
  /** True when the domain is one of ours (`session.local.domains`). */
  local: boolean;
  /** Whether the local mailbox exists (`unknown` unless `local`). */
  mailbox: MailboxState;
}

/** The transaction so far. */
export interface Envelope {
  /** MAIL FROM once accepted, with the declared SIZE (or null when none was declared). */
  mailFrom: (EnvelopeAddress & { size: number | null }) | null;
  /** The recipients accepted so far (each address once). */
  rcptTo: EnvelopeAddress[];
  /** Recipients refused so far in this transaction (by rules or relay control). */
  failedRcpts: number;
  /**
   * The score so far (`ctx.score`): the symbols with their points (the session's, from
   * before MAIL, included) and their total.
   */
  score: { total: number; symbols: Record<string, number> };
  /**
   * Transaction notes: what rules noted with `ctx.note.tx(key, value)` since MAIL FROM.
   * Dropped at RSET, a new MAIL FROM and the end of the message; never stored.
   */
  notes: Notes;
}

/**
 * The answer of one DNS block list (DNSBL for the client IP, RHSBL for the sender domain).
 * Only `listed` means listed: a list that refused the query or did not answer never does.
 */
export interface DnsListAnswer {
  /**
   * - `listed`: the list answered with A records in 127.0.0.0/8.
   * - `clear`: not listed (NXDOMAIN, or no A record).
   * - `refused`: the list refused the query (answers 127.255.255.x: over quota, or queried
   *   through a public resolver). The host logs it loudly; treat it as not listed.
   * - `error`: timeout, SERVFAIL or another transient failure; never cached, never listed.
   */
  status: 'listed' | 'clear' | 'refused' | 'error';
  /** The A records when listed or refused (e.g. `['127.0.0.2']`), else empty. */
  codes: string[];
  /** The list's TXT record when listed (often a URL explaining the listing), else null. */
  text: string | null;
}

/** Whether the sender domain can receive mail: an MX record, or else an A/AAAA record (RFC 5321 §5.1). */
export interface DnsMxAnswer {
  /** `found`; `none` (the domain or its records do not exist); `error` (transient failure). */
  status: 'found' | 'none' | 'error';
  /** MX host names by preference, or the domain itself when only A/AAAA exist. */
  hosts: string[];
}

/**
 * The results of an SPF check, RFC 7208 §2.6 (the order is the RFC's):
 * - `none`: no SPF record (or the domain does not exist, or is not a domain name);
 * - `neutral`: the domain says nothing about the client (`?all`);
 * - `pass`: the domain authorises the client to send for it;
 * - `fail`: the domain says the client may not send for it (`-all`);
 * - `softfail`: probably not authorised, but the domain does not commit (`~all`);
 * - `temperror`: a transient failure (a DNS timeout or SERVFAIL, or the whole check
 *   ran past the host's DNS deadline); never cached;
 * - `permerror`: the domain's record is broken (a syntax error, more than 10 lookups).
 */
export const SPF_RESULTS = ['none', 'neutral', 'pass', 'fail', 'softfail', 'temperror', 'permerror'] as const;
export type SpfResult = (typeof SPF_RESULTS)[number];

/**
 * The SPF check of the client against the sender's domain (RFC 7208 check_host(), at
 * MAIL FROM). Only `pass` proves anything: the domain authorised this client, so mail
 * from it in that domain's name is the domain's own.
 */
export interface SpfAnswer {
  result: SpfResult;
  /**
   * The domain whose policy decided, lower case: the MAIL FROM domain, or the HELO name
   * for the null sender (RFC 7208 §2.4: a bounce is checked against its HELO identity).
   */
  domain: string;
  /** Which identity was checked: `mailfrom`, or `helo` for the null sender. */
  identity: 'mailfrom' | 'helo';
}

/**
 * The results of one DKIM signature's check (RFC 8601 §2.7.1, the words
 * Authentication-Results uses):
 * - `pass`: the signature verified with the key the signing domain publishes;
 * - `fail`: it did not (the body or a signed header changed, or the key does not match);
 * - `neutral`: the signature could not be checked as written (a syntax error, an
 *   expired signature, a key too short: mailauth's words are in `comment`);
 * - `policy`: the signature verified, but a local policy refused it;
 * - `temperror`: the key could not be fetched now (a DNS timeout, SERVFAIL, the deadline);
 * - `permerror`: the key record is missing or broken.
 */
export const DKIM_RESULTS = ['none', 'pass', 'fail', 'policy', 'neutral', 'temperror', 'permerror'] as const;
export type DkimResult = (typeof DKIM_RESULTS)[number];

/** One DKIM-Signature of the message and what its check gave (RFC 6376 §6). */
export interface DkimSignature {
  result: DkimResult;
  /** The signing domain (`d=`), lower case. */
  domain: string;
  /** The key selector (`s=`): the key is the TXT record at `<selector>._domainkey.<domain>`. */
  selector: string;
  /** True when `domain` is the From domain's organisational domain or a subdomain of it (RFC 7489 §3.1.1, relaxed). */
  aligned: boolean;
  /** Why it did not pass, in mailauth's words ("body hash did not verify"), else null. */
  comment: string | null;
}

/**
 * The results of a DMARC check (RFC 7489 §11.2, RFC 8601 §2.7.x): `pass` when SPF or
 * DKIM passed for a domain aligned with the From domain; `fail` when neither did; `none`
 * when the From domain publishes no policy; `temperror` when the policy could not be
 * fetched; `permerror` when there is no single From domain to check.
 */
export const DMARC_RESULTS = ['none', 'pass', 'fail', 'temperror', 'permerror'] as const;
export type DmarcResult = (typeof DMARC_RESULTS)[number];

/** What a domain asks receivers to do with mail that fails DMARC (RFC 7489 §6.3 `p=`). */
export const DMARC_POLICIES = ['none', 'quarantine', 'reject'] as const;
export type DmarcPolicy = (typeof DMARC_POLICIES)[number];

/** An identifier alignment mode (RFC 7489 §3.1, `adkim=`, `aspf=`): `r` relaxed (the default), `s` strict. */
export type DmarcAlignmentMode = 'r' | 's';

/**
 * The DMARC record as the domain published it (RFC 7489 §6.3): what an aggregate
 * report's `policy_published` carries (§7.2, Appendix C). `sp` is `p` when not given;
 * a `p` or `sp` that is not a policy reads as `none` (§6.6.3, step 6).
 */
export interface DmarcPublished {
  p: DmarcPolicy;
  sp: DmarcPolicy;
  adkim: DmarcAlignmentMode;
  aspf: DmarcAlignmentMode;
}

/** The DMARC check of the message's From domain (RFC 7489), with the data a report carries. */
export interface DmarcAnswer {
  result: DmarcResult;
  /** The RFC5322.From domain, lower case ('' when the message has no single From address). */
  domain: string;
  /**
   * The policy that applies to this message: `sp=` for a subdomain of the domain that
   * published it, else `p=`; `none` when there is no policy. Applies on `fail` only, to
   * the share `pct` of messages (see `dmarcPolicyApplied`).
   */
  policy: DmarcPolicy;
  /** `pct=` (RFC 7489 §6.3): the percentage of failing mail the policy is meant for, 0–100, 100 by default. */
  pct: number;
  /**
   * A whole number from 0 to 99 drawn at random by the host for this message: the
   * policy applies when `sample < pct` (§6.6.4). Random, not a hash of the message, so a
   * sender cannot pick a Message-ID that always falls outside the sampled share.
   */
  sample: number;
  /** The record's tags, for the report; null when no record was found (`none`, `temperror`, `permerror`). */
  published: DmarcPublished | null;
  /** Which identifiers passed aligned with the From domain: the SPF domain, the DKIM `d=`, or null. */
  alignment: { spf: string | null; dkim: string | null };
}

/**
 * The policy to apply to a message that failed DMARC (RFC 7489 §6.6.4): `policy` for the
 * `pct` percent of messages the sample picks, and for the rest the next lower policy
 * (reject → quarantine → none). pct=100 always applies it, pct=0 never does.
 */
export function dmarcPolicyApplied(d: Pick<DmarcAnswer, 'policy' | 'pct' | 'sample'>): DmarcPolicy {
  if (d.sample < d.pct) return d.policy;
  return d.policy === 'reject' ? 'quarantine' : 'none';
}

/**
 * The results of an ARC chain check (RFC 8617 §4.4): `none` (no ARC sets), `pass` (every
 * seal and the latest message signature verified), `fail` (any did not).
 */
export const ARC_RESULTS = ['none', 'pass', 'fail'] as const;
export type ArcResult = (typeof ARC_RESULTS)[number];

/** The ARC chain of the message (RFC 8617): its result and how many hops sealed it. */
export interface ArcAnswer {
  result: ArcResult;
  /** The highest instance (`i=`) in the chain: how many forwarders sealed it; 0 with none. */
  instances: number;
}

/** Most name servers of one domain the NS facts list and check (the first ones DNS gives). */
export const NS_MAX_HOSTS = 8;

/** One name server of a domain, and what its name says (smtpf 2.0's `mail-ip-in-ns`, `mail-ns-nxdomain`, `uri-ip-in-ns`, `uri-ns-nxdomain`). */
export interface NsHost {
  /** The name server's host name, lower case (`ns1.example.net`). */
  name: string;
  /** Its registered domain (`example.net`, by the Public Suffix List), or null when it has none. */
  domain: string | null;
  /**
   * - `exists`: its registered domain exists;
   * - `nxdomain`: it does not (NXDOMAIN): a delegation to a name server nobody can reach
   *   by name, a trait of fast-flux and throw-away domains;
   * - `error`: the lookup failed (timeout, SERVFAIL).
   */
  domainStatus: 'exists' | 'nxdomain' | 'error';
  /** The IPv4 address its name carries (`ns-192-0-2-7.dyn.example` → `192.0.2.7`), or null: a name server on a dynamic address. */
  ipInName: string | null;
}

/** The name servers of a domain: the NS records of its registered domain (where the registry delegates it, RFC 1034 §4.2). */
export interface DnsNsAnswer {
  /** `found`; `none` (the domain or its NS records do not exist); `error` (transient failure). */
  status: 'found' | 'none' | 'error';
  /** The registered domain whose NS records these are, lower case. */
  domain: string;
  hosts: NsHost[];
}

/** Most distinct link hosts `UriFacts` lists (and the URI needs look up); past it, `truncated` is set. */
export const URI_MAX_HOSTS = 50;

/** One host the message links to (`http://`, `https://`, `ftp://` and `www.` links). */
export interface UriHost {
  /** The host, lower case; an internationalised name as punycode; an IP address as dotted decimal (`http://0xC0000207/` → `192.0.2.7`) or bare IPv6. */
  host: string;
  /** Its registered domain (`www.foo.co.uk` → `foo.co.uk`, Public Suffix List), or null for an IP address or a bare suffix. */
  domain: string | null;
  /** The address when the link names one instead of a host name (`http://192.0.2.7/`), else null. */
  ip: string | null;
  /** The IPv4 address the host name carries (`host-192-0-2-7.dyn.example` → `192.0.2.7`), or null. */
  ipInName: string | null;
}

/**
 * The hosts of the links in the message's text and HTML parts (`needs: ['uris']`): bare
 * links in the text and in the HTML, and HTML `href`/`src` attributes, read from the same
 * decoded parts as `MimeFacts` (so past `limits.bodyLimit` nothing is seen).
 */
export interface UriFacts {
  /** Distinct hosts, at most `URI_MAX_HOSTS`: those of bare links in the order seen, then those of HTML attributes. */
  hosts: UriHost[];
  /** More distinct hosts were linked than listed (or the body was cut at the cap). */
  truncated: boolean;
}

/** The reverse DNS of one address (its PTR records, RFC 1035 §3.5). */
export interface DnsPtrAnswer {
  /** `found`; `none` (no PTR record); `error` (transient failure). */
  status: 'found' | 'none' | 'error';
  /** The address looked up. */
  address: string;
  /** Its PTR names, lower case. */
  names: string[];
  /** The IPv4 address the first name carries (`host-192-0-2-7.pool.example`): a dynamic or residential address. */
  ipInName: string | null;
}

/** What DNS says of one link host (`needs: ['uri-dns']`, `['uri-ptr']`). */
export interface UriHostAnswer {
  /** `found`: an A or AAAA record (always, for a link by IP address); `none`: the name does not exist or has no address; `error`: the lookup failed. */
  address: 'found' | 'none' | 'error';
  /** The name servers of its registered domain (with `uri-dns`); null for an IP address, a host without one, or without the need. */
  ns: DnsNsAnswer | null;
  /** The reverse DNS of its first address, IPv4 first (with `uri-ptr`); null when it has no address or without the need. */
  ptr: DnsPtrAnswer | null;
}

/**
 * DNS facts the host looked up before the phase, for the needs its rules declared
 * (`needs: ['dnsbl:zen.spamhaus.org', 'rhsbl:dbl.spamhaus.org', 'mx', 'ns', 'spf', 'dkim', 'dmarc', 'arc', 'uribl:multi.surbl.org', 'uri-dns', 'uri-ptr']`). A fact is
 * absent when no rule of the phase asked for it, when it does not apply yet (no sender
 * before MAIL FROM; no sender domain for the null sender, except for SPF, which checks
 * the HELO name then) or when DNS is off in the host config.
 */
export interface DnsFacts {
  /** Client IP looked up in each DNSBL zone, by zone. */
  dnsbl: Record<string, DnsListAnswer | undefined>;
  /** MAIL FROM domain looked up in each RHSBL zone (e.g. Spamhaus DBL), by zone. */
  rhsbl: Record<string, DnsListAnswer | undefined>;
  /** MX (or A/AAAA) of the MAIL FROM domain. */
  mx?: DnsMxAnswer;
  /** SPF of the MAIL FROM domain (the HELO name for the null sender) for the client IP. */
  spf?: SpfAnswer;
  /** Every DKIM-Signature of the message, in order (empty: unsigned). End of data only (`needs: ['dkim']`). */
  dkim?: DkimSignature[];
  /** DMARC of the From domain, from the SPF and DKIM results. End of data only (`needs: ['dmarc']`). */
  dmarc?: DmarcAnswer;
  /** The message's ARC chain. End of data only (`needs: ['arc']`). */
  arc?: ArcAnswer;
  /** The name servers of the MAIL FROM domain (`needs: ['ns']`). */
  ns?: DnsNsAnswer;
  /**
   * The message's link hosts in URI block lists (`needs: ['uribl:<zone>']` for registered
   * domains, `'uribl-ip:<zone>'` for links by IP address), by zone, then by the domain
   * or IP looked up (`ev.dns.uribl[zone]?.[host.domain]`). End of data only.
   */
  uribl?: Record<string, Record<string, DnsListAnswer>>;
  /** What DNS says of each link host (`needs: ['uri-dns']` and/or `['uri-ptr']`), by `UriHost.host`. End of data only. */
  uriHosts?: Record<string, UriHostAnswer>;
}

interface EventBase {
  session: SessionInfo;
  /** DNS facts asked for by the phase's rules (see `needs` in defineRule). */
  dns: DnsFacts;
}

/** An entry of the host's short-term blacklist (rules add them with `ctx.blacklist`, admins with the CLI). */
export interface BlacklistEntry {
  reason: string;
  /** The rule that added it, or `admin`. */
  rule: string;
  /** Milliseconds since the epoch when it ends. */
  expires: number;
}

export interface ConnectEvent extends EventBase {
  phase: 'connect';
  /** The client's live blacklist entry, or null (looked up by the host: no store call needed). */
  blacklist: BlacklistEntry | null;
  /**
   * Sessions from this client IP open on this host now, this one included (1 for a
   * client's only connection): what a limit on concurrent connections reads.
   */
  clientSessions: number;
}

export interface HeloEvent extends EventBase {
  phase: 'helo';
  helo: { verb: 'HELO' | 'EHLO'; name: string };
}

export interface AuthEvent extends EventBase {
  phase: 'auth';
  /** The attempt: method (PLAIN, LOGIN…), the user name it claimed, and whether the password was right. */
  auth: { method: string; username: string; success: boolean };
}

export interface MailEvent extends EventBase {
  phase: 'mail';
  envelope: Envelope;
  mail: EnvelopeAddress & { size: number | null };
}

/**
 * What the next hop said of a recipient when asked by call-ahead (SmtpEvt's "mailcheck
 * for secondaries", smtpf's call-ahead): `MAIL FROM:<>`, `RCPT TO`, `RSET`, `QUIT`.
 * - `accepted`: it answered 2xx to RCPT;
 * - `refused`: it answered 5xx (the mailbox does not exist there);
 * - `unknown`: no answer, a 4xx, a network error, no next hop, or a next hop that accepts
 *   every local part (it also accepted smtpf's "false RCPT", a random impossible one).
 *   Only `refused` means anything: the recipient is allowed otherwise.
 */
export const CALLAHEAD_RESULTS = ['accepted', 'refused', 'unknown'] as const;
export type CallaheadResult = (typeof CALLAHEAD_RESULTS)[number];

export interface CallaheadAnswer {
  result: CallaheadResult;
  /** The next hop's reply line to RCPT (`550 5.1.1 No such user`), or null when there was none. */
  reply: string | null;
}

export interface RcptEvent extends EventBase {
  phase: 'rcpt';
  envelope: Envelope;
  /** With `needs: ['callahead']`, `callahead`: what the next hop said of this recipient. */
  rcpt: EnvelopeAddress & { callahead?: CallaheadAnswer };
}

export interface DataEvent extends EventBase {
  phase: 'data';
  envelope: Envelope;
}

export interface MessageEvent extends EventBase {
  phase: 'message';
  envelope: Envelope;
  message: {
    /** Header fields in order, unfolded, names as written: `[['Subject', 'Hello'], …]`. */
    headers: [string, string][];
    /** Size in bytes of the message as received (after dot-unstuffing). */
    size: number;
    /**
     * The body (after the header block) decoded as UTF-8, only for rules that declared
     * `needs: ['body']`; capped at the host's `message.bodyLimit` bytes. Null otherwise.
     */
    body: string | null;
    /** True when `body` was cut at the cap. */
    bodyTruncated: boolean;
    /**
     * The message's MIME parts, decoded, only for rules that declared `needs: ['mime']`;
     * null otherwise (see `MimeFacts`).
     */
    mime: MimeFacts | null;
    /** With `needs: ['uris']` (or a URI DNS need): the hosts the message links to (see `UriFacts`). */
    uris?: UriFacts;
    /** With `needs: ['spamd']`: SpamAssassin's verdict on the message, from spamd (or why there is none). */
    spamd?: SpamdFact;
  };
}

/** Most attachments `MimeFacts.attachments` lists; past it, `truncated` is set. */
export const MIME_MAX_ATTACHMENTS = 100;

/**
 * What a MIME parser (mailsplit, beside the host's header parser) found in the message,
 * read from the same capped body as `message.body` (the headers and at most
 * `limits.bodyLimit` bytes of body): nothing past the cap is seen.
 */
export interface MimeFacts {
  /**
   * The text/plain parts that are not attachments, transfer-decoded (base64,
   * quoted-printable) and converted from their charset, joined by a blank line.
   */
  text: string;
  /** The text/html parts that are not attachments, decoded the same way (the HTML source, not rendered). */
  html: string;
  /**
   * Every other leaf part, in order (at most `MIME_MAX_ATTACHMENTS`): a part with
   * `Content-Disposition: attachment`, a file name, or a type other than text/plain and
   * text/html. `filename`: decoded (RFC 2231, RFC 2047), or null; `contentType`: lower
   * case, e.g. `application/pdf`; `size`: decoded bytes seen (cut at the cap when
   * `truncated`).
   */
  attachments: { filename: string | null; contentType: string; size: number }[];
  /** The body was longer than the cap (or had more attachments than listed): what lies past it is missing. */
  truncated: boolean;
  /**
   * The parser gave up on part of the message (a part's header block over 1 MiB, more
   * than 1,000 parts, a decoding error): the facts hold what came before that point. A
   * merely odd message (no closing boundary, bad base64 characters, an unknown charset)
   * is read as well as it can be, and is not flagged.
   */
  malformed: boolean;
}


/** SpamAssassin's verdict on a message, as spamd answers `SYMBOLS` (its `Spam:` header and body). */
export interface SpamdAnswer {
  /** The message's score (`Spam: True ; 7.2 / 5.0` → 7.2). */
  score: number;
  /** spamd's own threshold (`required_score`, 5.0 by default). */
  threshold: number;
  /** score >= threshold, as spamd says. */
  isSpam: boolean;
  /** The SpamAssassin tests that hit (`GTUBE`, `MISSING_DATE`…). */
  symbols: string[];
}

/**
 * The `spamd` fact: an answer, or why there is none (spamd down, slow past
 * `spamd.timeoutMs`, not configured). A rule must not read an error as "ham".
 */
export type SpamdFact = SpamdAnswer | { error: string };

export interface CloseEvent extends EventBase {
  phase: 'close';
}

/** Maps each phase to its event type. */
export interface PhaseEvents {
  connect: ConnectEvent;
  helo: HeloEvent;
  auth: AuthEvent;
  mail: MailEvent;
  rcpt: RcptEvent;
  data: DataEvent;
  message: MessageEvent;
  close: CloseEvent;
}

export type PhaseEvent = PhaseEvents[Phase];
