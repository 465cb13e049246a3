/**
 * subject-filter — refuse messages whose Subject matches a pattern, at end of data.
 *
 * The client gets the refusal while it is still connected (no bounce, no silent loss):
 * the MailEnable forum's wish, and Obtuse smtpd's regex content filter.
 * Default action: `550 5.7.1 Message refused: subject looks like spam`.
 */
import { defineRule, next, reject, REJECT_CODES } from 'portcullis/sdk';


export default defineRule({
  name: 'subject-filter',
  description: 'Refuses messages whose Subject matches one of the patterns',
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      patterns: { type: 'array', items: { type: 'string' }, default: ['\\bviagra\\b', 'you have won', '^\\s*\\$\\$\\$'], description: 'Case-insensitive regular expressions, tried against the decoded Subject.' },
      code: { enum: REJECT_CODES, default: 550, description: 'The refusal code (a 5xx the SDK allows).' },
      text: { type: 'string', default: 'Message refused: subject looks like spam' },
    },
  },
  phases: {
    message: (ev, ctx) => {
      const subject = ev.message.headers.find(([name]) => name.toLowerCase() === 'subject')?.[1] ?? '';
      const hit = ctx.options.patterns.find((p) => new RegExp(p, 'i').test(subject));
      if (!hit) return next();
      ctx.log(`subject ${JSON.stringify(subject)} matches /${hit}/i`);
      return reject(ctx.options.code, ctx.options.text, { reason: 'subject-pattern' });
    },
  },
});
