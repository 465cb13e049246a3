/**
 * blacklist — refuse clients on the internal short-term blacklist.
 *
 * Rules put a client there with `ctx.blacklist(ttlSeconds, reason)` (AUTH brute force,
 * connect floods, spam traps…) and admins with `portcullis blacklist add`. Until the
 * entry expires the client is refused before the greeting: `554 5.7.1` by default
 * (RFC 5321 §3.1), or `421 4.7.1` to ask it to come back later. A refused connection
 * counts for nothing else (no close-phase rule sees it), so a blocked client that keeps
 * reconnecting neither shortens nor extends its own block. Exempt networks skip it.
 */
import { defineRule, next, reject, tempfail } from 'portcullis/sdk';

export default defineRule({
  name: 'blacklist',
  description: 'Refuses clients on the internal blacklist at connect',
  priority: 0,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      reply: { enum: [554, 421], default: 554, description: '554: refused; 421: try again later.' },
    },
  },
  phases: {
    connect: (ev, ctx) => {
      const entry = ev.blacklist;
      if (!entry) return next();
      const text = `Access denied: ${entry.reason}`;
      return ctx.options.reply === 421 ? tempfail(421, text, { reason: 'blacklisted' }) : reject(554, text, { reason: 'blacklisted' });
    },
  },
});
