/**
 * access — the access map of Sendmail, Postfix and smtpf: lines an admin writes, each a
 * key and an action, checked first (priority -10) so a whitelist entry is honored before
 * any block list (the MailEnable/ORF ask: "whitelists are honored first").
 *
 *   Connect:192.0.2.7                 OK          the client: an address,
 *   Connect:198.51.100.0/24           REJECT      a network,
 *   Connect:dialup.example.net        REJECT Dynamic addresses do not send mail here
 *                                                 or its PTR name's domain (and subdomains)
 *   From:dave@bobo.example            OK          the sender: an address,
 *   From:spammer.example              DISCARD     a domain (and subdomains), or
 *   From:<>                                       the null sender
 *   To:abuse@example.org              OK          a recipient, the same way
 *   Connect:192.0.2.0/24 From:partner.example OK  smtpf's combo tags: both keys must match
 *
 * Actions: OK accepts (at connect the whole connection, at MAIL the transaction, at RCPT
 * that recipient: the rules after it are skipped), REJECT [text] (554 at connect, 550
 * 5.7.1 later), TEMPFAIL [text] (451 4.7.1; 421 at connect), DISCARD (accepted and
 * dropped), SPF-PASS (accepts as OK does, but only when the sender's domain
 * authorises the client by SPF, RFC 7208; otherwise the line does nothing):
 *
 *   From:partner.example              SPF-PASS    a partner's mail from its own servers, even
 *                                                 from an address a block list names
 *
 * Each line is checked at the first phase that knows all its keys (SPF-PASS lines at MAIL
 * at the earliest: SPF needs the sender); at one phase an OK beats every deny, and
 * otherwise the first deny in the list wins. The rule asks the host for SPF only when
 * the map has an SPF-PASS line.
 *
 * Ships off; with no entries it would do nothing anyway.
 */
import { accept, defineRule, discard, reject, STATUS, tempfail, type DnsFacts, type Envelope, type Need, type SessionInfo, type Verdict } from 'portcullis/sdk';

type Tag = 'Connect' | 'From' | 'To';
interface Entry {
  keys: [Tag, string][];
  action: 'OK' | 'REJECT' | 'TEMPFAIL' | 'DISCARD' | 'SPF-PASS';
  text: string;
  line: string;
}

const ACTIONS = ['OK', 'REJECT', 'TEMPFAIL', 'DISCARD', 'SPF-PASS'] as const;

/** One line of the map, or an error saying what is wrong with it. */
function parseEntry(line: string): Entry | string {
  const words = line.trim().split(/\s+/);
  const keys: [Tag, string][] = [];
  while (words.length && /^(Connect|From|To):./i.test(words[0]!)) {
    const w = words.shift()!;
    const colon = w.indexOf(':');
    const tag = (w[0]!.toUpperCase() + w.slice(1, colon).toLowerCase()) as Tag;
    keys.push([tag, w.slice(colon + 1).toLowerCase()]);
  }
  const action = (words.shift() ?? '').toUpperCase();
  if (!keys.length) return `"${line}": no Connect:, From: or To: key`;
  if (!(ACTIONS as readonly string[]).includes(action)) return `"${line}": the action must be one of ${ACTIONS.join(', ')}`;
  return { keys, action: action as Entry['action'], text: words.join(' '), line };
}

/** An IPv4 address in a CIDR network, or one of Sendmail's partial addresses (`192.0.2`); IPv6 as a whole address. */
function inNetwork(ip: string, key: string): boolean {
  if (ip.includes(':') || key.includes(':')) return ip.toLowerCase() === key;
  const [net = '', bits] = key.split('/');
  if (bits === undefined) return ip === net || ip.startsWith(net + '.');
  const n = (a: string) => a.split('.').reduce((acc, o) => (acc << 8) + Number(o), 0) >>> 0;
  const mask = Number(bits) === 0 ? 0 : (~0 << (32 - Number(bits))) >>> 0;
  return /^\d+(\.\d+){3}$/.test(net) && ((n(ip) & mask) >>> 0) === ((n(net) & mask) >>> 0);
}

/** An address (or `<>`) against an address, a domain and its subdomains. */
function addressMatches(address: string, key: string): boolean {
  const a = address.toLowerCase();
  if (key === '<>') return a === '';
  if (key.includes('@')) return a === key;
  const domain = a.slice(a.lastIndexOf('@') + 1);
  return a.includes('@') && (domain === key || domain.endsWith('.' + key));
}

function matches(e: Entry, s: SessionInfo, from: string | null, to: string | null): boolean {
  return e.keys.every(([tag, key]) => {
    if (tag === 'Connect') {
      const ptr = s.client.ptr?.toLowerCase();
      return /^[\d./]+$|:/.test(key) ? inNetwork(s.client.ip, key) : !!ptr && (ptr === key || ptr.endsWith('.' + key));
    }
    const address = tag === 'From' ? from : to;
    return address !== null && addressMatches(address, key);
  });
}

/**
 * The phase that first knows every key of the entry: a To: key waits for RCPT, a From:
 * key for MAIL, and so does SPF-PASS (the SPF check needs the sender).
 */
const dueAt = (e: Entry): Tag => (e.keys.some(([t]) => t === 'To') ? 'To' : e.keys.some(([t]) => t === 'From') || e.action === 'SPF-PASS' ? 'From' : 'Connect');

/** The verdict of the entries due `now` that match, OK (and SPF-PASS with an SPF pass) first. */
function decide(entries: Entry[], now: Tag, s: SessionInfo, from: string | null, to: string | null, at: 'connect' | 'later', dns?: DnsFacts): Verdict | undefined {
  const hits = entries.filter((e) => dueAt(e) === now && matches(e, s, from, to));
  if (hits.some((e) => e.action === 'OK')) return accept({ reason: 'access-ok' });
  if (dns?.spf?.result === 'pass' && hits.some((e) => e.action === 'SPF-PASS')) return accept({ reason: 'access-spf-pass' });
  const deny = hits.find((e) => e.action !== 'SPF-PASS');
  if (!deny) return undefined;
  if (deny.action === 'DISCARD') return discard({ reason: 'access-discard' });
  if (deny.action === 'TEMPFAIL') return tempfail(451, deny.text || 'Access temporarily denied', { status: STATUS.notAuthorized, reason: 'access-tempfail' });
  return reject(at === 'connect' ? 554 : 550, deny.text || 'Access denied', { status: STATUS.notAuthorized, reason: 'access-reject' });
}

let parsed: { from: readonly string[]; entries: Entry[] } | null = null;
/** The map, parsed once per options (they are frozen per rule load). */
function entriesOf(lines: readonly string[]): Entry[] {
  if (parsed?.from !== lines) parsed = { from: lines, entries: lines.map(parseEntry).filter((e): e is Entry => typeof e !== 'string') };
  return parsed.entries;
}

const mailFrom = (env: Envelope) => env.mailFrom?.address ?? null;

export default defineRule({
  name: 'access',
  description: 'The access map: Connect:, From:, To: entries (and combos) with OK, REJECT, TEMPFAIL, DISCARD, SPF-PASS',
  priority: -10,
  enabled: false,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      entries: {
        type: 'array', items: { type: 'string', pattern: '^\\s*((Connect|From|To):\\S+\\s+)+(OK|REJECT|TEMPFAIL|DISCARD|SPF-PASS)\\b' }, default: [],
        description: 'Access map lines: KEY [KEY] ACTION [TEXT], KEY one of Connect:ip|network|ptr-domain, From:address|domain|<>, To:address|domain.',
      },
    },
  },
  // SPF (RFC 7208) is looked up at MAIL FROM only for a map that has an SPF-PASS line.
  needs: (o) => (entriesOf(o.entries).some((e) => e.action === 'SPF-PASS') ? ['spf'] : []) satisfies Need[],
  phases: {
    connect: (ev, ctx) => decide(entriesOf(ctx.options.entries), 'Connect', ev.session, null, null, 'connect'),
    mail: (ev, ctx) => decide(entriesOf(ctx.options.entries), 'From', ev.session, ev.mail.address, null, 'later', ev.dns),
    rcpt: (ev, ctx) => decide(entriesOf(ctx.options.entries), 'To', ev.session, mailFrom(ev.envelope), ev.rcpt.address, 'later', ev.dns),
  },
});
