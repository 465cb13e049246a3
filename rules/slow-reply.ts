/**
 * slow-reply — every reply of the session waits a little (smtpf 2.0's `smtp-slow-reply`):
 * "the impatient spammers typically go away, while legitimate senders will continue to
 * send". RFC 5321 §4.5.3.2 has clients wait minutes for each reply, so a second costs a
 * real MTA nothing. Clients marked well-behaved (they passed greylisting:
 * `session.client.wellBehaved`) are spared, as smtpf spares its proven good hosts, and so
 * are authenticated users. The host caps each wait (`limits.maxDelayMs`) and never holds
 * other sessions. Off by default: the seed gives no figure, the default is ours.
 */
import { defineRule, type RuleContext, type SessionInfo } from 'portcullis/sdk';

function slow(s: SessionInfo, ctx: RuleContext<{ delayMs: number; spareWellBehaved: boolean }>): void {
  if (ctx.options.spareWellBehaved && s.client.wellBehaved) return;
  ctx.delay(ctx.options.delayMs);
}

export default defineRule({
  name: 'slow-reply',
  description: 'Delays every reply of the session a little (smtpf smtp-slow-reply); spares well-behaved clients',
  priority: 175,
  enabled: false,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      delayMs: { type: 'integer', minimum: 1, maximum: 60000, default: 1000, description: 'How long each reply (HELO, MAIL, RCPT, DATA, end of data) waits, in milliseconds.' },
      spareWellBehaved: { type: 'boolean', default: true, description: 'Answer clients marked well-behaved (e.g. by greylisting) at once.' },
    },
  },
  phases: {
    helo: (ev, ctx) => slow(ev.session, ctx),
    mail: (ev, ctx) => slow(ev.session, ctx),
    rcpt: (ev, ctx) => slow(ev.session, ctx),
    data: (ev, ctx) => slow(ev.session, ctx),
    message: (ev, ctx) => slow(ev.session, ctx),
  },
});
