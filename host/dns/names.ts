/**
 * What a host name says about itself, before any DNS: its registered domain (by the
 * Public Suffix List, through `tldts`) and whether it carries an IPv4 address in its
 * labels (smtpf 2.0's "IP-in-name"). One home for both: the URI facts (link hosts) and
 * the NS facts (name servers of the sender's and the links' domains) use them.
 */
import { isIP } from 'node:net';
import { getDomain, getPublicSuffix } from 'tldts';

/** A host name compared as DNS names are: lower case, without the root's trailing dot. */
export const hostName = (n: string): string => n.toLowerCase().replace(/\.$/, '');

/**
 * The registrable domain of `name` (`www.foo.co.uk` → `foo.co.uk`), by the Public Suffix
 * List's ICANN section (private entries such as `blogspot.com` are not suffixes here:
 * block lists list `blogspot.com` customers under it). Unknown top-level names count as
 * one-label suffixes (`ns1.example.test` → `example.test`). Null for an IP address or a
 * name that is only a suffix.
 */
export function registeredDomain(name: string): string | null {
  const n = hostName(name);
  if (isIP(n)) return null;
  return getDomain(n, { allowPrivateDomains: false }) ?? null;
}

const octet = (s: string): number | null => {
  const n = Number(s);
  return s.length <= 3 && n <= 255 ? n : null;
};

const dotted = (parts: (number | null)[]): string | null => (parts.every((p) => p !== null) ? parts.join('.') : null);

/**
 * The IPv4 address `name` carries in its labels, or null: four decimal octets joined by
 * `.`, `-` or `_` (`host-192-0-2-7.dyn.example`, `192.0.2.7.example`, reversed ones too:
 * `7-2-0-192.pool.example`), twelve zero-padded digits (`192000002007.example`), or eight
 * hex digits as a label or a `-`-separated token (`c0000207.dsl.example`): how dynamic
 * and residential ranges are named, and what fast-flux hosts and their name servers
 * look like (smtpf 2.0's `uri-ip-in-name`, `uri-ip-in-ns`, `mail-ip-in-ns`). Only the
 * labels left of the public suffix are read, so a suffix of digits does not count. A
 * heuristic: `cafe0001.example` reads as 202.254.0.1 (hex words without a digit do not count).
 */
export function ipInName(name: string): string | null {
  const n = hostName(name);
  if (isIP(n)) return null; // an address is not a name with an address in it
  const suffix = getPublicSuffix(n, { allowPrivateDomains: false });
  const head = suffix && n.endsWith(`.${suffix}`) ? n.slice(0, -suffix.length - 1) : n;
  const dec = /(?:^|[^0-9])(\d{1,3})[._-](\d{1,3})[._-](\d{1,3})[._-](\d{1,3})(?![0-9])/.exec(head);
  const d = dec && dotted(dec.slice(1).map(octet));
  if (d) return d;
  const padded = /(?:^|[^0-9])(\d{3})(\d{3})(\d{3})(\d{3})(?![0-9])/.exec(head);
  const p = padded && dotted(padded.slice(1).map(octet));
  if (p) return p;
  const hex = /(?:^|[.-])([0-9a-f]{8})(?=$|[.-])/.exec(head);
  if (hex && /[0-9]/.test(hex[1]!)) return dotted(hex[1]!.match(/../g)!.map((h) => parseInt(h, 16)));
  return null;
}
