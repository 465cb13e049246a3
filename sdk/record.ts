/**
 * A recorded session (config `record`): what the host saw of one real SMTP session and
 * what it answered, with the facts its rules used, so `portcullis replay` can run it
 * through a changed rule set with no network, and a test can pin it as a fixture
 * (`loadRecordedSession` from `portcullis/sdk/testing`). One JSON line per session in the
 * record files; a fixture is the same object, pretty-printed, one per file.
 *
 * Only commands that reached the rules are recorded (smtp-server answers a RCPT before
 * MAIL, a bad address and the like itself); passwords never are (AUTH keeps the user name
 * and whether the password was right).
 */
import type { BlacklistEntry } from './events.js';

/** The format's version: a reader refuses records of another. */
export const RECORD_VERSION = 1;

/**
 * What a command got, as the session decided it: the reply line that refused it
 * (`'550 5.7.1 …'`), or null when it proceeded; the rule that decided (null: the host's
 * own decision, such as relay control, or no rule had an opinion).
 */
export interface RecordedReply {
  reply: string | null;
  rule: string | null;
  /** The connection was under TLS at this command (STARTTLS may come mid-session). */
  tls?: true;
}

/** Where an accepted message went, and the header fields the rules and the host added. */
export interface RecordedAcceptance {
  disposition: 'deliver' | 'redirect' | 'discard' | 'quarantine';
  /** The rule behind a disposition other than deliver. */
  rule: string | null;
  headers: [name: string, value: string][];
}

/** One command, at `t` (milliseconds since the epoch, the session's clock then). */
export type RecordedStep =
  | ({ cmd: 'connect'; t: number } & RecordedReply)
  | ({ cmd: 'helo'; t: number; verb: 'HELO' | 'EHLO'; name: string } & RecordedReply)
  | ({ cmd: 'auth'; t: number; method: string; user: string; success: boolean } & RecordedReply)
  | ({ cmd: 'mail' | 'rcpt'; t: number; address: string; args: Record<string, string> } & RecordedReply)
  | { cmd: 'rset'; t: number }
  | ({ cmd: 'data'; t: number } & RecordedReply)
  | ({
    cmd: 'message';
    t: number;
    /** The header block as received, blank line included (latin1: byte for byte). */
    head: string;
    /** The body per config `record.bodies` (latin1), or null (`none`). */
    body: string | null;
    /** Bytes of the whole message as received. */
    size: number;
    /** Accepted by the rules (null: refused, see `reply`). */
    accepted: RecordedAcceptance | null;
    /** The final reply the client got (delivery and the external checker included). */
    wire: string;
  } & RecordedReply)
  | ({ cmd: 'close'; t: number } & RecordedReply);

export type RecordedCommand = RecordedStep['cmd'];

/** The client as the host saw it at connect. */
export interface RecordedClient {
  ip: string;
  port: number;
  ptr: string | null;
  localIp: string;
  localPort: number;
}

export interface RecordedSession {
  v: typeof RECORD_VERSION;
  id: string;
  /** The RuleSet version that answered it. */
  ruleSet: number;
  client: RecordedClient;
  /** The store's word on the client at connect: its blacklist entry, its well-behaved mark. */
  blacklist: BlacklistEntry | null;
  wellBehaved: boolean;
  /** The host looked DNS facts up (config dns.servers); false: its rules saw none, and a replay gives them none. */
  dns: boolean;
  steps: RecordedStep[];
  /** The session went on past the steps a record keeps (a connection sending thousands of messages): `steps` is its beginning, and its close. */
  cut?: true;
  /**
   * The facts the session's rules used, as they were answered (DNS cache hits included),
   * by key: `dnsbl:<zone>:<ip>`, `rhsbl:<zone>:<domain>`, `mx:<domain>`, `ns:<domain>`,
   * `address:<link host>`, `ptr:<ip>`,
   * `spf:<ip>:<sender>:<helo>`, `auth:<n>` (DKIM/DMARC/ARC of the n-th message),
   * `spamd:<n>`, `callahead:<address>`, `mailbox:<address>`, `clientSessions`.
   * null: the subject could not be looked up.
   */
  facts: Record<string, unknown>;
}
