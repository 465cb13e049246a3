/**
 * dnsbl — your own DNS block lists (DNSBL on the client IP, RHSBL on the sender domain),
 * each with an action as MercuryS offers, and postscreen-style weights.
 *
 * Every list that lists the session adds its `weight` (default 1) to a score; allow
 * lists (DNSWL) take a negative weight. When the score reaches `threshold` (default 1)
 * the strongest action of the lists that matched applies: drop (+ blacklist for
 * `blacklistMinutes`) > reject > redirect > tag. With the defaults, any one listing acts
 * on its own. Refusals happen at RCPT; tags and redirects at DATA, once per message.
 * With `score` above 0 (score mode) each list that lists the session adds `weight ×
 * score` points under `dnsbl-<name>` at RCPT instead (an allow list's negative weight
 * takes points off), and the config's `scores` thresholds decide.
 *
 * @example
 * "dnsbl": { "options": { "threshold": 3, "lists": [
 *   { "name": "zen", "zone": "zen.spamhaus.org", "weight": 3, "action": "reject", "text": "Mail refused. See {text}" },
 *   { "name": "barracuda", "zone": "b.barracudacentral.org", "weight": 2, "action": "tag" },
 *   { "name": "dnswl", "zone": "list.dnswl.org", "answers": ["127.0.[0..255].[1..3]"], "weight": -5 } ] } }
 */
import { defineRule, drop, redirect, reject, type DnsListAnswer, type Need, type OptionsOf, type PhaseEvent, type RuleContext } from 'portcullis/sdk';
import { codeMatches } from './lib/dnsbl.js';
import { scored, scoreMode, scoreOption } from './lib/score.js';

const OPTIONS = {
  type: 'object',
  additionalProperties: false,
  properties: {
    lists: {
      type: 'array', default: [],
      items: {
        type: 'object', additionalProperties: false, required: ['name', 'zone'],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9._-]+$', description: 'Shown in logs; the verdict reason is dnsbl-<name> in lower case.' },
          zone: { type: 'string', pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)+$' },
          on: { enum: ['client', 'sender'], default: 'client' },
          answers: { type: 'array', items: { type: 'string', pattern: '^(\\d+|\\[\\d+\\.\\.\\d+\\])(\\.(\\d+|\\[\\d+\\.\\.\\d+\\])){3}$' } },
          action: { enum: ['reject', 'tag', 'redirect', 'drop', 'disabled'], default: 'reject' },
          text: { type: 'string', description: 'Reply text for reject/drop; {ip} {zone} {name} {text} (the TXT record) are filled in.' },
          header: { type: 'string', pattern: '^[!-9;-~]+$', default: 'X-Blocked', description: 'Header for tag (value: the list name).' },
          address: { type: 'string', pattern: '^[^@\\s]+@[^@\\s]+$', description: 'Where redirect sends the message.' },
          weight: { type: 'number', default: 1, description: 'Added to the score when listed; negative for allow lists.' },
        },
      },
    },
    threshold: { type: 'number', default: 1 },
    blacklistMinutes: { type: 'integer', minimum: 1, maximum: 30 * 24 * 60, default: 30, description: 'How long drop blacklists the client.' },
    score: scoreOption('each listing (symbol dnsbl-<name>, times its weight)'),
  },
} as const;

/** The options and one list definition, typed from the schema above. */
type Options = OptionsOf<typeof OPTIONS>;
type List = Options['lists'][number];
type Hit = { list: List; answer: DnsListAnswer };

const STRENGTH = { disabled: 0, tag: 1, redirect: 2, reject: 3, drop: 4 } as const;

/** The lists that list this session, allow lists included. */
function listings(ev: PhaseEvent, o: Options): Hit[] {
  const hits: Hit[] = [];
  for (const list of o.lists) {
    if (list.action === 'disabled') continue;
    const answer = (list.on === 'sender' ? ev.dns.rhsbl : ev.dns.dnsbl)[list.zone];
    if (answer?.status !== 'listed') continue;
    if (list.answers && !answer.codes.some((c) => list.answers!.some((p) => codeMatches(c, p)))) continue;
    hits.push({ list, answer });
  }
  return hits;
}

/** The lists that list this session (allow lists aside), and whether their weights reach the threshold. */
function matches(ev: PhaseEvent, o: Options): { hits: Hit[]; acts: boolean } {
  const hits = listings(ev, o);
  const score = hits.reduce((s, h) => s + h.list.weight, 0);
  return { hits: hits.filter((h) => h.list.weight > 0), acts: hits.length > 0 && score >= o.threshold };
}

const fill = (text: string, ev: PhaseEvent, h: Hit): string =>
  text.replace(/\{ip\}/g, ev.session.client.ip).replace(/\{zone\}/g, h.list.zone).replace(/\{name\}/g, h.list.name).replace(/\{text\}/g, h.answer.text ?? '').replace(/[\r\n]+/g, ' ').trim();

function strongest(hits: Hit[]) {
  return hits.reduce((a, b) => (STRENGTH[b.list.action] > STRENGTH[a.list.action] ? b : a));
}

function logHits(ctx: RuleContext<Options>, hits: Hit[], what: string): void {
  ctx.log(`listed in ${hits.map((h) => `${h.list.name} (${h.answer.codes.join(', ')})`).join(', ')}: ${what}`);
}

export default defineRule({
  name: 'dnsbl',
  description: 'Your DNSBL/RHSBL/DNSWL definitions with actions, weights and a threshold',
  priority: 65,
  skip: { authenticated: true },
  options: OPTIONS,
  needs: (o) => o.lists.filter((l) => l.action !== 'disabled').map((l): Need => (l.on === 'sender' ? `rhsbl:${l.zone}` : `dnsbl:${l.zone}`)),
  phases: {
    rcpt: (ev, ctx) => {
      if (scoreMode(ctx.options)) {
        for (const h of listings(ev, ctx.options)) scored(ctx, `dnsbl-${h.list.name}`, h.list.weight);
        return;
      }
      const { hits, acts } = matches(ev, ctx.options);
      if (!acts) return;
      const h = strongest(hits);
      const text = fill(h.list.text ?? 'Mail refused: {ip} is listed by {name}', ev, h);
      if (h.list.action === 'drop') {
        logHits(ctx, hits, `dropped and blacklisted for ${ctx.options.blacklistMinutes} min`);
        ctx.blacklist(ctx.options.blacklistMinutes * 60, `listed in ${h.list.name}`);
        return drop(text, { reason: `dnsbl-${h.list.name}` });
      }
      if (h.list.action === 'reject') {
        logHits(ctx, hits, 'refused');
        return reject(550, text, { reason: `dnsbl-${h.list.name}` });
      }
    },
    data: (ev, ctx) => {
      const { hits, acts } = matches(ev, ctx.options);
      if (!acts || scoreMode(ctx.options)) return;
      for (const h of hits) if (h.list.action === 'tag') ctx.addHeader(h.list.header, h.list.name);
      const r = hits.find((h) => h.list.action === 'redirect' && h.list.address);
      if (r) {
        logHits(ctx, hits, `redirected to ${r.list.address}`);
        return redirect(r.list.address!, { reason: `dnsbl-${r.list.name}` });
      }
    },
  },
});
