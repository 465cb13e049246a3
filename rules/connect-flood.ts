/**
 * connect-flood — clients that connect and hang up without sending mail.
 *
 * SmtpEvt 1.1: `watchlistCount` connections without a transaction from one client within
 * `watchlistMinutes` blacklist it (address harvesters, dictionary attacks, broken bots).
 */
import { defineRule } from 'portcullis/sdk';
import { trusted, watchAndBlacklist, watchSchema, type WatchOptions } from './lib/smtpevt.js';

export default defineRule<WatchOptions>({
  name: 'connect-flood',
  description: 'Blacklists clients that keep connecting without sending mail',
  priority: 160,
  options: { type: 'object', additionalProperties: false, properties: watchSchema(10, 2, 60) },
  phases: {
    close: (ev, ctx) => {
      if (ev.session.transactions > 0 || trusted(ev.session)) return;
      watchAndBlacklist(ctx, 'connect-flood', ev.session.client.ip, 'connect flood');
    },
  },
});
