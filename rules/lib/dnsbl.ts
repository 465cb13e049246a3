/**
 * Helpers for rules that read DNS list answers (`ev.dns`). Not a rule itself.
 * Spamhaus return codes: https://docs.spamhaus.com/datasets/docs/source/40-real-world-usage/PublicMirrors/MTAs/020-Postfix.html
 */
import type { DnsListAnswer, PhaseEvent } from 'portcullis/sdk';

/** What a ZEN answer says about the client (a code can be in several lists at once). */
export interface ZenListing {
  /** 127.0.0.2, .3, .9: the Spamhaus Block List (spam sources, hijacked ranges). */
  sbl: boolean;
  /** 127.0.0.4–.7: the Exploits Block List (infected hosts, open proxies). */
  xbl: boolean;
  /** 127.0.0.10, .11: the Policy Block List (end-user ranges that should not send directly). */
  pbl: boolean;
  codes: string[];
}

/** The last octet of an A record: `127.0.0.4` → 4. */
export const lastOctet = (code: string): number => Number(code.slice(code.lastIndexOf('.') + 1));

/** The client's ZEN listing, or null when it is not listed (or the lookup failed or was refused). */
export function zenListing(answer: DnsListAnswer | undefined): ZenListing | null {
  if (answer?.status !== 'listed') return null;
  const n = answer.codes.filter((c) => c.startsWith('127.0.0.')).map(lastOctet);
  const l = { sbl: n.some((x) => x === 2 || x === 3 || x === 9), xbl: n.some((x) => x >= 4 && x <= 7), pbl: n.some((x) => x === 10 || x === 11), codes: answer.codes };
  return l.sbl || l.xbl || l.pbl ? l : null;
}

/** "zen.spamhaus.org (127.0.0.4)" when the client is listed in `zone`, else null: a DNSBL hit as SmtpEvt counts it. */
export function dnsblHit(ev: PhaseEvent, zone: string): string | null {
  const a = zone ? ev.dns.dnsbl[zone] : undefined;
  return a?.status === 'listed' ? `${zone} (${a.codes.join(', ')})` : null;
}

/**
 * Whether an A record matches a pattern: exact (`127.0.0.2`) or with octet ranges in
 * Postfix postscreen syntax (`127.0.0.[4..7]`, `127.0.[0..255].[2..3]`).
 */
export function codeMatches(code: string, pattern: string): boolean {
  const c = code.split('.');
  const p = pattern.match(/\[\d+\.\.\d+\]|\d+/g) ?? [];
  if (c.length !== 4 || p.length !== 4) return false;
  return p.every((part, i) => {
    const range = /^\[(\d+)\.\.(\d+)\]$/.exec(part);
    const v = Number(c[i]);
    return range ? v >= Number(range[1]) && v <= Number(range[2]) : part === c[i];
  });
}

/** JSON Schema of an option naming a DNSBL zone ('' = none). */
export const zoneOption = (zone: string, description: string) => ({ type: 'string', pattern: '^([A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)+)?$', default: zone, description }) as const;
