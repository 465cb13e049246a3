/**
 * domain-size-limits — per-recipient-domain size limits.
 *
 * Some destinations (a partner's gateway, a mobile-only mailbox) take smaller messages
 * than we do. When the client declares the size (ESMTP SIZE, RFC 1870) the recipient is
 * refused at RCPT with `552 5.3.4`, before any data is sent; otherwise the message is
 * refused at end of data if it is larger than the smallest limit of its recipients.
 */
import { defineRule, next, reject, STATUS } from 'portcullis/sdk';


export default defineRule({
  name: 'domain-size-limits',
  description: 'Refuses messages larger than the recipient domain accepts',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      limits: { type: 'object', additionalProperties: { type: 'integer', minimum: 1 }, default: {}, description: 'Recipient domain → largest message in bytes.' },
    },
  },
  phases: {
    rcpt: (ev, ctx) => {
      const limit = ctx.options.limits[ev.rcpt.domain];
      const size = ev.envelope.mailFrom?.size;
      if (limit === undefined || size == null || size <= limit) return next();
      return reject(552, `Message too large for ${ev.rcpt.domain} (limit ${limit} bytes)`, { status: STATUS.tooBig, reason: 'domain-size' });
    },
    message: (ev, ctx) => {
      const limits = ev.envelope.rcptTo.map((r) => ctx.options.limits[r.domain]).filter((l): l is number => l !== undefined);
      if (!limits.length || ev.message.size <= Math.min(...limits)) return next();
      return reject(552, `Message too large for one of its recipients (limit ${Math.min(...limits)} bytes)`, { status: STATUS.tooBig, reason: 'domain-size' });
    },
  },
});
