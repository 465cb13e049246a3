/**
 * Turns the JSON a rule returned into a verdict and effects the host can trust, or says
 * exactly why it cannot. Fields are copied into fresh objects one by one, so nothing
 * the rule put there (`__proto__` keys, extra fields) reaches the host.
 */
import type { Effects, Verdict } from '../../sdk/index.js';

export class InvalidVerdict extends Error {}

const MAX_TEXT = 400;
const MAX_HEADER_VALUE = 2000;
const MAX_HEADERS = 20;
const MAX_LOGS = 10;
const MAX_BLACKLIST_SECONDS = 30 * 24 * 3600;
/** RFC 5322 §3.6.8: field-name = 1*ftext, printable ASCII except ':'. */
const FIELD_NAME = /^[!-9;-~]{1,76}$/;
/** Reply text (RFC 5321 §4.2): printable ASCII and spaces only, so it can never split a reply. */
const REPLY_TEXT = /^[ -~]*$/;
const STATUS = /^[0-9]{1,3}\.[0-9]{1,3}$/;
/** A mailbox for redirect: local@domain, no spaces, brackets or controls. */
const ADDRESS = /^[^\s<>@"]{1,64}@[A-Za-z0-9.-]{1,253}$/;

function fail(msg: string): never {
  throw new InvalidVerdict(msg);
}

function str(v: unknown, what: string, max: number, pattern?: RegExp): string {
  if (typeof v !== 'string') fail(`${what} must be a string`);
  if (v.length > max) fail(`${what} is longer than ${max} characters`);
  if (pattern && !pattern.test(v)) fail(`${what} contains characters not allowed there: ${JSON.stringify(v.slice(0, 60))}`);
  return v;
}

function reason(o: Record<string, unknown>): { reason?: string } {
  return o.reason === undefined ? {} : { reason: str(o.reason, 'reason', 64, /^[a-z0-9][a-z0-9.-]*$/) };
}

function replyCode(o: Record<string, unknown>, lo: number, hi: number): { code: number; text: string; status?: string } {
  const code = o.code;
  if (typeof code !== 'number' || !Number.isInteger(code) || code < lo || code > hi) fail(`code must be an integer ${lo}–${hi}, got ${JSON.stringify(code)}`);
  const text = str(o.text, 'text', MAX_TEXT, REPLY_TEXT);
  return o.status === undefined ? { code, text } : { code, text, status: str(o.status, 'status', 7, STATUS) };
}

export function validateVerdict(raw: unknown): Verdict {
  if (raw === null) return { action: 'next' };
  if (typeof raw !== 'object' || Array.isArray(raw)) fail(`a verdict must be an object made by next(), reject(), …; got ${typeof raw}`);
  const o = raw as Record<string, unknown>;
  switch (o.action) {
    case 'next':
      return { action: 'next' };
    case 'accept':
    case 'discard':
    case 'quarantine':
      return { action: o.action, ...reason(o) };
    case 'reject':
      return { action: 'reject', ...replyCode(o, 500, 599), ...reason(o) };
    case 'tempfail':
      return { action: 'tempfail', ...replyCode(o, 400, 499), ...reason(o) };
    case 'drop':
      return { action: 'drop', text: str(o.text, 'text', MAX_TEXT, REPLY_TEXT), ...reason(o) };
    case 'redirect':
      return { action: 'redirect', address: str(o.address, 'address', 320, ADDRESS), ...reason(o) };
    default:
      return fail(`unknown action ${JSON.stringify(o.action)}`);
  }
}

export function validateEffects(raw: unknown): Effects {
  if (raw === null || typeof raw !== 'object') fail('effects must be an object');
  const o = raw as Record<string, unknown>;
  const fx: Effects = {};
  if (o.headers !== undefined) {
    const list = o.headers as unknown[];
    if (!Array.isArray(list) || list.length > MAX_HEADERS) fail(`at most ${MAX_HEADERS} headers per call`);
    fx.headers = list.map((h) => {
      const [name, value] = h as unknown[];
      return [str(name, 'header name', 76, FIELD_NAME), str(value, `header ${String(name)} value`, MAX_HEADER_VALUE, /^[\t -~\u0080-\uffff]*$/)];
    });
  }
  if (o.blacklist !== undefined) {
    const b = o.blacklist as Record<string, unknown>;
    const ttl = b.ttlSeconds;
    if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0 || ttl > MAX_BLACKLIST_SECONDS) fail(`blacklist ttlSeconds must be 1–${MAX_BLACKLIST_SECONDS}`);
    fx.blacklist = { ttlSeconds: Math.round(ttl), reason: str(b.reason, 'blacklist reason', 200, REPLY_TEXT) };
  }
  if (o.delayMs !== undefined) {
    const d = o.delayMs;
    if (typeof d !== 'number' || !Number.isFinite(d) || d < 0) fail('delay must be a non-negative number of milliseconds');
    fx.delayMs = d;
  }
  if (o.logs !== undefined) {
    fx.logs = (o.logs as unknown[]).slice(0, MAX_LOGS).map((l) => String(l).slice(0, 1000));
  }
  return fx;
}

const NOTHING = Object.freeze({ verdict: Object.freeze({ action: 'next' }) as Verdict, effects: Object.freeze({}) as Effects });

/** Parses the guest's reply string (see guest.ts): '' (no opinion), `!why` or `{"v":…,"fx":…}`. */
export function parseGuestReply(reply: string): { verdict: Verdict; effects: Effects } {
  if (reply === '') return NOTHING;
  if (reply.startsWith('!')) fail(reply.slice(1));
  const parsed = JSON.parse(reply) as { v: unknown; fx: unknown };
  return { verdict: validateVerdict(parsed.v), effects: validateEffects(parsed.fx) };
}
