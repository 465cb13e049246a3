/**
 * spamhaus-zen — the client IP in Spamhaus ZEN, read the way SmtpEvt's DNSBL CACHE does.
 *
 * - SBL (127.0.0.2, .3, .9): refused at RCPT, `554 5.7.1`.
 * - XBL (127.0.0.4–.7): refused when something else already says spam bot (suspicious
 *   HELO, no reverse DNS, an invalid local recipient); otherwise the message gets
 *   `X-Blocked: zen.spamhaus.org (XBL …)`, the header Mercury's own DNSBL tagging uses.
 * - PBL (127.0.0.10, .11): `X-PBL` — unless the client authenticated or came in on a
 *   submission port, where end-user addresses are expected. The other SmtpEvt rules
 *   count any ZEN listing as a spam-bot sign, so they get stricter too.
 * With `score` above 0 an SBL or XBL listing adds that many points (zen-sbl, zen-xbl)
 * instead, and the config's `scores` thresholds decide.
 * Answers 127.255.255.x (the query was refused) and lookup failures count as not listed;
 * the host logs them. Lookups are cached in the store (dns.cacheTtlSeconds, 30 minutes).
 */
import { defineRule, reject } from 'portcullis/sdk';
import { zenListing, zoneOption } from './lib/dnsbl.js';
import { scored, scoreMode, scoreOption } from './lib/score.js';
import { noPtrIsSignOption, spamBotSign } from './lib/smtpevt.js';

/** The refusal, worded as Postfix's reject_rbl_client words it. */
const blocked = (ip: string, zone: string, list: 'SBL' | 'XBL') =>
  reject(554, `Service unavailable; client [${ip}] blocked using ${zone} (${list})`, { reason: list.toLowerCase() });

export default defineRule({
  name: 'spamhaus-zen',
  description: 'Refuses SBL, refuses or tags XBL, tags PBL listings of the client (Spamhaus ZEN)',
  priority: 60,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      zone: zoneOption('zen.spamhaus.org', 'The ZEN zone (a Spamhaus DQS zone such as <key>.zen.dq.spamhaus.net works too).'),
      noPtrIsSign: noPtrIsSignOption,
      score: scoreOption('an SBL or XBL listing (symbols zen-sbl, zen-xbl)'),
    },
  },
  needs: (o) => (o.zone ? [`dnsbl:${o.zone}`] : []),
  phases: {
    rcpt: (ev, ctx) => {
      const zen = zenListing(ev.dns.dnsbl[ctx.options.zone]);
      if (!zen) return;
      const ip = ev.session.client.ip;
      // Score mode: the listing is one indicator among the others (a symbol counts once per transaction).
      if ((zen.sbl || zen.xbl) && scored(ctx, zen.sbl ? 'zen-sbl' : 'zen-xbl')) return;
      if (zen.sbl) {
        ctx.log(`${ip} is in the SBL (${zen.codes.join(', ')}): refused`);
        return blocked(ip, ctx.options.zone, 'SBL');
      }
      const sign = zen.xbl ? spamBotSign(ev.session, ctx.options.noPtrIsSign) : null;
      if (sign) {
        ctx.log(`${ip} is in the XBL and ${sign}: refused`);
        return blocked(ip, ctx.options.zone, 'XBL');
      }
    },
    data: (ev, ctx) => {
      const zen = zenListing(ev.dns.dnsbl[ctx.options.zone]);
      if (!zen) return;
      const ip = ev.session.client.ip;
      if (zen.xbl && !scoreMode(ctx.options)) {
        if (ev.envelope.failedRcpts > 0 || ev.envelope.rcptTo.some((r) => r.mailbox === 'missing')) {
          ctx.log(`${ip} is in the XBL and sent to invalid recipients: refused`);
          return blocked(ip, ctx.options.zone, 'XBL');
        }
        ctx.addHeader('X-Blocked', `${ctx.options.zone} (XBL ${zen.codes.join(', ')})`);
      }
      if (zen.pbl && !ev.session.local.submission) ctx.addHeader('X-PBL', `${ip} listed in the Spamhaus PBL`);
    },
  },
});
