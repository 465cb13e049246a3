/**
 * dmarc-policy — honours the From domain's DMARC policy (RFC 7489 §6.6.2) at end of
 * data when neither SPF nor DKIM passed for an aligned domain: `p=reject` → `550 5.7.26`
 * (RFC 7372 §3.3: multiple authentication checks failed, as Gmail answers), `p=quarantine`
 * → the message is quarantined; `p=none` only logs. `onFail: 'tag'` adds an `X-DMARC`
 * header instead of refusing or quarantining. Every DMARC failure is logged with what an
 * aggregate report carries (RFC 7489 §7.2: domain, policy, alignment). A temperror or a
 * domain with no policy passes. Off by default: mailing lists that rewrite the message
 * break DKIM, and honouring p=reject refuses their mail (RFC 7960).
 */
import { defineRule, quarantine, reject, STATUS } from 'portcullis/sdk';
import { scored, scoreOption } from './lib/score.js';

export default defineRule({
  name: 'dmarc-policy',
  description: "Honours the From domain's DMARC p=reject (550 5.7.26) and p=quarantine",
  priority: 120,
  enabled: false,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      onFail: { enum: ['policy', 'tag'], default: 'policy', description: "DMARC fail: do what the domain's policy asks (policy), or add an X-DMARC header only (tag)." },
      score: scoreOption('a DMARC fail under p=reject or p=quarantine (symbol dmarc-fail)'),
    },
  },
  needs: ['spf', 'dmarc'],
  phases: {
    message: (ev, ctx) => {
      const d = ev.dns.dmarc;
      if (d?.result !== 'fail') return;
      ctx.log(`DMARC fail: domain=${d.domain} policy=${d.policy} pct=${d.pct} spf=${ev.dns.spf?.result ?? 'none'} aligned-spf=${d.alignment.spf ?? '-'} aligned-dkim=${d.alignment.dkim ?? '-'} client=${ev.session.client.ip}`);
      if (d.policy === 'none') return;
      if (scored(ctx, 'dmarc-fail')) return;
      if (ctx.options.onFail === 'tag') return ctx.addHeader('X-DMARC', `fail (p=${d.policy}) header.from=${d.domain}`);
      if (d.policy === 'quarantine') return quarantine({ reason: 'dmarc-quarantine' });
      return reject(550, `Unauthenticated mail from ${d.domain} is not accepted due to the domain's DMARC policy`, { status: STATUS.authChecksFailed, reason: 'dmarc-reject' });
    },
  },
});
