/**
 * The hosts a message links to (`needs: ['uris']`, `UriFacts`), read from its decoded
 * text and HTML parts (the MIME facts): bare `http://`, `https://`, `ftp://` and `www.`
 * links anywhere in either, and HTML `href`/`src` attribute values (quoted or not,
 * protocol-relative `//host/` included). Each candidate goes through the WHATWG URL
 * parser, as a browser would read it: an internationalised name comes out as punycode,
 * and `http://0xC0000207/` or `http://3221225991/` as `192.0.2.7` (obfuscated IP links
 * are IP links). Other schemes (`mailto:`, `cid:`) and relative links name no host.
 * At most `URI_MAX_HOSTS` distinct hosts, in the order first seen.
 */
import { isIP } from 'node:net';
import { URI_MAX_HOSTS, type MimeFacts, type UriFacts, type UriHost } from '../../sdk/index.js';
import { ipInName, registeredDomain } from '../dns/names.js';

/** A link in running text: up to the first space, quote or angle bracket (RFC 3986 Appendix C's delimiters). */
const BARE_LINK = /\b(?:(?:https?|ftp):\/\/|www\.)[^\s<>"'`]+/gi;

/** An HTML attribute that holds a link the reader follows or the client loads. */
const LINK_ATTRIBUTE = /\b(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))/gi;

const SCHEMES = new Set(['http:', 'https:', 'ftp:']);

/** The character references that can hide a link's scheme or host in an attribute value (HTML §13.5). */
function unescapeHtml(s: string): string {
  return s.replace(/&(?:#x([0-9a-f]{1,6})|#(\d{1,7})|(amp|colon|sol|period|nbsp));?/gi, (all, hex?: string, dec?: string, name?: string) => {
    if (name) return { amp: '&', colon: ':', sol: '/', period: '.', nbsp: ' ' }[name.toLowerCase()] ?? all;
    const cp = hex ? parseInt(hex, 16) : Number(dec);
    return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : all;
  });
}

/** The host of one candidate link, lower case, or null when it names none we look at. */
export function linkHost(candidate: string): string | null {
  let s = candidate.trim();
  // Punctuation after a link in prose is not part of it ("see http://x.example/.").
  s = s.replace(s.includes('[') ? /[.,;:!?'")>}]+$/ : /[.,;:!?'")\]>}]+$/, '');
  if (s.startsWith('//')) s = `http:${s}`;
  else if (/^www\./i.test(s)) s = `http://${s}`;
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return null;
  }
  if (!SCHEMES.has(url.protocol)) return null;
  const host = url.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();
  // A single-label name (http://intranet/) is nobody's domain on the Internet.
  return host && (isIP(host) || host.includes('.')) ? host : null;
}

/** What a host is: an address, or a name with its registered domain and any address it carries. */
export function uriHost(host: string): UriHost {
  const ip = isIP(host) ? host : null;
  return { host, domain: ip ? null : registeredDomain(host), ip, ipInName: ip ? null : ipInName(host) };
}

/** The link hosts of a message's MIME facts (see the file comment). */
export function uriFacts(mime: MimeFacts): UriFacts {
  const seen = new Set<string>();
  let truncated = mime.truncated;
  const add = (candidate: string) => {
    const host = linkHost(candidate);
    if (host === null || seen.has(host)) return;
    if (seen.size >= URI_MAX_HOSTS) truncated = true;
    else seen.add(host);
  };
  for (const text of [mime.text, mime.html]) for (const m of text.matchAll(BARE_LINK)) add(m[0]);
  for (const m of mime.html.matchAll(LINK_ATTRIBUTE)) add(unescapeHtml(m[1] ?? m[2] ?? m[3] ?? ''));
  return { hosts: [...seen].map(uriHost), truncated };
}
