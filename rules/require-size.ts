/**
 * require-size — MAIL FROM must declare the message's size (ESMTP SIZE, RFC 1870).
 *
 * MercuryS's compliance option "Require clients to use an ESMTP 'Size' declaration": a
 * sender that says in advance how big the message is lets the server refuse it before
 * the data is sent, and a spam engine that speaks minimal SMTP rarely bothers. Off by
 * default: RFC 1870 makes SIZE optional, and an old client that sends HELO (not EHLO)
 * cannot declare it at all (MercuryS: "use with caution").
 *
 * The refusal is `550 5.7.1`, a permanent policy refusal: a client that did not declare
 * SIZE will not declare it on a retry, so a 4xx would only keep the message queued at
 * the sender for days before it bounces anyway; 5.7.1 (delivery not authorised) because
 * the command is valid SMTP and only our policy refuses it.
 */
import { defineRule, reject, STATUS } from 'portcullis/sdk';

export default defineRule({
  name: 'require-size',
  description: 'Refuses MAIL FROM without an ESMTP SIZE declaration (RFC 1870)',
  priority: 40,
  enabled: false,
  skip: { authenticated: true },
  phases: {
    mail: (ev, ctx) => {
      if (ev.mail.size !== null) return;
      ctx.log(`${ev.mail.address || '<>'}: MAIL FROM without SIZE`);
      return reject(550, 'Message size must be declared: use ESMTP MAIL FROM with SIZE= (RFC 1870)', { status: STATUS.notAuthorized, reason: 'require-size' });
    },
  },
});
