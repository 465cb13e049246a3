/**
 * Our Authentication-Results header field (RFC 8601): what SPF, DKIM, DMARC and ARC gave
 * for an accepted message, under our host name as authserv-id, and the removal of
 * incoming fields that claim that id (§5: a sender could forge our verdicts).
 */
import type { ArcAnswer, DkimSignature, DmarcAnswer, SpfAnswer } from '../../sdk/index.js';
import { bodyOffset } from './header.js';

/** The results the session has for a message; absent = not checked (no rule needed it). */
/** The field the host adds with what SPF, DKIM, DMARC and ARC gave (RFC 8601). */
export const AUTH_RESULTS_FIELD = 'Authentication-Results';

export interface AuthFacts {
  spf?: SpfAnswer | null;
  dkim?: DkimSignature[];
  dmarc?: DmarcAnswer;
  arc?: ArcAnswer;
}

/** A comment (RFC 5322 §3.2.2) safe to write: no parentheses, backslashes or controls. */
const comment = (s: string | null): string => (s ? ` (${s.replace(/[()\\\x00-\x1f\x7f]/g, ' ').trim()})` : '');

/**
 * The field's value, e.g. `mx.example; spf=pass smtp.mailfrom=a.example; dkim=pass
 * header.d=a.example header.s=sel; dmarc=pass (p=reject) header.from=a.example`
 * (RFC 8601 §2.2, property names from §2.7); null when nothing was checked.
 */
export function authResultsValue(authservId: string, f: AuthFacts): string | null {
  const parts: string[] = [];
  if (f.spf) parts.push(`spf=${f.spf.result} ${f.spf.identity === 'helo' ? 'smtp.helo' : 'smtp.mailfrom'}=${f.spf.domain || 'unknown'}`);
  if (f.dkim) {
    if (!f.dkim.length) parts.push('dkim=none');
    for (const s of f.dkim) parts.push(`dkim=${s.result}${s.result === 'pass' ? '' : comment(s.comment)} header.d=${s.domain} header.s=${s.selector}`);
  }
  if (f.dmarc) parts.push(`dmarc=${f.dmarc.result}${f.dmarc.result === 'pass' || f.dmarc.result === 'fail' ? ` (p=${f.dmarc.policy})` : ''}${f.dmarc.domain ? ` header.from=${f.dmarc.domain}` : ''}`);
  if (f.arc) parts.push(`arc=${f.arc.result}${f.arc.instances ? ` (i=${f.arc.instances})` : ''}`);
  return parts.length ? `${authservId}; ${parts.join('; ')}` : null;
}

/** The authserv-id an Authentication-Results value names: its first word, comments aside (§2.2). */
const authservOf = (value: string): string => value.replace(/\([^)]*\)/g, ' ').trim().split(/[\s;]+/)[0]?.toLowerCase() ?? '';

/**
 * `msg` without the Authentication-Results fields that claim `authservId` (RFC 8601 §5:
 * an MTA MUST remove or rename such fields arriving from outside, else a sender could
 * forge our results); `msg` itself when there are none.
 */
export function withoutForgedAuthResults(msg: Buffer, authservId: string): Buffer {
  const offset = bodyOffset(msg);
  const head = msg.subarray(0, offset).toString('latin1'); // byte for byte, whatever the charset
  if (!/(^|\n)authentication-results[ \t]*:/i.test(head)) return msg;
  const id = authservId.toLowerCase();
  // Each field: its first line and the continuation lines (starting with a space or tab, RFC 5322 §2.2.3).
  const fields = head.match(/[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*/g) ?? [];
  const kept = fields.filter((f) => {
    const m = /^authentication-results[ \t]*:([\s\S]*)$/i.exec(f);
    return !m || authservOf(m[1]!) !== id;
  });
  if (kept.length === fields.length) return msg;
  return Buffer.concat([Buffer.from(kept.join(''), 'latin1'), msg.subarray(offset)]);
}
