/**
 * connect-flood — clients that connect and hang up without ever trying to send mail.
 *
 * SmtpEvt 1.1 targets clients that "connect repeatedly in quick sequence … and
 * immediately disconnect" (address harvesters, DDoS, broken bots): `watchlistCount`
 * (Watchlist_Count, 5) sessions from one client within `watchlistMinutes` (2) that never
 * sent MAIL FROM blacklist it for `blacklistMinutes`. A session that tried to send —
 * even one refused at MAIL or RCPT (an MTA bouncing to a bad mailbox, a greylisted
 * retry) — is never a flood; neither is a session refused at connect (the blacklist
 * already answered it).
 */
import { defineRule } from 'portcullis/sdk';
import { watchAndBlacklist, watchOptions } from './lib/smtpevt.js';

export default defineRule({
  name: 'connect-flood',
  description: 'Blacklists clients that keep connecting without trying to send mail',
  priority: 160,
  skip: { authenticated: true },
  options: { type: 'object', additionalProperties: false, properties: watchOptions(5, 2, 60) },
  phases: {
    close: (ev, ctx) => {
      if (ev.session.mailCommands > 0) return;
      watchAndBlacklist(ctx, 'connect-flood', ev.session.client.ip, 'connect flood');
    },
  },
});
