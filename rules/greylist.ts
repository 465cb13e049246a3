/**
 * greylist — the first delivery attempt of an unknown (client, sender, recipient)
 * triplet gets `450 4.7.1`; the same triplet retried after `retrySeconds` passes.
 *
 * A real MTA keeps a refused message in its queue and retries (RFC 5321 §4.5.4.1); most
 * spam software fires once and moves on. This is smtpf 2.0's grey-list (and Postfix's
 * postgrey): `key` picks the client part of the triplet, for senders that retry from
 * another address of their pool (smtpf's grey-key: IP, /24, PTR domain; or the sender's
 * domain when its SPF, RFC 7208, authorises the client: a large sender's retry may come
 * from any of its networks, and SPF is how it names them); a triplet not retried within
 * `pendingHours` is forgotten; one that passed stays known for `passDays`, refreshed by
 * every message.
 *
 * The first message that passes carries `X-Grey-Report` (smtpf: how long greylisting
 * held the triplet, the key, when it started). With `drop` the tempfail is 421 and the
 * connection closes (smtpf: spammers stay connected and try pair after pair; a real MTA
 * retries the whole message later either way).
 *
 * With `content` (smtpf's grey-content, against botnets that retry with a fresh random
 * text each time) the client alone is the key and the decision waits for the message:
 * a new client's first message is tempfailed and its body's hash kept; after
 * `retrySeconds` only that same message passes, proving a real retry queue.
 *
 * A client whose triplet passes (or, with `content`, that becomes known) has proved it
 * is a real MTA: it is marked well-behaved for `passDays` (`ctx.markWellBehaved`; smtpf
 * 2.0's well-behaved hosts), so its connections skip the greet pause and the tarpit
 * spares it. A known triplet renews the mark once it has run out, not at every RCPT.
 *
 * Clients listed in the `dnswl` zone (a DNS whitelist such as list.dnswl.org) are never
 * greylisted: they are known to retry.
 *
 * Ships off: it delays the first message from every new sender by the sender's retry
 * interval. The triplets live in the store (`ctx.store`), so hosts that share a store
 * share them.
 */
import { defineRule, STATUS, tempfail, type MessageEvent, type Need, type RcptEvent } from 'portcullis/sdk';
import { zoneOption } from './lib/dnsbl.js';

/**
 * The client part of the key: its address, its network (/24 or /64), its PTR name without
 * the host label, or the domain whose SPF passed for it (for the null sender, the HELO
 * name's); the network when there is no such name.
 */
function clientKey(ev: RcptEvent | MessageEvent, key: 'ip' | 'ip-network' | 'ptr-domain' | 'spf-domain'): string {
  const { ip, ptr } = ev.session.client;
  if (key === 'ip') return ip;
  if (key === 'ptr-domain' && ptr && ptr.split('.').length > 2) return ptr.slice(ptr.indexOf('.') + 1).toLowerCase();
  if (key === 'spf-domain' && ev.dns.spf?.result === 'pass') return ev.dns.spf.domain;
  // IPv4 /24; IPv6 /64 (the first four groups of the written form, zeros compressed or not).
  if (!ip.includes(':')) return ip.split('.').slice(0, 3).join('.');
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const groups = [...head.split(':'), ...(ip.includes('::') ? Array(8 - head.split(':').length - tail.split(':').length).fill('0') : []), ...tail.split(':')];
  return groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':');
}

/** A 64-bit FNV-1a hash of the body, in hex: enough to know the same message when it comes back. */
function bodyHash(body: string): string {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ body.length;
  for (let i = 0; i < body.length; i++) {
    const c = body.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c, 0x5bd1e995) >>> 0;
  }
  return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
}

/** True when the client is listed in the DNS whitelist zone `zone` ('' = none). */
const dnswlListed = (ev: RcptEvent | MessageEvent, zone: string) => zone !== '' && ev.dns.dnsbl[zone]?.status === 'listed';

/** The tempfail: 421 and the connection closes (`drop`), or 450 for this recipient or message. */
const greylisted = (drop: boolean) => tempfail(drop ? 421 : 450, 'Greylisted: please try again later', { status: STATUS.notAuthorized, reason: 'greylisted' });

export default defineRule({
  name: 'greylist',
  description: 'Greylisting: tempfails the first attempt of an unknown client/sender/recipient triplet',
  priority: 90,
  enabled: false,
  skip: { authenticated: true },
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      key: {
        enum: ['ip', 'ip-network', 'ptr-domain', 'spf-domain'], default: 'ip-network',
        description: "The client part of the triplet: its address; its /24 (IPv4) or /64 (IPv6), so a retry from another address of the sender's pool passes; its PTR name without the host label (the network when it has no PTR); or the sender's domain when that domain's SPF passes for the client, so a retry from any of the sender's SPF-listed servers passes (the network otherwise; a domain whose SPF passes everyone, +all, shares one key among all its clients). Needs dns.servers for spf-domain.",
      },
      retrySeconds: { type: 'integer', minimum: 1, maximum: 86400, default: 300, description: 'A retry passes once this long has gone by since the first attempt.' },
      pendingHours: { type: 'integer', minimum: 1, maximum: 168, default: 4, description: 'A triplet not retried within this long is forgotten.' },
      passDays: { type: 'integer', minimum: 1, maximum: 30, default: 30, description: 'A triplet that passed stays known this long after its last message (smtpf keeps 36 days; the store keeps 30 at most).' },
      drop: { type: 'boolean', default: true, description: 'Answer the tempfail with 421 and close the connection, instead of 450 for that recipient.' },
      dnswl: zoneOption('', "A DNS whitelist zone (e.g. list.dnswl.org): clients listed there are never greylisted ('' = none). Needs dns.servers."),
      content: {
        type: 'boolean', default: false,
        description: "smtpf's grey-content: a never-seen client's first message is tempfailed at the end of DATA and its body's hash kept; after retrySeconds only that same message passes (proof of a real retry queue), and from then on the client does. Keyed on the client alone.",
      },
    },
  },
  needs: (o) => [...(o.dnswl ? [`dnsbl:${o.dnswl}` as const] : []), ...(o.content ? ['body' as const] : []), ...(o.key === 'spf-domain' ? ['spf' as const] : [])] satisfies Need[],
  phases: {
    rcpt: (ev, ctx) => {
      const o = ctx.options;
      if (dnswlListed(ev, o.dnswl)) return; // a known good sender
      if (o.content) return; // decided on the message, at its end
      const triplet = `${clientKey(ev, o.key)}|${(ev.envelope.mailFrom?.address ?? '').toLowerCase()}|${ev.rcpt.address.toLowerCase()}`.slice(0, 480);
      const pass = `grey-pass:${triplet}`;
      const pending = `grey:${triplet}`;
      const passedAt = ctx.store.recall(pass);
      if (passedAt !== null) {
        ctx.store.remember(pass, passedAt, o.passDays * 86400); // known: known for passDays more
        if (!ev.session.client.wellBehaved) ctx.markWellBehaved(o.passDays * 86400);
        return;
      }
      // An attempt within the pending window but older than the retry window: this is a retry.
      if (ctx.store.count(pending, o.pendingHours * 3600) > ctx.store.count(pending, o.retrySeconds)) {
        const now = new Date(ev.session.time).toISOString();
        const started = ctx.store.recall(`grey-first:${triplet}`) ?? now;
        const age = Math.round((ev.session.time - Date.parse(started)) / 1000);
        ctx.store.remember(pass, now, o.passDays * 86400);
        ctx.markWellBehaved(o.passDays * 86400);
        ctx.addHeader('X-Grey-Report', `age=${age}s; key=${o.key}; triplet=${triplet}; started=${started}`);
        ctx.log(`${triplet}: retried ${age} s after its first attempt: passes from now on`);
        return;
      }
      if (ctx.store.hit(pending, o.pendingHours * 3600) === 1) ctx.store.remember(`grey-first:${triplet}`, new Date(ev.session.time).toISOString(), o.pendingHours * 3600);
      return greylisted(o.drop);
    },
    message: (ev, ctx) => {
      const o = ctx.options;
      if (!o.content || dnswlListed(ev, o.dnswl)) return;
      const client = clientKey(ev, o.key);
      const known = ctx.store.recall(`grey-host:${client}`);
      if (known !== null) {
        ctx.store.remember(`grey-host:${client}`, known, o.passDays * 86400);
        if (!ev.session.client.wellBehaved) ctx.markWellBehaved(o.passDays * 86400);
        return;
      }
      const hash = bodyHash(ev.message.body ?? '');
      const now = new Date(ev.session.time).toISOString();
      const first = ctx.store.recall(`grey-content:${client}`); // "<hash> <started>"
      if (first === null) {
        ctx.store.remember(`grey-content:${client}`, `${hash} ${now}`, o.pendingHours * 3600);
        return greylisted(o.drop);
      }
      const [firstHash = '', started = now] = first.split(' ');
      const age = Math.round((ev.session.time - Date.parse(started)) / 1000);
      if (age < o.retrySeconds || hash !== firstHash) return greylisted(o.drop); // too early, or not the message it was first sent
      ctx.store.remember(`grey-host:${client}`, now, o.passDays * 86400);
      ctx.markWellBehaved(o.passDays * 86400);
      ctx.addHeader('X-Grey-Report', `age=${age}s; key=${o.key}; client=${client}; content=${hash}; started=${started}`);
      ctx.log(`${client}: sent its first message again ${age} s later: passes from now on`);
    },
  },
});
