/**
 * invalid-recipient — RCPT TO a local mailbox that does not exist.
 *
 * SmtpEvt: refuse it (`550 5.1.1`) when something else already says junk — the client
 * looks like a spam bot (suspicious HELO, no reverse DNS, listed in the `dnsbl` zone) or
 * the sender is null (a bounce to a bad mailbox is never wanted). Otherwise accept it, as
 * a mail server set to "accept mail for invalid local addresses" would, and count it for
 * the connection (a session note, so RSET or a new MAIL FROM does not reset it: address
 * harvesters do that, MercuryS's "limit failed RCPT commands"); past `maxFailedRcpts`
 * the connection is dropped. Needs a mailbox list (config `mailboxes` or
 * `portcullis mailbox add`). Other rules see invalid recipients in the event
 * (`ev.envelope.rcptTo[i].mailbox`), not through this rule.
 */
import { defineRule, drop, reject, STATUS } from 'portcullis/sdk';
import { dnsblHit } from './lib/dnsbl.js';
import { dnsblSignOption, noPtrIsSignOption, spamBotSign } from './lib/smtpevt.js';

/** Session note: invalid recipients accepted on this connection so far. */
const ACCEPTED = 'invalid-recipient.accepted';

export default defineRule({
  name: 'invalid-recipient',
  description: 'Refuses or counts RCPTs to local mailboxes that do not exist',
  priority: 110,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      maxFailedRcpts: { type: 'integer', minimum: 1, default: 5, description: 'Invalid recipients accepted on one connection before it is dropped.' },
      noPtrIsSign: noPtrIsSignOption,
      dnsbl: dnsblSignOption,
    },
  },
  needs: (o) => (o.dnsbl ? [`dnsbl:${o.dnsbl}`] : []),
  phases: {
    rcpt: (ev, ctx) => {
      if (ev.rcpt.mailbox !== 'missing') return;
      const sign = ev.envelope.mailFrom?.address === '' ? 'null sender' : spamBotSign(ev.session, ctx.options.noPtrIsSign, dnsblHit(ev, ctx.options.dnsbl));
      if (sign) {
        ctx.log(`${ev.rcpt.address} does not exist; refused (${sign})`);
        return reject(550, `No such user here: ${ev.rcpt.address}`, { status: STATUS.badMailbox, reason: 'invalid-recipient' });
      }
      const failed = Number(ev.session.notes[ACCEPTED] ?? 0) + 1;
      if (failed > ctx.options.maxFailedRcpts) return drop('Too many invalid recipients', { reason: 'too-many-invalid-rcpts' });
      ctx.note.session(ACCEPTED, failed);
      ctx.log(`${ev.rcpt.address} does not exist; accepted as failed recipient ${failed}`);
    },
  },
});
