/**
 * bad-local-sender — MAIL FROM one of our domains, from a mailbox that does not exist.
 *
 * SmtpEvt 0.9.2 / 1.0.2: nobody outside sends as a local user who does not exist; drop
 * the connection and log it. `watchlistCount` such attempts from one client within
 * `watchlistMinutes` blacklist it. Domain-wide mailboxes (`*@domain`) are never "bad".
 */
import { defineRule, drop } from 'portcullis/sdk';
import { domainOf, trusted, watchAndBlacklist, watchSchema, type WatchOptions } from './lib/smtpevt.js';

export default defineRule<WatchOptions>({
  name: 'bad-local-sender',
  description: 'Drops senders claiming a local mailbox that does not exist',
  priority: 100,
  options: { type: 'object', additionalProperties: false, properties: watchSchema(5, 5, 60) },
  phases: {
    mail: (ev, ctx) => {
      const from = ev.mail.address;
      if (trusted(ev.session) || !from || !ctx.store.localDomain(domainOf(from)) || ctx.store.mailbox(from) !== 'missing') return;
      ctx.log(`bad local sender ${from} from ${ev.session.client.ip}`);
      watchAndBlacklist(ctx, 'bad-local-sender', ev.session.client.ip, 'repeated bad local sender');
      return drop('Sender address rejected: no such local mailbox', { reason: 'bad-local-sender' });
    },
  },
});
