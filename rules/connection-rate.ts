/**
 * connection-rate — too many connections from one client IP within a window.
 *
 * smtpf's `rate-drop`: a client opening connections faster than a limit (a spam engine
 * fanning out, a dictionary attack spread over sessions) is dropped at connect with
 * `421 4.7.0` (RFC 5321 §3.8: 421 closes the connection; the client may retry later,
 * which a legitimate MTA does). Every connection attempt counts, refused ones included,
 * so a client that keeps hammering stays refused until it slows down. Off by default.
 * The seed names no numbers: the defaults are ours.
 */
import { defineRule, STATUS, tempfail } from 'portcullis/sdk';

export default defineRule({
  name: 'connection-rate',
  description: 'Drops clients that open too many connections within a window',
  priority: 5,
  enabled: false,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      maxConnections: { type: 'integer', minimum: 1, default: 30, description: 'Connections one client IP may open within windowSeconds; the next ones get 421.' },
      windowSeconds: { type: 'integer', minimum: 1, maximum: 7 * 24 * 3600, default: 60 },
    },
  },
  phases: {
    connect: (ev, ctx) => {
      const ip = ev.session.client.ip;
      const n = ctx.store.hit(`connection-rate:${ip}`, ctx.options.windowSeconds);
      if (n <= ctx.options.maxConnections) return;
      ctx.log(`${ip}: ${n} connections in ${ctx.options.windowSeconds} s, over ${ctx.options.maxConnections}`);
      return tempfail(421, `Too many connections from ${ip}; try again later`, { status: STATUS.security, reason: 'connection-rate' });
    },
  },
});
