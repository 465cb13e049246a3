/**
 * mass-mailing — big messages to many recipients from our own users.
 *
 * SmtpEvt 1.0.1: a local sender (authenticated, or MAIL FROM a local domain) declaring
 * with ESMTP SIZE (RFC 1870) a large message for many recipients would load the server
 * for long: refused at DATA with `552 5.3.4` when recipients > N and size > S for any row
 * of the table. Without a SIZE declaration it cannot tell and says nothing. It runs for
 * authenticated clients too: they are the ones it is about.
 */
import { defineRule, reject, STATUS } from 'portcullis/sdk';

export default defineRule({
  name: 'mass-mailing',
  description: 'Refuses large mass mailings from local senders',
  priority: 150,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      limits: {
        type: 'array',
        items: { type: 'object', additionalProperties: false, required: ['recipients', 'bytes'], properties: { recipients: { type: 'integer', minimum: 1 }, bytes: { type: 'integer', minimum: 1 } } },
        default: [
          { recipients: 10, bytes: 5000000 }, { recipients: 25, bytes: 2500000 }, { recipients: 50, bytes: 1500000 },
          { recipients: 100, bytes: 1000000 }, { recipients: 500, bytes: 500000 }, { recipients: 1000, bytes: 250000 },
        ],
        description: 'Refuse when there are more than `recipients` recipients and the declared size is over `bytes`.',
      },
    },
  },
  phases: {
    data: (ev, ctx) => {
      const from = ev.envelope.mailFrom;
      const size = from?.size;
      if (!from || !size || !(ev.session.user !== null || from.local)) return;
      const n = ev.envelope.rcptTo.length;
      const hit = ctx.options.limits.find((l) => n > l.recipients && size > l.bytes);
      if (!hit) return;
      ctx.log(`${from.address || '<>'}: ${n} recipients × ${size} bytes is over ${hit.recipients} × ${hit.bytes}`);
      return reject(552, `Too large a message for ${n} recipients; send it to fewer at a time`, { status: STATUS.tooBig, reason: 'mass-mailing' });
    },
  },
});
