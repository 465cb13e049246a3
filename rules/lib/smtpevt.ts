/**
 * Helpers shared by the SmtpEvt rules (Mercury's SmtpEvt daemon, 2008–2019, rebuilt as
 * Portcullis rules). Not a rule itself: rule files import it.
 */
import type { HeloEvent, RuleContext, SessionInfo } from 'portcullis/sdk';
import { zoneOption } from './dnsbl.js';

/**
 * What is wrong with a HELO name, or null: the list SmtpEvt checks. RFC 5321 §4.1.1.1
 * wants the client's FQDN, or an address literal of its own address; a client greeting
 * with our host name or one of our domains is lying.
 */
export function heloProblem(helo: HeloEvent['helo'] | null, s: SessionInfo): string | null {
  if (!helo || !helo.name) return 'no HELO name';
  const name = helo.name.toLowerCase();
  const literal = /^\[(?:ipv6:)?([0-9a-f:.]+)\]$/i.exec(name);
  if (literal) return literal[1] === s.client.ip.toLowerCase() ? null : `IP literal ${name} is not the client's address`;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.includes(':')) return `bare IP address ${name} (not in brackets)`;
  if (!name.includes('.')) return `unqualified name ${name}`;
  if (name === s.local.hostname.toLowerCase() || s.local.domains.includes(name)) return `our own name ${name}`;
  return null;
}

/** An unqualified (dotless, not an address) or missing HELO name: it triggers the subject scan. */
export const heloUnqualified = (helo: HeloEvent['helo'] | null): boolean => !helo?.name || (!helo.name.includes('.') && !helo.name.startsWith('['));

/**
 * Why the client looks like a spam bot (suspicious HELO, no reverse DNS, a DNSBL hit
 * given as `dnsbl`, see `dnsblHit`), or null.
 */
export function spamBotSign(s: SessionInfo, noPtrIsSign = true, dnsbl: string | null = null): string | null {
  const helo = heloProblem(s.helo, s);
  if (helo) return helo;
  if (noPtrIsSign && s.client.ptr === null) return 'no reverse DNS (PTR) name';
  if (dnsbl) return `listed in ${dnsbl}`;
  return null;
}

/** The option naming the DNSBL whose hits count as a spam sign ('' = none). */
export const dnsblSignOption = zoneOption('zen.spamhaus.org', "A listing of the client in this DNSBL counts as a spam sign ('' = none). Needs dns.servers.");

/** The option saying whether a client without reverse DNS looks like a bot. */
export const noPtrIsSignOption = { type: 'boolean', default: true, description: 'A client without reverse DNS counts as a spam bot (turn off where reverse DNS is not looked up).' } as const;

/** The options every watchlist rule takes (SmtpEvt's Watchlist_Count, Watchlist_Minutes, and the blacklist TTL). */
export const watchOptions = (count: number, minutes: number, blacklistMinutes: number) =>
  ({
    watchlistCount: { type: 'integer', minimum: 1, default: count, description: 'Events from one client within watchlistMinutes that trigger the blacklist.' },
    // The store keeps hits 7 days and blacklist entries 30 (RULE_LIMITS): the config check says so, not a failing rule.
    watchlistMinutes: { type: 'integer', minimum: 1, maximum: 7 * 24 * 60, default: minutes },
    blacklistMinutes: { type: 'integer', minimum: 1, maximum: 30 * 24 * 60, default: blacklistMinutes, description: 'How long the client stays blacklisted.' },
  }) as const;

export interface WatchOptions {
  watchlistCount: number;
  watchlistMinutes: number;
  blacklistMinutes: number;
}

/** Counts one event for the client; true (and blacklisted) when it reached the limit. */
export function watchAndBlacklist(ctx: RuleContext<WatchOptions>, what: string, ip: string, reason: string): boolean {
  const o = ctx.options;
  const n = ctx.store.hit(`${what}:${ip}`, o.watchlistMinutes * 60);
  if (n < o.watchlistCount) return false;
  ctx.blacklist(o.blacklistMinutes * 60, reason);
  ctx.log(`${ip}: ${n} ${what} events in ${o.watchlistMinutes} min: blacklisted for ${o.blacklistMinutes} min`);
  return true;
}
