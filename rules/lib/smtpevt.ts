/**
 * Helpers shared by the SmtpEvt rules (Mercury's SmtpEvt daemon, 2008–2019, rebuilt as
 * Portcullis rules). Not a rule itself: rule files import it.
 */
import type { HeloEvent, RuleContext, SessionInfo } from 'portcullis/sdk';
import { zoneOption } from './dnsbl.js';

export const domainOf = (address: string): string => address.slice(address.lastIndexOf('@') + 1).toLowerCase();

/** A key for this transaction (session id + transactions completed so far). */
export const txKey = (what: string, s: SessionInfo): string => `${what}:${s.id}:${s.transactions}`;

/** Authenticated clients pass the SmtpEvt checks (exempt networks never reach rules). */
export const trusted = (s: SessionInfo): boolean => s.user !== null;

/** What is wrong with a HELO name, or null: the list SmtpEvt checks. */
export function heloProblem(helo: HeloEvent['helo'] | null, clientIp: string, ourNames: string[]): string | null {
  if (!helo || !helo.name) return 'no HELO name';
  const name = helo.name.toLowerCase();
  const literal = /^\[(?:ipv6:)?([0-9a-f:.]+)\]$/i.exec(name);
  if (literal) return literal[1] === clientIp.toLowerCase() ? null : `IP literal ${name} is not the client's address`;
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.includes(':')) return `bare IP address ${name} (not in brackets)`;
  if (!name.includes('.')) return `unqualified name ${name}`;
  if (ourNames.some((n) => name === n || name.endsWith(`.${n}`))) return `our own name ${name}`;
  return null;
}

/** An unqualified (dotless, not an address) or missing HELO name: it triggers the subject scan. */
export const heloUnqualified = (helo: HeloEvent['helo'] | null): boolean => !helo?.name || (!helo.name.includes('.') && !helo.name.startsWith('['));

/**
 * Why the client looks like a spam bot (suspicious HELO, no reverse DNS, a DNSBL hit
 * given as `dnsbl`, see `dnsblHit`), or null.
 */
export function spamBotSign(s: SessionInfo, ourNames: string[], noPtrIsSign = true, dnsbl: string | null = null): string | null {
  const helo = heloProblem(s.helo, s.client.ip, ourNames);
  if (helo) return helo;
  if (noPtrIsSign && s.client.ptr === null) return 'no reverse DNS (PTR) name';
  if (dnsbl) return `listed in ${dnsbl}`;
  return null;
}

/** The option naming the DNSBL whose hits count as a spam sign ('' = none). */
export const dnsblSignOption = zoneOption('zen.spamhaus.org', "A listing of the client in this DNSBL counts as a spam sign ('' = none). Needs dns.servers.");

/** The options every watchlist rule takes. */
export interface WatchOptions {
  watchlistCount: number;
  watchlistMinutes: number;
  blacklistTtlMinutes: number;
}

export const watchSchema = (count: number, minutes: number, ttlMinutes: number) => ({
  watchlistCount: { type: 'integer', minimum: 1, default: count, description: 'Events from one client within watchlistMinutes that trigger the blacklist.' },
  watchlistMinutes: { type: 'integer', minimum: 1, default: minutes },
  blacklistTtlMinutes: { type: 'integer', minimum: 1, default: ttlMinutes, description: 'How long the client stays blacklisted.' },
});

/** Counts one event for the client; true (and blacklisted) when it reached the limit. */
export function watchAndBlacklist(ctx: RuleContext<WatchOptions>, what: string, ip: string, reason: string): boolean {
  const o = ctx.options;
  const n = ctx.store.hit(`${what}:${ip}`, o.watchlistMinutes * 60);
  if (n < o.watchlistCount) return false;
  ctx.blacklist(o.blacklistTtlMinutes * 60, reason);
  ctx.log(`${ip}: ${n} ${what} events in ${o.watchlistMinutes} min: blacklisted for ${o.blacklistTtlMinutes} min`);
  return true;
}
