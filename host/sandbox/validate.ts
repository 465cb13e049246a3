/**
 * Turns the JSON a rule returned into a verdict and effects the host can trust, or says
 * exactly why it cannot. Every format and limit comes from the SDK (the contract rules
 * are typed against), so what the SDK's constructors build always passes here. Fields
 * are copied into fresh objects one by one, so nothing else the rule put there
 * (`__proto__` keys, extra fields) reaches the host.
 */
import {
  HEADER_NAME_PATTERN, isRejectCode, isTempfailCode, MAX_REPLY_TEXT, REASON_PATTERN, REJECT_CODES, REPLY_TEXT_PATTERN, RULE_LIMITS, STATUS_PATTERN, TEMPFAIL_CODES,
  type EnhancedStatus, type Json, type Verdict,
} from '../../sdk/index.js';
import type { Effects, NoteWrite } from './protocol.js';

export class InvalidVerdict extends Error {}

const FIELD_NAME = new RegExp(HEADER_NAME_PATTERN);
const REPLY_TEXT = new RegExp(REPLY_TEXT_PATTERN);
const STATUS = new RegExp(STATUS_PATTERN);
const REASON = new RegExp(REASON_PATTERN);
/** A header value: no CR, LF or other controls but tab (RFC 5322 §2.2). */
const HEADER_VALUE = /^[\t -~\u0080-\uffff]*$/;
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
  return o.reason === undefined ? {} : { reason: str(o.reason, 'reason', 64, REASON) };
}

function reply(o: Record<string, unknown>): { text: string; status?: EnhancedStatus } {
  const text = str(o.text, 'text', MAX_REPLY_TEXT, REPLY_TEXT);
  return o.status === undefined ? { text } : { text, status: str(o.status, 'status', 7, STATUS) as EnhancedStatus };
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
      if (!isRejectCode(o.code)) fail(`reject code must be one of ${REJECT_CODES.join(', ')}, got ${JSON.stringify(o.code)}`);
      return { action: 'reject', code: o.code, ...reply(o), ...reason(o) };
    case 'tempfail':
      if (!isTempfailCode(o.code)) fail(`tempfail code must be one of ${TEMPFAIL_CODES.join(', ')}, got ${JSON.stringify(o.code)}`);
      return { action: 'tempfail', code: o.code, ...reply(o), ...reason(o) };
    case 'drop':
      return { action: 'drop', text: str(o.text, 'text', MAX_REPLY_TEXT, REPLY_TEXT), ...reason(o) };
    case 'redirect':
      return { action: 'redirect', address: str(o.address, 'address', 320, ADDRESS), ...reason(o) };
    default:
      return fail(`unknown action ${JSON.stringify(o.action)}`);
  }
}

/** A TTL an effect asks the store to keep something for: whole seconds, up to `RULE_LIMITS.maxSeconds`. */
function ttlSeconds(ttl: unknown, what: string): number {
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0 || ttl > RULE_LIMITS.maxSeconds) fail(`${what} ttlSeconds must be 1–${RULE_LIMITS.maxSeconds}`);
  return Math.max(1, Math.round(ttl));
}

function notes(raw: unknown): NoteWrite[] {
  if (!Array.isArray(raw)) fail('notes must be a list');
  return raw.map((n: unknown) => {
    if (!Array.isArray(n) || (n[0] !== 's' && n[0] !== 't') || (n.length !== 2 && n.length !== 3)) fail('a note must be [scope, key, value?]');
    const key = str(n[1], 'note key', RULE_LIMITS.noteKey);
    return n.length === 2 ? [n[0], key] : [n[0], key, n[2] as Json];
  });
}

export function validateEffects(raw: unknown): Effects {
  if (raw === null || typeof raw !== 'object') fail('effects must be an object');
  const o = raw as Record<string, unknown>;
  const fx: Effects = {};
  if (o.headers !== undefined) {
    const list = o.headers as unknown[];
    if (!Array.isArray(list) || list.length > RULE_LIMITS.headers) fail(`at most ${RULE_LIMITS.headers} headers per call`);
    fx.headers = list.map((h) => {
      const [name, value] = h as unknown[];
      return [str(name, 'header name', 76, FIELD_NAME), str(value, `header ${String(name)} value`, RULE_LIMITS.headerValue, HEADER_VALUE)];
    });
  }
  if (o.removeHeaders !== undefined) {
    const list = o.removeHeaders as unknown[];
    if (!Array.isArray(list) || list.length > RULE_LIMITS.headers) fail(`at most ${RULE_LIMITS.headers} header removals per call`);
    fx.removeHeaders = list.map((n) => str(n, 'removed header name', 76, FIELD_NAME));
  }
  if (o.blacklist !== undefined) {
    const b = o.blacklist as Record<string, unknown>;
    fx.blacklist = { ttlSeconds: ttlSeconds(b.ttlSeconds, 'blacklist'), reason: str(b.reason, 'blacklist reason', 200, REPLY_TEXT) };
  }
  if (o.wellBehaved !== undefined) {
    fx.wellBehaved = { ttlSeconds: ttlSeconds((o.wellBehaved as Record<string, unknown>).ttlSeconds, 'markWellBehaved') };
  }
  if (o.delayMs !== undefined) {
    const d = o.delayMs;
    if (typeof d !== 'number' || !Number.isFinite(d) || d < 0) fail('delay must be a non-negative number of milliseconds');
    fx.delayMs = d;
  }
  if (o.logs !== undefined) {
    fx.logs = (o.logs as unknown[]).slice(0, RULE_LIMITS.logs).map((l) => String(l).slice(0, RULE_LIMITS.logLine));
  }
  if (o.notes !== undefined) fx.notes = notes(o.notes);
  if (o.scores !== undefined) {
    const list = o.scores as unknown[];
    if (!Array.isArray(list) || list.length > RULE_LIMITS.scores) fail(`at most ${RULE_LIMITS.scores} scores per call`);
    fx.scores = list.map((x) => {
      const [symbol, points] = x as unknown[];
      if (typeof points !== 'number' || !Number.isFinite(points) || Math.abs(points) > RULE_LIMITS.maxPoints) fail(`score ${String(symbol)}: points must be a number from -${RULE_LIMITS.maxPoints} to ${RULE_LIMITS.maxPoints}`);
      return [str(symbol, 'score symbol', 64, REASON), points];
    });
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
