/**
 * What a transaction's score comes to (rules add symbols with `ctx.score`; config
 * `scores` says what a total does): Rspamd's symbols and actions, SpamAssassin's
 * required_score, postscreen's weights, as plain functions of the symbols.
 */
import type { Config } from '../config/config.js';
import { REPLIES, type Reply } from './reply.js';

export type Symbols = Record<string, number>;

/** The sum of a score's points, rounded to what a person reads (0.1 + 0.2 is 0.3). */
export function scoreTotal(symbols: Symbols): number {
  return Math.round(Object.values(symbols).reduce((a, b) => a + b, 0) * 1000) / 1000;
}

/** `dnsbl-zen=5 helo-unqualified=2.5`, highest first. */
export function describeSymbols(symbols: Symbols): string {
  return Object.entries(symbols)
    .sort((a, b) => b[1] - a[1])
    .map(([s, p]) => `${s}=${p}`)
    .join(' ');
}

/** The refusal a total earns against the thresholds (reject first), with the threshold it reached; null under both. */
export function scoreRefusal(symbols: Symbols, c: Config['scores']): { reply: Reply; limit: number; total: number } | null {
  const total = scoreTotal(symbols);
  if (c.reject !== null && total >= c.reject) return { reply: REPLIES.scoreReject(total, c.reject), limit: c.reject, total };
  if (c.tempfail !== null && total >= c.tempfail) return { reply: REPLIES.scoreTempfail(total, c.tempfail), limit: c.tempfail, total };
  return null;
}

/** The header of an accepted message: `[name, '7.5 tag=yes (trap=5 helo-unqualified=2.5)']`; null without symbols. */
export function scoreHeader(symbols: Symbols, c: Config['scores']): [string, string] | null {
  if (!Object.keys(symbols).length) return null;
  const total = scoreTotal(symbols);
  const tag = c.tag !== null ? ` tag=${total >= c.tag ? 'yes' : 'no'}` : '';
  return [c.header, `${total}${tag} (${describeSymbols(symbols)})`];
}
