/**
 * rcpt-failures — harvest protection: a connection whose RCPT commands keep being refused
 * is dropped.
 *
 * MercuryS's "Limit maximum number of failed RCPT commands": an address harvester
 * connects and tries a dictionary of user names, learning from each answer which exist.
 * Once `maxRefused` RCPTs of the connection were refused — by any rule (an unknown
 * mailbox, a policy refusal) or by relay control — the client's next RCPT, MAIL or DATA
 * is answered `421 4.7.0` and the connection closed. The count is the host's
 * (`session.refusedRecipients`: across transactions, so RSET does not reset it).
 * Relay control answers without running rules, so a client probing only foreign
 * addresses is dropped at its next command that reaches the rules. Off by default;
 * the seed names no number: the default is ours.
 */
import { defineRule, drop, type SessionInfo, type RuleContext } from 'portcullis/sdk';

function check(s: SessionInfo, ctx: RuleContext<{ maxRefused: number }>) {
  if (s.refusedRecipients < ctx.options.maxRefused) return;
  ctx.log(`${s.client.ip}: ${s.refusedRecipients} refused recipients on this connection: dropped`);
  return drop('Too many refused recipients', { reason: 'rcpt-failures' });
}

export default defineRule({
  name: 'rcpt-failures',
  description: 'Drops connections after too many refused RCPT commands (harvest protection)',
  priority: 45,
  enabled: false,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      maxRefused: { type: 'integer', minimum: 1, default: 10, description: 'Refused RCPT commands a connection may have; its next RCPT, MAIL or DATA is answered 421 and the connection closed.' },
    },
  },
  phases: {
    mail: (ev, ctx) => check(ev.session, ctx),
    rcpt: (ev, ctx) => check(ev.session, ctx),
    data: (ev, ctx) => check(ev.session, ctx),
  },
});
