/**
 * sender-domain — the MAIL FROM domain must be able to receive mail (an MX record, or
 * an A/AAAA record as the implicit MX, RFC 5321 §5.1): a domain that cannot take the
 * bounce is not a real sender. Obtuse smtpd's MX check semantics: a DNS failure
 * (timeout, SERVFAIL) counts as valid, so a broken resolver never refuses mail; the
 * null sender `<>` and our own domains are not checked. A null MX (RFC 7505) is refused.
 */
import { defineRule, reject } from 'portcullis/sdk';
import { domainOf, trusted } from './lib/smtpevt.js';

export default defineRule<{ code: number }>({
  name: 'sender-domain',
  description: 'Refuses MAIL FROM domains that have no MX and no A/AAAA record',
  priority: 62,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      code: { type: 'integer', enum: [450, 550], default: 550, description: '550 refuses for good; 450 (Postfix unknown_address_reject_code) lets the sender retry.' },
    },
  },
  needs: ['mx'],
  phases: {
    mail: (ev, ctx) => {
      const domain = domainOf(ev.mail.address);
      if (!domain || trusted(ev.session) || ctx.store.localDomain(domain)) return;
      if (ev.dns.mx?.status !== 'none') return; // found, failed (counts as valid) or DNS off
      ctx.log(`sender domain ${domain} has no MX or address record: refused`);
      return reject(ctx.options.code, `Sender address rejected: Domain ${domain} not found`, { status: '1.8', reason: 'sender-domain' });
    },
  },
});
