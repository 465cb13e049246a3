/**
 * What the SMTP layer hands delivery once the rules (and the external checker) accepted a
 * message: the transaction as plain data. Delivery turns it into the spool envelope
 * (with the client's DSN parameters and the rules' disposition) and the bytes to deliver:
 * our Received, the rules' headers, then the message exactly as received.
 */
import type { EnvelopeAddress } from '../../sdk/index.js';
import type { Dsn, SpoolEnvelope } from '../spool/spool.js';
import { headerLines, receivedHeader } from './header.js';

/**
 * Where an accepted message goes, as the rules decided. Stronger dispositions win:
 * quarantine > discard > redirect > deliver.
 */
export interface Disposition {
  action: 'deliver' | 'redirect' | 'discard' | 'quarantine';
  rule: string | null;
  reason: string | null;
  /** redirect: the one recipient that replaces the envelope's. */
  address?: string;
}

/** An envelope address as delivery needs it: the address and its ESMTP parameters (DSN). */
export type Address = Pick<EnvelopeAddress, 'address' | 'args'>;

export interface AcceptedTransaction {
  sessionId: string;
  /** The client as the spool envelope keeps it: address, port, HELO name, PTR, AUTH user. */
  client: SpoolEnvelope['client'];
  /** The protocol for Received's `with` (smtp-server's transmissionType: SMTP, ESMTPS, ESMTPSA…). */
  protocol: string;
  mailFrom: Address;
  /** The recipients the client gave, before any redirect. */
  rcptTo: Address[];
  disposition: Disposition;
  /** Header fields added by rules (and the external checker), in order; they go after Received. */
  headers: [string, string][];
  /** The message exactly as received. */
  message: Buffer;
}

/** The spool envelope of `t`; redirect replaces the recipients, keeping the originals beside the disposition. */
export function envelopeOf(t: AcceptedTransaction, id: string, receivedAt: Date): SpoolEnvelope {
  const d = t.disposition;
  const c = t.client;
  const rcptTo = t.rcptTo.map((r) => r.address);
  return {
    id,
    receivedAt: receivedAt.toISOString(),
    client: { ip: c.ip, port: c.port, helo: c.helo, ptr: c.ptr, user: c.user },
    mailFrom: t.mailFrom.address,
    rcptTo: d.action === 'redirect' && d.address ? [d.address] : rcptTo,
    ...(d.action === 'deliver' ? {} : { disposition: { action: d.action, rule: d.rule, reason: d.reason, originalRcptTo: rcptTo } }),
    ...dsnOf(t.mailFrom, t.rcptTo, d.action === 'redirect'),
  };
}

/**
 * The DSN parameters of a transaction (RFC 3461 §4), as the envelope keeps them; none
 * when the client gave none. A redirect's new recipient has no NOTIFY/ORCPT of its own.
 */
export function dsnOf(mailFrom: Address, rcptTo: Address[], redirected: boolean): { dsn?: Dsn } {
  const dsn: Dsn = {};
  const args = mailFrom.args;
  const ret = args.RET?.toUpperCase();
  if (ret === 'FULL' || ret === 'HDRS') dsn.ret = ret;
  if (args.ENVID) dsn.envid = args.ENVID;
  for (const r of redirected ? [] : rcptTo) {
    if (r.args.NOTIFY) (dsn.notify ??= {})[r.address] = r.args.NOTIFY.toUpperCase();
    if (r.args.ORCPT) (dsn.orcpt ??= {})[r.address] = r.args.ORCPT;
  }
  return Object.keys(dsn).length ? { dsn } : {};
}

/**
 * The header lines delivery puts in front of the message: our Received (when `receivedBy`,
 * our host name, is given; `for <rcpt>` only with a single recipient), then the rules'.
 */
export function addedHeaders(t: AcceptedTransaction, id: string, receivedBy: string | null, date: Date): string {
  const rcpt = t.rcptTo.length === 1 ? t.rcptTo[0]!.address : undefined;
  const trace = receivedBy
    ? receivedHeader({ heloName: t.client.helo, ip: t.client.ip, ptr: t.client.ptr, by: receivedBy, protocol: t.protocol, id, rcpt, date })
    : '';
  return trace + headerLines(t.headers);
}
