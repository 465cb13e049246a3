/**
 * missing-date-bulk — junk to an invalid local recipient, judged at end of data.
 *
 * SmtpEvt 0.9.1: when the transaction has a recipient whose local mailbox does not
 * exist, a message without the `Date:` header RFC 5322 §3.6 requires gets the
 * connection dropped, and a `Precedence: bulk` message is accepted (250) and thrown
 * away.
 */
import { defineRule, discard, drop } from 'portcullis/sdk';

export default defineRule({
  name: 'missing-date-bulk',
  description: 'Drops undated and discards bulk mail that has an invalid local recipient',
  priority: 130,
  skip: { authenticated: true },
  phases: {
    message: (ev) => {
      if (!ev.envelope.rcptTo.some((r) => r.mailbox === 'missing')) return;
      const header = (name: string) => ev.message.headers.find(([n]) => n.toLowerCase() === name)?.[1];
      if (header('date') === undefined) return drop('Message refused: no Date header', { reason: 'no-date-invalid-rcpt' });
      if (/^\s*bulk\s*$/i.test(header('precedence') ?? '')) return discard({ reason: 'bulk-invalid-rcpt' });
    },
  },
});
