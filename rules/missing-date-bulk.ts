/**
 * missing-date-bulk — junk to an invalid local recipient, judged at end of data.
 *
 * SmtpEvt 0.9.1: when the transaction has a recipient whose local mailbox does not
 * exist, a message without the `Date:` header RFC 5322 §3.6 requires gets the
 * connection dropped, and a `Precedence: bulk` message is accepted (250) and thrown
 * away. With `score` above 0 each only adds that many points (symbols
 * no-date-invalid-rcpt, bulk-invalid-rcpt), and the total of all rules decides.
 */
import { defineRule, discard, drop } from 'portcullis/sdk';
import { scored, scoreOption } from './lib/score.js';

export default defineRule({
  name: 'missing-date-bulk',
  description: 'Drops undated and discards bulk mail that has an invalid local recipient',
  priority: 130,
  skip: { authenticated: true },
  options: { type: 'object', additionalProperties: false, properties: { score: scoreOption('an undated or a bulk message to an invalid recipient') } },
  phases: {
    message: (ev, ctx) => {
      if (!ev.envelope.rcptTo.some((r) => r.mailbox === 'missing')) return;
      const header = (name: string) => ev.message.headers.find(([n]) => n.toLowerCase() === name)?.[1];
      const undated = header('date') === undefined;
      const bulk = /^\s*bulk\s*$/i.test(header('precedence') ?? '');
      if (undated && !scored(ctx, 'no-date-invalid-rcpt')) return drop('Message refused: no Date header', { reason: 'no-date-invalid-rcpt' });
      if (bulk && !scored(ctx, 'bulk-invalid-rcpt')) return discard({ reason: 'bulk-invalid-rcpt' });
    },
  },
});
