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
 * otherwise the first deny in the list wins. The rule asks the host for SPF (one lookup
 * per client and sender domain at MAIL FROM, cached) only when its map may have an
 * SPF-PASS line: its options have one, or it reads a store list (`storeList: null` and
 * no SPF-PASS line in the options: no SPF lookups).
 *
 * The lines come from the options (`entries`, or a plain file through `optionFiles`) and
 * then from the store's list `storeList` (`portcullis access add`), in that order; the
 * line grammar is the SDK's (`parseAccessLine`), which the CLI checks lines with. The
 * store list is read once per session, at its first phase (a store call crosses threads):
 * its parsed lines stay in this module under a fingerprint the session notes, so its
 * later phases find them without asking again.
 *
 * Ships off; with no entries it would do nothing anyway.
 */
import {
  accept, ACCESS_LINE_PATTERN, ACCESS_STORE_LIST, defineRule, discard, parseAccessLine, reject, RULE_LIMITS, STATUS, tempfail,
  type AccessEntry as Entry, type AccessTag as Tag, type DnsFacts, type Envelope, type Need, type RuleContext, type SessionInfo, type Verdict,
} from 'portcullis/sdk';

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

/** Lines parsed into entries; a line that is not one is logged (the options' schema and the CLI refuse them, but a rule may `listAdd` anything). */
function parseLines(lines: readonly string[], from: string, ctx: Pick<RuleContext, 'log'>): Entry[] {
  const entries: Entry[] = [];
  const bad: string[] = [];
  for (const l of lines) {
    const e = parseAccessLine(l);
    if (typeof e === 'string') bad.push(`"${l}": ${e}`);
    else entries.push(e);
  }
  if (bad.length) ctx.log(`ignoring ${bad.length} line(s) of ${from} that are not access lines; the first: ${bad[0]}`);
  return entries;
}

let parsed: { from: readonly string[]; entries: Entry[] } | null = null;
/** The options' lines, parsed once per options (they are frozen per rule load). */
function optionEntries(lines: readonly string[], ctx: Pick<RuleContext, 'log'>): Entry[] {
  if (parsed?.from !== lines) parsed = { from: lines, entries: parseLines(lines, 'the options', ctx) };
  return parsed.entries;
}

/** The session note naming the version of the store list the session read (its fingerprint). */
const NOTE = 'access.store-list';

/** The store list's lines count and FNV-1a hash: its version in a few characters, for the session note; '' for none. */
function fingerprint(lines: readonly string[]): string {
  if (!lines.length) return '';
  let h = 0x811c9dc5;
  for (const l of lines) for (let i = 0; i <= l.length; i++) h = Math.imul(h ^ (i < l.length ? l.charCodeAt(i) : 10), 0x01000193);
  return `${lines.length}:${(h >>> 0).toString(36)}`;
}

/** The latest version of the store list this module parsed. */
let stored: { fingerprint: string; entries: Entry[] } = { fingerprint: '', entries: [] };

interface Options {
  entries: readonly string[];
  storeList: string | null;
}

/**
 * The store list's entries for this session. Its first phase reads the list and notes
 * the version; its later phases find that version here without a store call. A session's
 * calls may run in different workers, each with a module of its own: one that has not
 * parsed that version (or has parsed a newer one since) reads the list again.
 */
function storedEntries(session: SessionInfo, ctx: RuleContext<Options>): Entry[] {
  const list = ctx.options.storeList;
  if (list === null) return [];
  const seen = session.notes[NOTE];
  if (seen === stored.fingerprint) return stored.entries;
  const lines = ctx.store.listValues(list);
  const version = fingerprint(lines);
  if (version !== stored.fingerprint) stored = { fingerprint: version, entries: parseLines(lines, `the store list "${list}"`, ctx) };
  if (version !== seen) ctx.note.session(NOTE, version);
  return stored.entries;
}

/** The whole map: the options' lines first, then the store's. */
function mapOf(session: SessionInfo, ctx: RuleContext<Options>): Entry[] {
  const own = optionEntries(ctx.options.entries, ctx);
  const fromStore = storedEntries(session, ctx);
  return fromStore.length ? [...own, ...fromStore] : own;
}

const mailFrom = (env: Envelope) => env.mailFrom?.address ?? null;

/**
 * Whether the map may hold an SPF-PASS line, so the rule needs SPF (RFC 7208) at MAIL
 * FROM: one of the options' lines is one, or a store list is read (its lines change while
 * the rule runs; its needs are taken once, at load).
 */
function mayHaveSpfPass(o: Options): boolean {
  return o.storeList !== null || o.entries.some((l) => {
    const e = parseAccessLine(l);
    return typeof e !== 'string' && e.action === 'SPF-PASS';
  });
}

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
        type: 'array', items: { type: 'string', pattern: ACCESS_LINE_PATTERN }, default: [],
        description: 'Access map lines, checked before the store list\'s: KEY [KEY] ACTION [TEXT], KEY one of Connect:ip|network|ptr-domain, From:address|domain|<>, To:address|domain.',
      },
      storeList: {
        type: ['string', 'null'], minLength: 1, maxLength: RULE_LIMITS.listName, default: ACCESS_STORE_LIST,
        description: 'The store list read after `entries` (the lines `portcullis access add` writes); null to read no store list.',
      },
    },
  },
  needs: (o) => (mayHaveSpfPass(o) ? ['spf'] : []) satisfies Need[],
  phases: {
    connect: (ev, ctx) => decide(mapOf(ev.session, ctx), 'Connect', ev.session, null, null, 'connect'),
    mail: (ev, ctx) => decide(mapOf(ev.session, ctx), 'From', ev.session, ev.mail.address, null, 'later', ev.dns),
    rcpt: (ev, ctx) => decide(mapOf(ev.session, ctx), 'To', ev.session, mailFrom(ev.envelope), ev.rcpt.address, 'later', ev.dns),
  },
});
