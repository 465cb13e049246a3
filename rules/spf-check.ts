/**
 * spf-check — refuses MAIL FROM when the sender's domain says the client may not send
 * for it: SPF `fail` (RFC 7208 §8.4, `-all`) → `550 5.7.23` (RFC 7372 §3.2: SPF
 * validation failed), as §8.4 allows at MAIL FROM. `softfail` (§8.5, `~all`) never
 * refuses: it is tagged (`X-SPF: softfail …`). `onFail: 'tag'` tags a fail too, `'none'`
 * only logs. temperror, permerror, neutral and none prove nothing and pass. Off by
 * default: a forwarder that does not rewrite the sender fails SPF for mail its users want.
 */
import { defineRule, reject, STATUS } from 'portcullis/sdk';
import { scored, scoreOption } from './lib/score.js';

export default defineRule({
  name: 'spf-check',
  description: 'Refuses MAIL FROM when SPF fails (550 5.7.23); tags softfail',
  priority: 64,
  enabled: false,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      onFail: { enum: ['reject', 'tag', 'none'], default: 'reject', description: 'SPF fail: refuse MAIL FROM (reject), add an X-SPF header (tag), or only log (none).' },
      tagSoftfail: { type: 'boolean', default: true, description: 'SPF softfail (~all): add an X-SPF header.' },
      score: scoreOption('an SPF fail (symbol spf-fail)'),
    },
  },
  needs: ['spf'],
  phases: {
    mail: (ev, ctx) => {
      const spf = ev.dns.spf;
      if (!spf || ev.mail.local) return;
      const who = `${ev.session.client.ip} for ${spf.domain}`;
      if (spf.result === 'softfail' && ctx.options.tagSoftfail) ctx.addHeader('X-SPF', `softfail (${who})`);
      if (spf.result !== 'fail') return;
      if (scored(ctx, 'spf-fail')) return;
      ctx.log(`SPF fail: ${who} (${ctx.options.onFail})`);
      if (ctx.options.onFail === 'tag') ctx.addHeader('X-SPF', `fail (${who})`);
      if (ctx.options.onFail !== 'reject') return;
      return reject(550, `SPF validation failed: ${spf.domain} does not designate ${ev.session.client.ip} as permitted sender`, { status: STATUS.spfFailed, reason: 'spf-fail' });
    },
  },
});
