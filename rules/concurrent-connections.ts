/**
 * concurrent-connections — too many simultaneous sessions from one client IP.
 *
 * smtpf's `concurrent-drop`: a client holding many connections open at once (a spam
 * engine working in parallel, or one tying up our slots) gets `421 4.7.0` at connect
 * for each connection past the limit (RFC 5321 §3.8: 421 closes it; the client may
 * retry once its other sessions end). The host counts the sessions
 * (`clientSessions` in the connect event, this one included). Off by default; the seed
 * names no number: the default is ours.
 */
import { defineRule, STATUS, tempfail } from 'portcullis/sdk';

export default defineRule({
  name: 'concurrent-connections',
  description: 'Drops connections past N simultaneous sessions from one client IP',
  priority: 4,
  enabled: false,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      maxSessions: { type: 'integer', minimum: 1, default: 10, description: 'Sessions one client IP may have open at once; a connection past it gets 421.' },
    },
  },
  phases: {
    connect: (ev, ctx) => {
      if (ev.clientSessions <= ctx.options.maxSessions) return;
      ctx.log(`${ev.session.client.ip}: ${ev.clientSessions} sessions open at once, over ${ctx.options.maxSessions}`);
      return tempfail(421, `Too many concurrent connections from ${ev.session.client.ip}; try again later`, { status: STATUS.security, reason: 'concurrent-connections' });
    },
  },
});
