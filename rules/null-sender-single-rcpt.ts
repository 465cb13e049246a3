/**
 * null-sender-single-rcpt — a bounce goes to one recipient.
 *
 * A delivery status notification is sent with the null reverse-path `MAIL FROM:<>`
 * (RFC 5321 §4.5.5) to the one address that sent the original message. Real MTAs send
 * one bounce per original sender; a null-sender transaction fanning out to many
 * recipients is backscatter or a spammer hiding behind `<>`.
 *
 * Default action: refuse every recipient after the first `550 5.7.1`.
 */
import { defineRule, next, reject } from 'portcullis/sdk';

export default defineRule({
  name: 'null-sender-single-rcpt',
  description: 'Refuses more than one recipient for a null sender (bounce)',
  priority: 50,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      maxRecipients: { type: 'integer', minimum: 1, default: 1, description: 'Recipients a null-sender transaction may have.' },
    },
  },
  phases: {
    rcpt: (ev, ctx) => {
      if (ev.envelope.mailFrom?.address !== '') return next();
      if (ev.envelope.rcptTo.length < ctx.options.maxRecipients) return next();
      return reject(550, 'A bounce (null sender) has only one recipient', { reason: 'null-sender-multi-rcpt' });
    },
  },
});
