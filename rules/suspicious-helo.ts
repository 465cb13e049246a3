/**
 * suspicious-helo — tag messages whose client greeted with a suspicious HELO/EHLO.
 *
 * SmtpEvt: a bare IP not in brackets, an IP literal that is not the client's address, an
 * unqualified name, or our own host name or one of our domains (RFC 5321 §4.1.1.1 wants
 * the client's FQDN or address literal). Adds `X-HELO: <what is wrong>` to every message
 * of the session — unless the client authenticates: every mail client sends EHLO before
 * AUTH, and the header is withdrawn then (`skip: { authenticated: true }`). (A HELO with
 * no name never gets here: it is answered 501.)
 */
import { defineRule } from 'portcullis/sdk';
import { scored, scoreOption } from './lib/score.js';
import { heloProblem } from './lib/smtpevt.js';

export default defineRule({
  name: 'suspicious-helo',
  description: 'Tags messages from clients with a suspicious HELO name (X-HELO)',
  priority: 120,
  skip: { authenticated: true },
  options: { type: 'object', additionalProperties: false, properties: { score: scoreOption('a suspicious HELO (symbol helo-suspicious)') } },
  phases: {
    helo: (ev, ctx) => {
      const problem = heloProblem(ev.helo, ev.session);
      if (!problem || scored(ctx, 'helo-suspicious')) return;
      ctx.addHeader('X-HELO', problem);
    },
  },
});
