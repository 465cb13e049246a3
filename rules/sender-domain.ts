/**
 * sender-domain — the MAIL FROM domain must be able to receive mail (an MX record, or
 * an A/AAAA record as the implicit MX, RFC 5321 §5.1): a domain that cannot take the
 * bounce is not a real sender. Obtuse smtpd's MX check semantics: a DNS failure
 * (timeout, SERVFAIL) counts as valid, so a broken resolver never refuses mail; the
 * null sender `<>` and our own domains are not checked. A null MX (RFC 7505) is refused.
 * `code: 450` (Postfix's unknown_address_reject_code) answers `450 4.1.8` instead, so a
 * sender whose DNS is only briefly broken retries.
 *
 * smtpf 2.0's other sender tests, off by default: `nsNxdomain` (mail-ns-nxdomain) refuses
 * a domain delegated to a name server under a domain that does not exist, `ipInNs`
 * (mail-ip-in-ns) one whose name server has an IP address in its name
 * (`ns-192-0-2-7.dyn.example`): traits of fast-flux and throw-away sender domains. They
 * read the domain's NS records (`needs: ['ns']`); a failed lookup counts as valid here too.
 */
import { defineRule, reject, STATUS, tempfail, type MailEvent, type Verdict } from 'portcullis/sdk';
import { scored, scoreOption } from './lib/score.js';

/** A problem with the sender domain: its score symbol, the reply's words and the log's. */
type Check = { symbol: string; why: string; log: string } | null;

/** What the sender domain's name servers say against it, with the checks the options turn on. */
function nsProblem(ev: MailEvent, o: { ipInNs: boolean; nsNxdomain: boolean }): Check {
  const ns = ev.dns.ns;
  if (ns?.status !== 'found') return null;
  const lost = o.nsNxdomain ? ns.hosts.find((h) => h.domainStatus === 'nxdomain') : undefined;
  if (lost) {
    const why = `name server ${lost.name} of ${ns.domain} is under a domain that does not exist`;
    return { symbol: 'sender-ns-nxdomain', why, log: `${why} (${lost.domain})` };
  }
  const withIp = o.ipInNs ? ns.hosts.find((h) => h.ipInName) : undefined;
  if (withIp) {
    const why = `name server ${withIp.name} of ${ns.domain} has an IP address in its name`;
    return { symbol: 'sender-ip-in-ns', why, log: `${why} (${withIp.ipInName})` };
  }
  return null;
}

export default defineRule({
  name: 'sender-domain',
  description: 'Refuses MAIL FROM domains that have no MX and no A/AAAA record (optionally: suspicious name servers)',
  priority: 62,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      code: { enum: [450, 550], default: 550, description: '550 refuses for good; 450 (Postfix unknown_address_reject_code) lets the sender retry.' },
      nsNxdomain: { type: 'boolean', default: false, description: "smtpf's mail-ns-nxdomain: refuse a domain with a name server under a domain that does not exist." },
      ipInNs: { type: 'boolean', default: false, description: "smtpf's mail-ip-in-ns: refuse a domain with a name server that has an IP address in its name." },
      score: scoreOption('a sender domain with no MX and no address (symbol sender-domain-unknown), or with a suspicious name server (sender-ns-nxdomain, sender-ip-in-ns)'),
    },
  },
  needs: (o) => (o.nsNxdomain || o.ipInNs ? ['mx', 'ns'] : ['mx']),
  phases: {
    mail: (ev, ctx) => {
      const { domain, local } = ev.mail;
      if (!domain || local) return;
      // No MX and no address; a failure (or DNS off) counts as valid.
      const problem: Check = ev.dns.mx?.status === 'none' ? { symbol: 'sender-domain-unknown', why: `Domain ${domain} not found`, log: `sender domain ${domain} has no MX or address record` } : nsProblem(ev, ctx.options);
      if (!problem || scored(ctx, problem.symbol)) return;
      ctx.log(`${problem.log}: refused with ${ctx.options.code}`);
      const text = `Sender address rejected: ${problem.why}`;
      const o = { status: STATUS.badSenderDomain, reason: problem.symbol === 'sender-domain-unknown' ? 'sender-domain' : problem.symbol };
      return (ctx.options.code === 450 ? tempfail(450, text, o) : reject(550, text, o)) satisfies Verdict;
    },
  },
});
