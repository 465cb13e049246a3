/**
 * header-conformance — messages without the header fields RFC 5322 requires, or whose
 * dates are not dates (smtpf 2.0's rfc2822-min-headers and rfc2822-strict-date).
 *
 * Checks (`checks`, all on by default):
 * - `date`, `from`: RFC 5322 §3.6 requires an origination date and an originator field.
 * - `message-id`: every message SHOULD have one (§3.6.4); smtpf requires it, "though not
 *   specified by the RFC as such".
 * - `sender`: a From: with more than one mailbox MUST come with a Sender: (§3.6.2).
 * - `date-syntax`: Date:, Resent-Date: (§3.6.6) and the date-time after the ";" of each
 *   Received: (§3.6.7) follow §3.3's grammar. With `obsoleteDates` (the default) §4.3's
 *   obsolete forms pass too, since §3.1 says a reader MUST honour them: two-digit years,
 *   zone names (GMT, EST…, military letters), comments and spaces between the parts, and
 *   a Received: with no date at all (§4.5.6). `obsoleteDates: false` is smtpf's strict date.
 *
 * `action: 'reject'` answers the final dot with 554 5.6.0: 554 is the transaction failing
 * after the data (RFC 5321 §4.2.2, §4.3.2), and X.6.0, other or undefined media error
 * (RFC 3463 §3.7), says the message's own format is at fault, where X.7.1 would say a
 * policy refused its sender. `tag` accepts it with `X-Header-Conformance: <what failed>`.
 * With `score` above 0 it adds points instead (symbol header-conformance).
 *
 * Ships off: RFC 5321 §3.3 says a server SHOULD NOT refuse mail for defects in its header
 * section, small legitimate senders often omit Message-ID, and the seed (smtpf's release
 * notes) names these tests without saying they are on. Authenticated clients are skipped:
 * the submission server is the one that adds a missing Date and Message-ID (RFC 6409 §8.2, §8.3).
 */
import { defineRule, reject, STATUS } from 'portcullis/sdk';
import { scored, scoreOption } from './lib/score.js';

const CHECKS = ['date', 'from', 'message-id', 'sender', 'date-syntax'] as const;

// RFC 5322 §3.3 over an unfolded field value, where FWS is white space. ABNF strings are
// case-insensitive (RFC 5234 §2.3), hence the `i` flag.
//   date-time   = [ day-of-week "," ] date time [CFWS]      day-of-week = ([FWS] day-name)
//   date        = day month year    day = ([FWS] 1*2DIGIT FWS)    year = (FWS 4*DIGIT FWS)
//   time        = time-of-day zone  time-of-day = hour ":" minute [ ":" second ]
//   zone        = (FWS ( "+" / "-" ) 4DIGIT)
// and the ranges of its prose: hour 00–23, minute 00–59, second 00–60 (a leap second),
// the zone's minutes 00–59. A comment is matched one level deep (no nested comments).
const DAY = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)';
const MONTH = '(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
const [HOUR, MINUTE, SECOND] = ['(?:[01]\\d|2[0-3])', '[0-5]\\d', '(?:[0-5]\\d|60)'];
const COMMENT = '\\((?:[^()\\\\]|\\\\.)*\\)';
const STRICT = new RegExp(`^(?:${DAY},\\s*)?\\d{1,2}\\s+${MONTH}\\s+\\d{4}\\s+${HOUR}:${MINUTE}(?::${SECOND})?\\s+[+-]\\d\\d[0-5]\\d(?:\\s*${COMMENT})*$`, 'i');
// §4.3 adds [CFWS] around each part (obs-day-of-week, obs-day, obs-hour…), 2*DIGIT years
// (obs-year) and obs-zone = "UT" / "GMT" / "EST" / "EDT" / "CST" / "CDT" / "MST" / "MDT"
// / "PST" / "PDT" / the military letters A–I, K–Z. (No two C's touch: no backtracking blow-up.)
const C = `(?:\\s|${COMMENT})*`;
const ZONE = `(?:[+-]\\d\\d[0-5]\\d|UT|GMT|[ECMP][SD]T|[A-IK-Z])`;
const OBSOLETE = new RegExp(`^${C}(?:${DAY}${C},${C})?\\d{1,2}${C}${MONTH}${C}\\d{2,}${C}${HOUR}${C}:${C}${MINUTE}(?:${C}:${C}${SECOND})?${C}${ZONE}${C}$`, 'i');

/** Mailboxes in an address list: its parts with an '@', outside quoted strings, comments and angle brackets (RFC 5322 §3.4). */
function mailboxes(list: string): number {
  const bare = list.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(new RegExp(COMMENT, 'g'), ' ').replace(/<[^>]*>/g, '<@>');
  return bare.split(',').filter((part) => part.includes('@')).length;
}

export default defineRule({
  name: 'header-conformance',
  description: 'Refuses or tags messages missing Date, From or Message-ID, or with dates outside RFC 5322',
  priority: 128,
  enabled: false,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      action: { enum: ['reject', 'tag'], default: 'reject', description: 'reject: 554 5.6.0 at the end of the message; tag: accept it with X-Header-Conformance naming what failed.' },
      checks: {
        type: 'array', items: { enum: CHECKS }, uniqueItems: true, default: [...CHECKS],
        description: 'date, from, message-id: the field is there; sender: a From with several mailboxes has a Sender; date-syntax: Date, Resent-Date and Received dates follow RFC 5322 §3.3.',
      },
      obsoleteDates: { type: 'boolean', default: true, description: "Accept RFC 5322 §4.3's obsolete date forms (two-digit years, zone names, comments), which §3.1 says readers MUST honour; false: §3.3's grammar only." },
      score: scoreOption('a message failing a check (symbol header-conformance)'),
    },
  },
  phases: {
    message: (ev, ctx) => {
      const o = ctx.options;
      const on = (check: (typeof CHECKS)[number]) => o.checks.includes(check);
      const values = (name: string) => ev.message.headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
      const isDate = (v: string) => (o.obsoleteDates ? OBSOLETE : STRICT).test(v);
      const problems: string[] = [];
      for (const [check, field] of [['date', 'Date'], ['from', 'From'], ['message-id', 'Message-ID']] as const) {
        if (on(check) && !values(field.toLowerCase()).length) problems.push(`no ${field}`);
      }
      const from = values('from')[0];
      if (on('sender') && from !== undefined && mailboxes(from) > 1 && !values('sender').length) problems.push('several From mailboxes and no Sender');
      if (on('date-syntax')) {
        for (const field of ['Date', 'Resent-Date']) if (values(field.toLowerCase()).some((v) => !isDate(v))) problems.push(`${field} not an RFC 5322 date`);
        const received = values('received').map((v) => (v.includes(';') ? v.slice(v.lastIndexOf(';') + 1).trim() : null));
        if (received.some((d) => (d === null ? !o.obsoleteDates : !isDate(d)))) problems.push('Received date not an RFC 5322 date');
      }
      if (!problems.length || scored(ctx, 'header-conformance')) return;
      if (o.action === 'reject') return reject(554, `Message refused: its header does not conform to RFC 5322 (${problems.join('; ')})`, { status: STATUS.mediaError });
      ctx.addHeader('X-Header-Conformance', problems.join('; '));
    },
  },
});
