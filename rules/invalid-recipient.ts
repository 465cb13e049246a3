/**
 * invalid-recipient — RCPT TO a local mailbox that does not exist.
 *
 * SmtpEvt: refuse it (`550 5.1.1`) when something else already says junk — the client
 * looks like a spam bot (suspicious HELO, no reverse DNS, listed in the `dnsbl` zone) or the sender is null (a
 * bounce to a bad mailbox is never wanted). Otherwise accept it, as a mail server set to
 * "accept mail for invalid local addresses" would, but count it as a failed recipient of
 * the transaction; past `maxFailedRcpts` the connection is dropped. `missing-date-bulk`
 * reads the count. Needs a mailbox list (config `mailboxes` or `portcullis mailbox add`).
 */
import { defineRule, drop, reject } from 'portcullis/sdk';
import { dnsblHit } from './lib/dnsbl.js';
import { dnsblSignOption, domainOf, spamBotSign, trusted, txKey } from './lib/smtpevt.js';

export default defineRule<{ maxFailedRcpts: number; ourNames: string[]; noPtrIsSign: boolean; dnsbl: string }>({
  name: 'invalid-recipient',
  description: 'Refuses or counts RCPTs to local mailboxes that do not exist',
  priority: 110,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      maxFailedRcpts: { type: 'integer', minimum: 1, default: 5, description: 'Invalid recipients accepted in one transaction before the connection is dropped.' },
      ourNames: { type: 'array', items: { type: 'string' }, default: ['localhost'] },
      noPtrIsSign: { type: 'boolean', default: true, description: 'A client without reverse DNS counts as a spam bot (turn off where reverse DNS is not looked up).' },
      dnsbl: dnsblSignOption,
    },
  },
  needs: (o) => (o.dnsbl ? [`dnsbl:${o.dnsbl}`] : []),
  phases: {
    rcpt: (ev, ctx) => {
      if (trusted(ev.session) || !ctx.store.localDomain(domainOf(ev.rcpt.address))) return;
      if (ctx.store.mailbox(ev.rcpt.address) !== 'missing') return;
      const sign = ev.envelope.mailFrom?.address === '' ? 'null sender' : spamBotSign(ev.session, ctx.options.ourNames, ctx.options.noPtrIsSign, dnsblHit(ev, ctx.options.dnsbl));
      if (sign) {
        ctx.log(`${ev.rcpt.address} does not exist; refused (${sign})`);
        return reject(550, `No such user here: ${ev.rcpt.address}`, { status: '1.1', reason: 'invalid-recipient' });
      }
      const failed = ctx.store.hit(txKey('invalid-rcpt', ev.session), 3600);
      if (failed > ctx.options.maxFailedRcpts) return drop('Too many invalid recipients', { reason: 'too-many-invalid-rcpts' });
      ctx.log(`${ev.rcpt.address} does not exist; accepted as failed recipient ${failed}`);
    },
  },
});
