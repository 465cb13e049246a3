/**
 * sender-domain — the MAIL FROM domain must be able to receive mail (an MX record, or
 * an A/AAAA record as the implicit MX, RFC 5321 §5.1): a domain that cannot take the
 * bounce is not a real sender. Obtuse smtpd's MX check semantics: a DNS failure
 * (timeout, SERVFAIL) counts as valid, so a broken resolver never refuses mail; the
 * null sender `<>` and our own domains are not checked. A null MX (RFC 7505) is refused.
 * `code: 450` (Postfix's unknown_address_reject_code) answers `450 4.1.8` instead, so a
 * sender whose DNS is only briefly broken retries.
 */
import { defineRule, reject, STATUS, tempfail } from 'portcullis/sdk';
import { scored, scoreOption } from './lib/score.js';

export default defineRule({
  name: 'sender-domain',
  description: 'Refuses MAIL FROM domains that have no MX and no A/AAAA record',
  priority: 62,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      code: { enum: [450, 550], default: 550, description: '550 refuses for good; 450 (Postfix unknown_address_reject_code) lets the sender retry.' },
      score: scoreOption('a sender domain with no MX and no address (symbol sender-domain-unknown)'),
    },
  },
  needs: ['mx'],
  phases: {
    mail: (ev, ctx) => {
      const { domain, local } = ev.mail;
      if (!domain || local || ev.dns.mx?.status !== 'none') return; // found, failed (counts as valid) or DNS off
      if (scored(ctx, 'sender-domain-unknown')) return;
      ctx.log(`sender domain ${domain} has no MX or address record: refused with ${ctx.options.code}`);
      const text = `Sender address rejected: Domain ${domain} not found`;
      const o = { status: STATUS.badSenderDomain, reason: 'sender-domain' };
      return ctx.options.code === 450 ? tempfail(450, text, o) : reject(550, text, o);
    },
  },
});
