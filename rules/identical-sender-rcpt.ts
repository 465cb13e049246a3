/**
 * identical-sender-rcpt — MAIL FROM and RCPT TO the same address.
 *
 * SmtpEvt 1.0.1: tag it `X-Identical: From and Rcpt identical`; with a single recipient
 * that is not a valid local mailbox, also `X-Blocked: identical-sender-rcpt`. The same
 * client doing it `watchlistCount` times within `watchlistMinutes` is dropped and
 * blacklisted. SmtpEvt 1.1.0: a client listed in the `dnsbl` zone doing it is dropped
 * at once. With `score` above 0 it only adds that many points (symbol
 * identical-sender-rcpt): no header, watchlist or drop, and the total of all rules decides.
 */
import { defineRule, drop } from 'portcullis/sdk';
import { dnsblHit } from './lib/dnsbl.js';
import { scored, scoreMode, scoreOption } from './lib/score.js';
import { dnsblSignOption, watchAndBlacklist, watchOptions } from './lib/smtpevt.js';

export default defineRule({
  name: 'identical-sender-rcpt',
  description: 'Tags mail from an address to itself; repeated, blacklists the client',
  priority: 140,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: { ...watchOptions(3, 10, 30), dnsbl: dnsblSignOption, score: scoreOption('mail from an address to itself (symbol identical-sender-rcpt)') },
  },
  needs: (o) => (o.dnsbl && !scoreMode(o) ? [`dnsbl:${o.dnsbl}`] : []),
  phases: {
    rcpt: (ev, ctx) => {
      const from = ev.envelope.mailFrom?.address.toLowerCase();
      if (!from || from !== ev.rcpt.address.toLowerCase() || scored(ctx, 'identical-sender-rcpt')) return;
      const listed = dnsblHit(ev, ctx.options.dnsbl);
      if (listed) {
        ctx.log(`${ev.session.client.ip} sends from an address to itself and is listed in ${listed}: dropped`);
        return drop('Message refused', { reason: 'identical-sender-dnsbl' });
      }
      if (watchAndBlacklist(ctx, 'identical-sender-rcpt', ev.session.client.ip, 'repeated identical sender and recipient')) {
        return drop('Too many messages from an address to itself', { reason: 'identical-sender-rcpt' });
      }
      ctx.addHeader('X-Identical', 'From and Rcpt identical');
    },
    data: (ev, ctx) => {
      const from = ev.envelope.mailFrom?.address.toLowerCase();
      const [only, ...more] = ev.envelope.rcptTo;
      if (!only || more.length || only.address.toLowerCase() !== from || scoreMode(ctx.options)) return;
      if (only.mailbox !== 'exists') ctx.addHeader('X-Blocked', 'identical-sender-rcpt');
    },
  },
});
