/**
 * spamassassin — SpamAssassin's verdict, through spamd, at the end of the message:
 * a score at or over `scoreReject` is refused `550 5.7.1` with the score (during the
 * session, never accept-then-bounce); a lower one is accepted with `X-Spam-Status` and
 * `X-Spam-Score`, and spam under `scoreReject` (at or over spamd's own threshold) also
 * gets `X-Spam-Flag: YES` and its Subject tagged with `subjectTag`.
 *
 * smtpf 2.0's improved spamd support (seed 003: spamd-score-reject, spamd-subject-tag):
 * mail that arrives with `X-Spam-Flag: YES`, or an `X-Spam-Status` score over
 * `scoreReject`, was already judged spam by the sender's own filter, and is refused; the
 * other X-Spam-* fields it carries are removed, so only ours reach the mailbox.
 *
 * spamd down, slow (config `spamd.timeoutMs`) or not configured: the rule fails (it
 * throws), and its fail policy answers (tempfail by default: `451 4.3.0`), never a
 * silent pass. Ships off: it needs a spamd (config `spamd`).
 */
import { defineRule, reject, STATUS, type MessageEvent } from 'portcullis/sdk';

const fmt = (n: number): string => n.toFixed(1);

/** The score an incoming `X-Spam-Status` states (`Yes, score=12.3 required=5.0 …`), or null. */
function statedScore(value: string): number | null {
  const m = /\bscore=(-?\d+(?:\.\d+)?)/i.exec(value);
  return m ? Number(m[1]) : null;
}

/**
 * `text` as a header value: as is when it is printable ASCII, else one RFC 2047 §4.2
 * "Q" encoded-word (the event's Subject is decoded; 8-bit header bytes need SMTPUTF8).
 */
function encodedWord(text: string): string {
  if (/^[ -~]*$/.test(text)) return text;
  return `=?UTF-8?Q?${encodeURIComponent(text).replace(/%([0-9A-F]{2})/g, '=$1').replace(/_/g, '=5F')}?=`;
}

/** Why the message was refused already by its sender's filter, or null. */
function alreadySpam(ev: MessageEvent, scoreReject: number): string | null {
  for (const [name, value] of ev.message.headers) {
    if (/^x-spam-flag$/i.test(name) && /^\s*yes\b/i.test(value)) return 'it came marked X-Spam-Flag: YES';
    const stated = /^x-spam-status$/i.test(name) ? statedScore(value) : null;
    if (stated !== null && stated > scoreReject) return `it came with an X-Spam-Status score of ${fmt(stated)}, over ${fmt(scoreReject)}`;
  }
  return null;
}

export default defineRule({
  name: 'spamassassin',
  description: 'SpamAssassin through spamd: refuses a score at or over scoreReject, tags spam under it, adds X-Spam-Status',
  priority: 80,
  enabled: false,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      scoreReject: { type: 'number', default: 10, description: 'Refuse (550 5.7.1) a message that scores at least this (smtpf spamd-score-reject), or arrives stating a score over it.' },
      subjectTag: { type: 'string', maxLength: 40, default: '[SPAM]', description: 'Put in front of the Subject of spam accepted under scoreReject (smtpf spamd-subject-tag); empty: the Subject is left alone.' },
    },
  },
  needs: ['spamd'],
  phases: {
    message: (ev, ctx) => {
      const { scoreReject, subjectTag } = ctx.options;
      const already = alreadySpam(ev, scoreReject);
      if (already) {
        ctx.log(`refused: ${already}`);
        return reject(550, 'Message refused: its sender already marked it as spam', { reason: 'marked-spam', status: STATUS.notAuthorized });
      }
      for (const [name] of ev.message.headers) if (/^x-spam-/i.test(name)) ctx.removeHeader(name);
      const sa = ev.message.spamd;
      // No verdict is never "ham": fail, and the fail policy answers (451 by default).
      if (!sa || 'error' in sa) throw new Error(sa ? sa.error : 'no spamd verdict (the host did not fetch it)');
      const tests = sa.symbols.join(',') || 'none';
      ctx.log(`spamd score ${fmt(sa.score)}/${fmt(sa.threshold)}: ${tests}`);
      if (sa.score >= scoreReject) {
        return reject(550, `Message refused as spam: SpamAssassin score ${fmt(sa.score)} is at or over ${fmt(scoreReject)}`, { reason: 'spamassassin', status: STATUS.notAuthorized });
      }
      ctx.addHeader('X-Spam-Status', `${sa.isSpam ? 'Yes' : 'No'}, score=${fmt(sa.score)} required=${fmt(sa.threshold)} tests=${tests}`);
      ctx.addHeader('X-Spam-Score', fmt(sa.score));
      if (!sa.isSpam) return;
      ctx.addHeader('X-Spam-Flag', 'YES');
      const subject = ev.message.headers.find(([n]) => /^subject$/i.test(n));
      if (subjectTag && !subject?.[1].startsWith(subjectTag)) {
        ctx.removeHeader('Subject');
        ctx.addHeader('Subject', encodedWord(subject ? `${subjectTag} ${subject[1]}` : subjectTag));
      }
    },
  },
});
