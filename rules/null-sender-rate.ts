/**
 * null-sender-rate — a cap on bounces (DSNs, MDNs: `MAIL FROM:<>`) per recipient and per
 * recipient domain within a window.
 *
 * smtpf 2.0's null sender rate control (`Null-Rate-To:`): spammers forge senders in real
 * domains, and the mail systems that refuse their spam send the bounces (backscatter) to
 * the forged address. smtpf monitors the rate of messages from the null sender arriving
 * and rejects them above a threshold, per recipient and per domain. Off by default.
 *
 * Each null-sender message received counts once for each of its recipients and each of
 * their domains (counted at end of data, so refused attempts never count); a RCPT that
 * would go over `maxPerRecipient` or `maxPerDomain` within `windowMinutes` is refused
 * `550 5.7.1`, as smtpf rejects: a sender cannot bounce a refused bounce (RFC 5321 §6.1,
 * §4.5.5), so backscatter is dropped at its source instead of retrying for days under a
 * 4xx. `code: 450` answers `450 4.7.1` where a bounce wave may be real (a mailing-list
 * outage). 0 turns a limit off. The seed names no numbers: the defaults are ours.
 */
import { defineRule, reject, STATUS, tempfail } from 'portcullis/sdk';

export default defineRule({
  name: 'null-sender-rate',
  description: 'Refuses bounces (null sender) over a rate per recipient and per recipient domain',
  priority: 51,
  enabled: false,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      maxPerRecipient: { type: 'integer', minimum: 0, default: 10, description: 'Null-sender messages one recipient may get within windowMinutes (0 = no limit).' },
      maxPerDomain: { type: 'integer', minimum: 0, default: 100, description: 'Null-sender messages one recipient domain may get within windowMinutes (0 = no limit).' },
      windowMinutes: { type: 'integer', minimum: 1, maximum: 7 * 24 * 60, default: 60 },
      code: { enum: [450, 550], default: 550, description: "550 refuses for good (smtpf's reject: the bounce is dropped); 450 has the sender retry." },
    },
  },
  phases: {
    rcpt: (ev, ctx) => {
      if (ev.envelope.mailFrom?.address !== '') return;
      const o = ctx.options;
      const window = o.windowMinutes * 60;
      const rcpt = ev.rcpt.address.toLowerCase();
      const over =
        o.maxPerRecipient > 0 && ctx.store.count(`null-sender-rate:rcpt:${rcpt}`, window) >= o.maxPerRecipient ? rcpt
        : o.maxPerDomain > 0 && ev.rcpt.domain && ctx.store.count(`null-sender-rate:domain:${ev.rcpt.domain}`, window) >= o.maxPerDomain ? ev.rcpt.domain
        : null;
      if (over === null) return;
      ctx.log(`null-sender messages to ${over} reached the limit of ${over === rcpt ? o.maxPerRecipient : o.maxPerDomain} in ${o.windowMinutes} min`);
      const text = `Too many bounces (null sender) for ${over}`;
      const meta = { status: STATUS.notAuthorized, reason: 'null-sender-rate' };
      return o.code === 450 ? tempfail(450, text, meta) : reject(550, text, meta);
    },
    message: (ev, ctx) => {
      if (ev.envelope.mailFrom?.address !== '') return;
      const window = ctx.options.windowMinutes * 60;
      for (const r of ev.envelope.rcptTo) ctx.store.hit(`null-sender-rate:rcpt:${r.address.toLowerCase()}`, window);
      for (const d of new Set(ev.envelope.rcptTo.map((r) => r.domain).filter(Boolean))) ctx.store.hit(`null-sender-rate:domain:${d}`, window);
    },
  },
});
