/**
 * What became of an accepted message, as delivery reports it to the SMTP layer, which
 * alone turns it into the client's reply (host/smtp/outcome-reply.ts). Only `queued`,
 * `quarantined`, `discarded`, `relayed` and `relayed-in-part` mean the message is safe
 * (on disk or at the next hop): those, and only those, are answered 250.
 */
export type DeliveryOutcome =
  /** Spool mode: in spool/new/ and on disk (its journal record synced); the queue delivers it. */
  | { kind: 'queued'; id: string }
  /** A rule quarantined it: in quarantine/new/, never relayed. */
  | { kind: 'quarantined'; id: string }
  /** A rule discarded it: nothing kept. */
  | { kind: 'discarded'; id: string }
  /** Relay mode: the next hop said 250 for every recipient; `response` is its reply, on one line. */
  | { kind: 'relayed'; id: string; response: string }
  /**
   * Relay mode: `accepted` of `recipients` took it; the others are safe too (refused for
   * now: spooled for the queue; refused for good: bounced). `accepted` is 0 when the next
   * hop refused some recipients for now and the others for good.
   */
  | { kind: 'relayed-in-part'; id: string; accepted: number; recipients: number }
  /**
   * Relay mode: the next hop refused every recipient, all for good (5xx) or all for now
   * (4xx). Its reply as it gave it: the code, the enhanced status (`"5.1.1"`, null if it
   * gave none) and the rest of the line, flattened to one printable line.
   */
  | { kind: 'refused'; nextHop: string | null; code: number; status: string | null; text: string }
  /** Relay mode: no next hop answered (connection refused or dropped, timeout, TLS or AUTH failed). */
  | { kind: 'next-hop-down' }
  /**
   * The spool could not take the message (disk full, I/O error); in relay mode, could not
   * take the recipients that were refused for now, or the bounce for those refused for good.
   */
  | { kind: 'spool-full' };
