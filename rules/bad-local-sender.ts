/**
 * bad-local-sender — MAIL FROM one of our domains, from a mailbox that does not exist.
 *
 * SmtpEvt 0.9.2 / 1.0.2: nobody outside sends as a local user who does not exist; drop
 * the connection and log it. `watchlistCount` such attempts from one client within
 * `watchlistMinutes` blacklist it. Domain-wide mailboxes (`*@domain`) are never "bad".
 */
import { defineRule, drop } from 'portcullis/sdk';
import { watchAndBlacklist, watchOptions } from './lib/smtpevt.js';

export default defineRule({
  name: 'bad-local-sender',
  description: 'Drops senders claiming a local mailbox that does not exist',
  priority: 100,
  skip: { authenticated: true },
  options: { type: 'object', additionalProperties: false, properties: watchOptions(5, 5, 60) },
  phases: {
    mail: (ev, ctx) => {
      if (ev.mail.mailbox !== 'missing') return;
      ctx.log(`bad local sender ${ev.mail.address} from ${ev.session.client.ip}`);
      watchAndBlacklist(ctx, 'bad-local-sender', ev.session.client.ip, 'repeated bad local sender');
      return drop('Sender address rejected: no such local mailbox', { reason: 'bad-local-sender' });
    },
  },
});
