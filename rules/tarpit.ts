/**
 * tarpit — slow replies for transactions with many recipients.
 *
 * Obtuse smtpd Spammer Deterrent's tar pit: "an administrator specified delay to each
 * SMTP command after a number of RCPT TO commands", the delay growing by a multiplier
 * each time, which "makes life difficult for spammers who send a single email with
 * many, many recipients" (smtpf's smtp-slow-reply rests on the same finding: spammers
 * are impatient, legitimate MTAs wait). Once a transaction had `afterRecipients` RCPT
 * commands (refused ones included), each further reply of the transaction — every RCPT,
 * then DATA and the end of data — waits `delayMs × multiplier^k`, k = 0, 1, 2…
 * through `ctx.delay`. The host caps each reply's wait at `limits.maxDelayMs` (30 s by
 * default) and never holds other sessions. Nothing is refused. Off by default; the
 * seed's values live in its Makefile: the defaults are ours.
 *
 * A client marked well-behaved (`session.client.wellBehaved`: it proved it is a real MTA,
 * e.g. by retrying after greylisting) is spared, as smtpf 2.0 spares well-behaved hosts
 * its slow replies: a mailing list's server sending to many of our users is not a
 * spammer. `spareWellBehaved: false` tarpits everyone.
 */
import { defineRule, type Envelope, type RuleContext, type SessionInfo } from 'portcullis/sdk';

type Options = { afterRecipients: number; delayMs: number; multiplier: number; spareWellBehaved: boolean };

/** Delays this reply when the transaction already had afterRecipients RCPTs (`extra`: commands since the last RCPT). */
function tarpit(session: SessionInfo, envelope: Envelope, ctx: RuleContext<Options>, extra: number): void {
  const o = ctx.options;
  if (o.spareWellBehaved && session.client.wellBehaved) return;
  const k = envelope.rcptTo.length + envelope.failedRcpts + extra - o.afterRecipients;
  if (k < 0) return;
  const ms = Math.min(o.delayMs * o.multiplier ** k, 3_600_000);
  ctx.log(`tarpit: reply ${k + 1} after ${o.afterRecipients} recipients waits ${Math.round(ms)} ms`);
  ctx.delay(ms);
}

export default defineRule({
  name: 'tarpit',
  description: 'Delays each reply after N recipients in a transaction, more each time',
  priority: 170,
  enabled: false,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      afterRecipients: { type: 'integer', minimum: 0, default: 10, description: 'RCPT commands a transaction may send before its replies are delayed.' },
      delayMs: { type: 'integer', minimum: 1, default: 1000, description: 'The first delay, in milliseconds.' },
      multiplier: { type: 'number', minimum: 1, default: 2, description: 'Each further delay is the previous one times this (1: a constant delay).' },
      spareWellBehaved: { type: 'boolean', default: true, description: 'Never delay a client marked well-behaved (session.client.wellBehaved, e.g. by greylisting once it retried).' },
    },
  },
  phases: {
    rcpt: (ev, ctx) => tarpit(ev.session, ev.envelope, ctx, 0),
    data: (ev, ctx) => tarpit(ev.session, ev.envelope, ctx, 0),
    message: (ev, ctx) => tarpit(ev.session, ev.envelope, ctx, 1),
  },
});
