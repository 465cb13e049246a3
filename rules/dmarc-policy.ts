/**
 * dmarc-policy — honours the From domain's DMARC policy (RFC 7489 §6.6.2) at end of
 * data when neither SPF nor DKIM passed for an aligned domain: `p=reject` → `550 5.7.26`
 * (RFC 7372 §3.3: multiple authentication checks failed, as Gmail answers), `p=quarantine`
 * → the message is quarantined; `p=none` only logs. `pct=` is honoured (§6.6.4): the
 * policy applies to that percentage of failing messages, drawn at random per message,
 * and the rest get the next lower one (reject → quarantine → none). `onFail: 'tag'` adds
 * an `X-DMARC` header instead of refusing or quarantining. A temperror or a domain with
 * no policy passes. Off by default: mailing lists that rewrite the message break DKIM,
 * and honouring p=reject refuses their mail (RFC 7960).
 *
 * Each message with a pass or fail gets one log line holding what a row of an aggregate
 * report needs (§7.2, Appendix C): the header From domain, the policy published (p, sp,
 * pct, adkim, aspf), the disposition applied (with `reason=sampled_out` when pct spared
 * the message, `local_policy` when tag or score mode did), each DKIM result with its
 * domain, the SPF result with its domain, and the source IP.
 */
import { defineRule, dmarcPolicyApplied, quarantine, reject, STATUS, type DmarcPolicy } from 'portcullis/sdk';
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
  // dkim: the report lists every signature's result and domain (the check is made once either way).
  needs: ['spf', 'dkim', 'dmarc'],
  phases: {
    message: (ev, ctx) => {
      const d = ev.dns.dmarc;
      if (!d?.published || (d.result !== 'pass' && d.result !== 'fail')) return;
      const { p, sp, adkim, aspf } = d.published;
      const dkim = (ev.dns.dkim ?? []).map((s) => `${s.result}:${s.domain}`).join(',') || 'none';
      const spf = ev.dns.spf ? `${ev.dns.spf.result}:${ev.dns.spf.domain}` : 'none';
      /** The report row: what was done, and why it is not the published policy (Appendix C's PolicyOverrideType). */
      const report = (disposition: DmarcPolicy, override?: 'sampled_out' | 'local_policy') =>
        ctx.log(`DMARC ${d.result}: header-from=${d.domain} p=${p} sp=${sp} pct=${d.pct} adkim=${adkim} aspf=${aspf} disposition=${disposition}${override ? ` reason=${override}` : ''} dkim=${dkim} spf=${spf} aligned-spf=${d.alignment.spf ?? '-'} aligned-dkim=${d.alignment.dkim ?? '-'} client=${ev.session.client.ip}`);
      if (d.result === 'pass') return report('none');
      const applied = dmarcPolicyApplied(d);
      const sampledOut = applied === d.policy ? undefined : 'sampled_out';
      if (applied === 'none') return report('none', sampledOut);
      if (scored(ctx, 'dmarc-fail')) return report('none', 'local_policy');
      if (ctx.options.onFail === 'tag') {
        report('none', 'local_policy');
        return ctx.addHeader('X-DMARC', `fail (p=${d.policy}) header.from=${d.domain}`);
      }
      report(applied, sampledOut);
      if (applied === 'quarantine') return quarantine({ reason: 'dmarc-quarantine' });
      return reject(550, `Unauthenticated mail from ${d.domain} is not accepted due to the domain's DMARC policy`, { status: STATUS.authChecksFailed, reason: 'dmarc-reject' });
    },
  },
});
