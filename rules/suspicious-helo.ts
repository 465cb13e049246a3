/**
 * suspicious-helo — tag messages whose client greeted with a suspicious HELO/EHLO.
 *
 * SmtpEvt: a bare IP not in brackets, an IP literal that is not the client's address, an
 * unqualified name, or our own host name or domain (RFC 5321 §4.1.1.1 wants the client's
 * FQDN or address literal). Adds `X-HELO: <what is wrong>` to every message of the
 * session; an unqualified HELO also makes `subject-spam` scan the subject. (A HELO with
 * no name never gets here: it is answered 501.)
 */
import { defineRule } from 'portcullis/sdk';
import { heloProblem, heloUnqualified, trusted } from './lib/smtpevt.js';

export default defineRule<{ ourNames: string[] }>({
  name: 'suspicious-helo',
  description: 'Tags messages from clients with a suspicious HELO name (X-HELO)',
  priority: 120,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      ourNames: { type: 'array', items: { type: 'string' }, default: ['localhost'], description: 'Our host names and domains: a client using them is lying.' },
    },
  },
  phases: {
    helo: (ev, ctx) => {
      if (trusted(ev.session)) return;
      const problem = heloProblem(ev.helo, ev.session.client.ip, ctx.options.ourNames.map((n) => n.toLowerCase()));
      if (!problem) return;
      ctx.addHeader('X-HELO', problem);
      if (heloUnqualified(ev.helo)) ctx.store.hit(`helo-unqualified:${ev.session.id}`, 86400);
    },
  },
});
