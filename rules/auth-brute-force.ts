/**
 * auth-brute-force — password guessing over SMTP AUTH.
 *
 * SmtpEvt 1.1: more than `watchlistCount` failed AUTH attempts from one client within
 * `watchlistMinutes` blacklist it for `blacklistMinutes` (3 hours) and drop the
 * connection.
 */
import { defineRule, drop } from 'portcullis/sdk';
import { watchOptions } from './lib/smtpevt.js';

export default defineRule({
  name: 'auth-brute-force',
  description: 'Blacklists clients that keep failing AUTH',
  priority: 20,
  options: { type: 'object', additionalProperties: false, properties: watchOptions(5, 2, 180) },
  phases: {
    auth: (ev, ctx) => {
      if (ev.auth.success) return;
      const o = ctx.options;
      const n = ctx.store.hit(`auth-fail:${ev.session.client.ip}`, o.watchlistMinutes * 60);
      if (n <= o.watchlistCount) return;
      ctx.blacklist(o.blacklistMinutes * 60, 'AUTH brute force');
      ctx.log(`${n} failed AUTH attempts (last as ${ev.auth.username}) in ${o.watchlistMinutes} min`);
      return drop('Too many failed authentication attempts', { reason: 'auth-brute-force' });
    },
  },
});
