/**
 * uri-check — the links in a message (smtpf 2.0's URI tests, SpamAssassin's URIBL
 * checks): refused at the end of data, `554 5.7.1`, when a link's host
 *
 * - has its registered domain (or, for a link by IP address, the address) in one of
 *   `lists` (SURBL, URIBL, Spamhaus DBL, or an IP list with `on: "ip"`);
 * - is an IP address (`ipLiteral`, smtpf's uri-require-domain);
 * - carries an IP address in its name, like `host-192-0-2-7.dyn.example` (`ipInName`);
 * - does not exist (`unknownHost`, smtpf's uri-reject-unknown);
 * - has a name server with an IP address in its name (`ipInNs`) or under a domain that
 *   does not exist (`nsNxdomain`): traits of fast-flux spam sites;
 * - has an address without reverse DNS (`requirePtr`, smtpf's uri-require-ptr) or whose
 *   reverse name carries the address (`ipInPtr`, uri-ip-in-ptr): a home broadband
 *   machine serving the site.
 *
 * The refusal comes in the DATA reply, never as accept-then-delete (a sender whose mail
 * is refused learns it). With `action: "tag"` the message carries `X-URI-Check: <why>`.
 * A lookup that failed (timeout, SERVFAIL) and no other finding → `451 4.4.3` by default
 * (`onDnsError: "tempfail"`: the sender retries; smtpf's uri-reject-on-timeout), or the
 * message passes with `"ignore"` (logged). Off: a list or heuristic that refuses
 * ordinary mail must be chosen by the admin. Without `dns.servers` only `ipLiteral` and
 * `ipInName` can act. At most 50 distinct link hosts are read (`URI_MAX_HOSTS`).
 */
import { defineRule, reject, STATUS, tempfail, type MessageEvent, type OptionsOf, type Need, type UriHost } from 'portcullis/sdk';
import { codeMatches } from './lib/dnsbl.js';
import { scored, scoreMode, scoreOption } from './lib/score.js';

const OPTIONS = {
  type: 'object',
  additionalProperties: false,
  properties: {
    lists: {
      type: 'array',
      description: 'URI block lists. A list that refuses a query answers a code of its own (URIBL 127.0.0.1, Spamhaus 127.255.255.x), so the defaults name the codes that mean listed.',
      default: [
        { zone: 'multi.surbl.org', on: 'domain', answers: ['127.0.0.[2..255]'] },
        { zone: 'multi.uribl.com', on: 'domain', answers: ['127.0.0.[2..14]'] },
        { zone: 'dbl.spamhaus.org', on: 'domain', answers: ['127.0.1.[2..99]'] },
      ],
      items: {
        type: 'object', additionalProperties: false, required: ['zone'],
        properties: {
          zone: { type: 'string', pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)+$' },
          on: { enum: ['domain', 'ip'], default: 'domain', description: "domain: each link host's registered domain; ip: each link by IP address, reversed as in a DNSBL." },
          answers: { type: 'array', items: { type: 'string', pattern: '^(\\d+|\\[\\d+\\.\\.\\d+\\])(\\.(\\d+|\\[\\d+\\.\\.\\d+\\])){3}$' }, description: 'A records that count as listed (postscreen syntax, 127.0.0.[2..255]); none given: any.' },
        },
      },
    },
    ipLiteral: { type: 'boolean', default: false, description: "smtpf's uri-require-domain: a link by IP address (http://192.0.2.7/) is refused." },
    ipInName: { type: 'boolean', default: false, description: "smtpf's uri-ip-in-name: a link host with an IP address in its name is refused." },
    unknownHost: { type: 'boolean', default: false, description: "smtpf's uri-reject-unknown: a link host that does not exist (no A or AAAA) is refused." },
    ipInNs: { type: 'boolean', default: false, description: "smtpf's uri-ip-in-ns: a link whose domain has a name server with an IP address in its name is refused." },
    nsNxdomain: { type: 'boolean', default: false, description: "smtpf's uri-ns-nxdomain: a link whose domain has a name server under a non-existent domain is refused." },
    requirePtr: { type: 'boolean', default: false, description: "smtpf's uri-require-ptr: a link host whose address has no reverse DNS is refused." },
    ipInPtr: { type: 'boolean', default: false, description: "smtpf's uri-ip-in-ptr: a link host whose address's reverse DNS name has an IP address in it is refused." },
    onDnsError: { enum: ['tempfail', 'ignore'], default: 'tempfail', description: 'A lookup that failed, with nothing else found: 451 4.4.3 (the sender retries), or pass (logged).' },
    action: { enum: ['reject', 'tag'], default: 'reject', description: 'reject: 554 5.7.1; tag: an X-URI-Check header.' },
    score: scoreOption('each kind of finding (symbols uribl, uri-ip-literal, uri-ip-in-name, uri-unknown-host, uri-ip-in-ns, uri-ns-nxdomain, uri-no-ptr, uri-ip-in-ptr)'),
  },
} as const;

type Options = OptionsOf<typeof OPTIONS>;

/** One thing wrong with a link: its score symbol (and verdict reason), and why, for the reply and the log. */
interface Finding {
  symbol: string;
  why: string;
}

/** What a link host's findings are, and whether a lookup about it failed (with nothing found, the onDnsError policy applies). */
interface Result {
  findings: Finding[];
  failed: boolean;
}

/** The lists that list the host's registered domain (or, for `on: "ip"`, its address). */
function listings(h: UriHost, ev: MessageEvent, o: Options, r: Result): void {
  for (const l of o.lists) {
    const subject = l.on === 'ip' ? h.ip : h.domain;
    const a = subject ? ev.dns.uribl?.[l.zone]?.[subject] : undefined;
    if (a?.status === 'error') r.failed = true;
    if (a?.status === 'listed' && (!l.answers || a.codes.some((c) => l.answers!.some((p) => codeMatches(c, p))))) r.findings.push({ symbol: 'uribl', why: `it links to ${subject}, listed in ${l.zone}` });
  }
}

/** What DNS says of the host: does it exist, its reverse name, its domain's name servers. */
function resolution(h: UriHost, ev: MessageEvent, o: Options, r: Result): void {
  const dns = ev.dns.uriHosts?.[h.host];
  if (!dns) return;
  if (o.unknownHost && dns.address === 'none') r.findings.push({ symbol: 'uri-unknown-host', why: `link host ${h.host} does not exist` });
  if ((o.unknownHost || o.requirePtr || o.ipInPtr) && dns.address === 'error') r.failed = true;
  const ptr = dns.ptr;
  if (ptr && (o.requirePtr || o.ipInPtr)) {
    const what = h.ip ? `link address ${h.ip}` : `link host ${h.host} (${ptr.address})`;
    if (o.requirePtr && ptr.status === 'none') r.findings.push({ symbol: 'uri-no-ptr', why: `${what} has no reverse DNS` });
    if (o.ipInPtr && ptr.ipInName) r.findings.push({ symbol: 'uri-ip-in-ptr', why: `${what} has reverse DNS name ${ptr.names[0]} with an IP address in it` });
    if (ptr.status === 'error') r.failed = true;
  }
  const ns = dns.ns;
  if (ns && (o.ipInNs || o.nsNxdomain)) {
    const withIp = o.ipInNs ? ns.hosts.find((n) => n.ipInName) : undefined;
    const lost = o.nsNxdomain ? ns.hosts.find((n) => n.domainStatus === 'nxdomain') : undefined;
    if (withIp) r.findings.push({ symbol: 'uri-ip-in-ns', why: `name server ${withIp.name} of link domain ${ns.domain} has an IP address in its name` });
    if (lost) r.findings.push({ symbol: 'uri-ns-nxdomain', why: `name server ${lost.name} of link domain ${ns.domain} is under a domain that does not exist` });
    if (ns.status === 'error' || (o.nsNxdomain && ns.hosts.some((n) => n.domainStatus === 'error'))) r.failed = true;
  }
}

/** Everything wrong with one link host. */
function check(h: UriHost, ev: MessageEvent, o: Options): Result {
  const r: Result = { findings: [], failed: false };
  listings(h, ev, o, r);
  if (o.ipLiteral && h.ip) r.findings.push({ symbol: 'uri-ip-literal', why: `it links to an IP address (${h.ip})` });
  if (o.ipInName && h.ipInName) r.findings.push({ symbol: 'uri-ip-in-name', why: `link host ${h.host} has an IP address in its name` });
  resolution(h, ev, o, r);
  return r;
}

export default defineRule({
  name: 'uri-check',
  description: 'Refuses messages linking to listed, IP-named or fast-flux hosts (URIBL, SURBL, DBL)',
  priority: 126,
  enabled: false,
  skip: { authenticated: true },
  options: OPTIONS,
  needs: (o) => [
    'uris',
    ...o.lists.map((l): Need => (l.on === 'ip' ? `uribl-ip:${l.zone}` : `uribl:${l.zone}`)),
    ...(o.unknownHost || o.ipInNs || o.nsNxdomain ? (['uri-dns'] as const) : []),
    ...(o.requirePtr || o.ipInPtr ? (['uri-ptr'] as const) : []),
  ],
  phases: {
    message: (ev, ctx) => {
      const hosts = ev.message.uris?.hosts ?? [];
      const results = hosts.map((h) => check(h, ev, ctx.options));
      const findings = results.flatMap((r) => r.findings);
      if (findings.length) {
        if (scoreMode(ctx.options)) {
          for (const symbol of new Set(findings.map((f) => f.symbol))) scored(ctx, symbol);
          return;
        }
        const first = findings[0]!;
        const more = findings.length > 3 ? ` (and ${findings.length - 3} more)` : '';
        ctx.log(`${findings.slice(0, 3).map((f) => f.why).join('; ')}${more}: ${ctx.options.action === 'reject' ? 'refused' : 'tagged'}`);
        if (ctx.options.action === 'tag') return void ctx.addHeader('X-URI-Check', first.why);
        return reject(554, `Message refused: ${first.why}`, { reason: first.symbol });
      }
      if (!results.some((r) => r.failed)) return;
      if (ctx.options.onDnsError === 'ignore') return void ctx.log('a DNS lookup about its links failed: passed (onDnsError ignore)');
      ctx.log('a DNS lookup about its links failed: tempfailed (onDnsError tempfail)');
      return tempfail(451, 'Could not check the links in the message now; try again later', { status: STATUS.directoryFailure, reason: 'uri-dns-error' });
    },
  },
});
