/**
 * subject-spam — spam subjects, when something else already looks wrong.
 *
 * SmtpEvt 1.1: the subject is scanned when the transaction has a recipient whose local
 * mailbox does not exist, the client is listed in the `dnsbl` zone, or its HELO was
 * unqualified. A match with an invalid recipient or a DNSBL listing drops the connection
 * and blacklists the client (and with `learn`, remembers the exact subject in the
 * store's `spam-subjects` list); a match after an unqualified HELO only tags
 * `X-Blocked: subject-spam`. With `score` above 0 every subject is scanned and a match
 * only adds that many points (symbol subject-spam): the total of all rules replaces
 * SmtpEvt's triggers.
 */
import { defineRule, drop } from 'portcullis/sdk';
import { dnsblHit } from './lib/dnsbl.js';
import { scored, scoreMode, scoreOption } from './lib/score.js';
import { dnsblSignOption, heloUnqualified } from './lib/smtpevt.js';

export default defineRule({
  name: 'subject-spam',
  description: 'Drops or tags spam subjects when the transaction already looks wrong',
  priority: 135,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      patterns: {
        type: 'array', items: { type: 'string' },
        default: ['\\bviagra\\b', '\\bcialis\\b', 'casino', 'lottery', 'you (have )?won', '\\bloan\\b', 'replica watch'],
        description: 'Case-insensitive regular expressions.',
      },
      learn: { type: 'boolean', default: false, description: 'Remember subjects that got a client blacklisted.' },
      blacklistMinutes: { type: 'integer', minimum: 1, maximum: 30 * 24 * 60, default: 60 },
      dnsbl: dnsblSignOption,
      score: scoreOption('a spam subject, whatever else the transaction looks like (symbol subject-spam)'),
    },
  },
  needs: (o) => (o.dnsbl && !scoreMode(o) ? [`dnsbl:${o.dnsbl}`] : []),
  phases: {
    message: (ev, ctx) => {
      const invalidRcpt = ev.envelope.rcptTo.some((r) => r.mailbox === 'missing');
      const listed = dnsblHit(ev, ctx.options.dnsbl);
      if (!invalidRcpt && !listed && !heloUnqualified(ev.session.helo) && !scoreMode(ctx.options)) return;
      const subject = ev.message.headers.find(([n]) => n.toLowerCase() === 'subject')?.[1] ?? '';
      if (!subject) return; // nothing to scan (and the store refuses empty values)
      const matched = ctx.options.patterns.some((p) => new RegExp(p, 'i').test(subject)) || ctx.store.listHas('spam-subjects', subject);
      if (!matched || scored(ctx, 'subject-spam')) return;
      if (!invalidRcpt && !listed) {
        ctx.addHeader('X-Blocked', 'subject-spam');
        return;
      }
      ctx.blacklist(ctx.options.blacklistMinutes * 60, invalidRcpt ? 'spam subject to an invalid recipient' : `spam subject from a client listed in ${listed}`);
      if (ctx.options.learn) ctx.store.listAdd('spam-subjects', subject);
      return drop('Message refused', { reason: 'subject-spam' });
    },
  },
});
