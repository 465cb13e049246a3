/**
 * Delivery status notifications (bounces), RFC 3464: a multipart/report with a text part
 * for people, a message/delivery-status part for programs, and the original's header
 * (text/rfc822-headers: not its body, so a bounce never carries spam on to a third party).
 *
 * A bounce goes to the original's envelope sender and is itself sent from the null
 * sender `<>` (RFC 5321 §4.5.5), so a bounce that fails is never bounced. The client's DSN
 * parameters (RFC 3461) are honoured: no bounce for a recipient whose NOTIFY leaves out
 * FAILURE, the whole message returned for RET=FULL, ENVID and ORCPT echoed in the report.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import { newMessageId, type Spool, type SpoolEnvelope } from '../spool/spool.js';
import { bodyOffset } from './header.js';

/** A recipient the message could not be delivered to. */
export interface Failure {
  rcpt: string;
  /** The next hop's reply code (0 if none). */
  code: number;
  /** The next hop's reply, or what went wrong. */
  text: string;
  /** The next hop, `host:port` (absent for local delivery). */
  remote?: string;
}

/** Why no failure notice goes out for `rcpt`, or null when one should. */
export function noBounceReason(env: SpoolEnvelope, rcpt: string): string | null {
  // RFC 5321 §4.5.5: never answer the null sender; that is how bounce loops are avoided.
  if (env.mailFrom === '') return 'the sender is <> (RFC 5321 §4.5.5)';
  const notify = env.dsn?.notify?.[rcpt];
  // RFC 3461 §4.1: NOTIFY=NEVER, or a list without FAILURE, asks for no failure DSN.
  if (notify && !notify.split(',').includes('FAILURE')) return `the client asked NOTIFY=${notify} (RFC 3461 §4.1)`;
  return null;
}

/** The enhanced status (RFC 3463) in a reply, or a default from its class. */
export function statusOf(f: Failure, fallback: string): string {
  const m = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(f.text);
  if (m) return m[1]!;
  return f.code >= 500 ? '5.0.0' : fallback;
}

/** The bounce for `failures` of `original`: its envelope and message, ready for the spool. */
export function bounceFor(o: { hostname: string; original: SpoolEnvelope; message: Buffer; failures: Failure[]; reason: string; now: Date }): { envelope: SpoolEnvelope; message: Buffer } {
  const id = newMessageId();
  const boundary = `=_portcullis_${randomBytes(8).toString('hex')}`;
  const date = o.now.toUTCString().replace('GMT', '+0000');
  const full = o.original.dsn?.ret === 'FULL';
  const returned = full ? o.message.toString('latin1').replace(/(\r?\n)+$/, '') : o.message.subarray(0, bodyOffset(o.message)).toString('latin1').replace(/(\r?\n)+$/, '');
  const human = [
    `This is the mail system at ${o.hostname}.`,
    '',
    `Your message could not be delivered to ${o.failures.length === 1 ? 'this recipient' : 'these recipients'} (${o.reason}):`,
    '',
    ...o.failures.map((f) => `  <${f.rcpt}>: ${f.remote ? `${f.remote} said: ` : ''}${f.text}`),
    '',
  ];
  const perMessage = [
    ...(o.original.dsn?.envid ? [`Original-Envelope-Id: ${o.original.dsn.envid}`] : []),
    `Reporting-MTA: dns; ${o.hostname}`,
    `X-Portcullis-Queue-ID: ${o.original.id}`,
    `Arrival-Date: ${new Date(o.original.receivedAt).toUTCString().replace('GMT', '+0000')}`,
  ];
  // RFC 3464 §2.1: the per-message fields, then a block per recipient, blank lines between.
  const perRcpt = o.failures.map((f) => [
    ...(o.original.dsn?.orcpt?.[f.rcpt] ? [`Original-Recipient: ${o.original.dsn.orcpt[f.rcpt]!.replace(';', '; ')}`] : []),
    `Final-Recipient: rfc822; ${f.rcpt}`,
    'Action: failed',
    `Status: ${statusOf(f, '4.4.7')}`,
    ...(f.remote ? [`Remote-MTA: dns; ${f.remote.replace(/:\d+$/, '')}`] : []),
    `Diagnostic-Code: smtp; ${f.text}`,
  ].join('\r\n'));
  const text = [
    `From: Mail Delivery System <MAILER-DAEMON@${o.hostname}>`,
    `To: <${o.original.mailFrom}>`,
    'Subject: Undelivered Mail Returned to Sender',
    `Date: ${date}`,
    `Message-ID: <${id}@${o.hostname}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    ...human,
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    [perMessage.join('\r\n'), ...perRcpt].join('\r\n\r\n'),
    '',
    `--${boundary}`,
    full ? 'Content-Type: message/rfc822' : 'Content-Type: text/rfc822-headers',
    '',
    returned,
    '',
    `--${boundary}--`,
    '',
  ].join('\r\n');
  const envelope: SpoolEnvelope = {
    id,
    receivedAt: o.now.toISOString(),
    client: { ip: '127.0.0.1', port: 0, helo: o.hostname, ptr: null, user: null },
    mailFrom: '',
    rcptTo: [o.original.mailFrom],
  };
  return { envelope, message: Buffer.from(text, 'latin1') };
}

/**
 * Gives up on `failures`: spools a bounce for those that want one and hands its id to
 * `enqueue`. Returns false (logged) when the spool cannot take the bounce: the caller
 * keeps the recipients and fails them again later.
 */
export async function spoolBounce(
  d: { spool: Spool; hostname: string; log: Logger; metrics: Metrics },
  o: { original: SpoolEnvelope; message: Buffer; failures: Failure[]; reason: string; path: 'queue' | 'relay' },
  enqueue: (id: string) => void,
): Promise<boolean> {
  const id = o.original.id;
  const wanted: Failure[] = [];
  for (const f of o.failures) {
    const why = noBounceReason(o.original, f.rcpt);
    if (!why) wanted.push(f);
    else {
      d.log.info({ id, rcpt: f.rcpt, reason: o.reason, err: f.text }, `giving up on ${id} for <${f.rcpt}> (${o.reason}: ${f.text}); no bounce: ${why}`);
      d.metrics.inc('deliveries_total', { path: o.path, result: 'failed' });
    }
  }
  if (!wanted.length) return true;
  const b = bounceFor({ hostname: d.hostname, original: o.original, message: o.message, failures: wanted, reason: o.reason, now: new Date() });
  const list = wanted.map((f) => `<${f.rcpt}>`).join(', ');
  try {
    await d.spool.store('spool', b.envelope, [b.message]);
  } catch (e) {
    d.log.error({ id, err: e }, `could not spool the bounce of ${id} for ${list}: ${(e as Error).message}; will try again`);
    return false;
  }
  d.log.info({ id, bounce: b.envelope.id, to: o.original.mailFrom, rcpts: wanted.map((f) => f.rcpt), reason: o.reason }, `bounced ${id} for ${list} to <${o.original.mailFrom}> (${o.reason}) as ${b.envelope.id}`);
  d.metrics.inc('bounces_total');
  d.metrics.inc('deliveries_total', { path: o.path, result: 'bounced' }, wanted.length);
  enqueue(b.envelope.id);
  return true;
}
