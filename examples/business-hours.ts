/**
 * business-hours — hold mail from a partner domain outside its business hours.
 *
 * The partner's gateway retries after a 4xx (RFC 5321 §4.5.4.1), so answering
 * `451 4.7.1` at MAIL FROM outside office hours delays their traffic without losing it.
 * Hours are given in the partner's time zone as a fixed UTC offset.
 */
import { defineRule, next, tempfail } from 'portcullis/sdk';


export default defineRule({
  name: 'business-hours',
  description: 'Tempfails mail from partner domains outside their business hours',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      senderDomains: { type: 'array', items: { type: 'string' }, default: [] },
      from: { type: 'integer', minimum: 0, maximum: 23, default: 8, description: 'First hour (0–23) mail is taken, in local time.' },
      to: { type: 'integer', minimum: 0, maximum: 23, default: 17, description: 'Last hour mail is taken.' },
      days: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 6 }, default: [1, 2, 3, 4, 5], description: 'Days mail is taken: 0 = Sunday … 6 = Saturday.' },
      utcOffsetMinutes: { type: 'integer', minimum: -720, maximum: 840, default: 0 },
    },
  },
  phases: {
    mail: (ev, ctx) => {
      const o = ctx.options;
      if (!o.senderDomains.includes(ev.mail.domain)) return next();
      const local = new Date(ev.session.time + o.utcOffsetMinutes * 60_000);
      const hour = local.getUTCHours();
      if (o.days.includes(local.getUTCDay()) && hour >= o.from && hour <= o.to) return next();
      return tempfail(451, 'Outside business hours, please try again later', { reason: 'business-hours' });
    },
  },
});
