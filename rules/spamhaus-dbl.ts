/**
 * spamhaus-dbl — the MAIL FROM domain in the Spamhaus Domain Block List.
 *
 * 127.0.1.2–.99 (spam, phishing, malware, botnet C&C domains): MAIL FROM refused,
 * `550 5.7.1`. 127.0.1.102 and up (legitimate domains being abused, e.g. a hacked site):
 * only tagged `X-DBL: <domain> abused-legit (<code>)`. The null sender has no domain and
 * is not looked up; failed or refused lookups count as not listed (SmtpEvt 1.2.0.213).
 */
import { defineRule, reject } from 'portcullis/sdk';
import { lastOctet, zoneOption } from './lib/dnsbl.js';
import { scored, scoreOption } from './lib/score.js';

/** Which part of the DBL a code is from: 'spam', 'abused', or null for other answers. */
const kind = (code: string): 'spam' | 'abused' | null => {
  if (!code.startsWith('127.0.1.')) return null;
  const n = lastOctet(code);
  return n >= 2 && n <= 99 ? 'spam' : n >= 102 && n <= 199 ? 'abused' : null;
};

export default defineRule({
  name: 'spamhaus-dbl',
  description: 'Refuses MAIL FROM domains on the Spamhaus DBL; tags abused legitimate domains',
  priority: 61,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: { zone: zoneOption('dbl.spamhaus.org', 'The DBL zone (or a DQS zone).'), score: scoreOption('a DBL spam listing of the sender domain (symbol dbl)') },
  },
  needs: (o) => (o.zone ? [`rhsbl:${o.zone}`] : []),
  phases: {
    mail: (ev, ctx) => {
      const a = ev.dns.rhsbl[ctx.options.zone];
      if (a?.status !== 'listed') return;
      const domain = ev.mail.domain;
      if (a.codes.some((c) => kind(c) === 'spam')) {
        if (scored(ctx, 'dbl')) return;
        ctx.log(`sender domain ${domain} is on the DBL (${a.codes.join(', ')}): refused`);
        return reject(550, `Sender address rejected: ${domain} blocked using ${ctx.options.zone}`, { reason: 'dbl' });
      }
    },
    data: (ev, ctx) => {
      const a = ev.dns.rhsbl[ctx.options.zone];
      const abused = a?.status === 'listed' ? a.codes.filter((c) => kind(c) === 'abused') : [];
      if (!abused.length) return;
      ctx.addHeader('X-DBL', `${ev.envelope.mailFrom?.domain ?? ''} abused-legit (${abused.join(', ')})`);
    },
  },
});
