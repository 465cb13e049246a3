/**
 * call-ahead — a recipient the next hop refuses is refused here, `550 5.1.1` with the
 * next hop's own words, during the session: the next hop is asked by a real SMTP
 * dialogue (MAIL FROM:<>, RCPT TO, RSET, QUIT) before we answer RCPT.
 *
 * SmtpEvt's "mailcheck for secondaries" (seed 000) and smtpf's call-ahead (seed 003): a
 * secondary MX, or a filter in front of the real mail server, cannot tell a mailbox from
 * a typo; accepting mail for one that does not exist means bouncing it later to a sender
 * who is often forged (backscatter). The host does the asking (the `callahead` fact):
 * answers are cached 5 minutes per recipient; a next hop that accepts smtpf's "false
 * RCPT" (a random impossible local part) accepts everything, and is not believed
 * (`unknown`, cached per domain); no answer, a 4xx or a network error is `unknown`, and
 * the recipient is allowed (SmtpEvt's rule: the check must never lose mail).
 *
 * Only recipients with a next hop are asked (config `delivery.routes` by domain, else
 * `delivery.nextHop`); local delivery has nothing to ask. Ships off: every new recipient
 * costs a connection to the next hop.
 */
import { defineRule, reject, STATUS } from 'portcullis/sdk';

/** The text of an SMTP reply line, without its code and enhanced status (`550 5.1.1 No such user` → `No such user`). */
const replyText = (line: string): string => line.replace(/^\d{3}[ -]?(\d\.\d{1,3}\.\d{1,3}\s+)?/, '').trim();

export default defineRule({
  name: 'call-ahead',
  description: 'Refuses a recipient its next hop refuses (550 5.1.1), asked by an SMTP dialogue before RCPT is answered',
  priority: 70,
  enabled: false,
  skip: { authenticated: true },
  needs: ['callahead'],
  phases: {
    rcpt: (ev, ctx) => {
      const c = ev.rcpt.callahead;
      if (c?.result !== 'refused') return;
      ctx.log(`the next hop refused <${ev.rcpt.address}>: ${c.reply ?? ''}`);
      return reject(550, `Recipient refused by the next hop: ${replyText(c.reply ?? '') || 'mailbox unavailable'}`, { status: STATUS.badMailbox, reason: 'call-ahead' });
    },
  },
});
