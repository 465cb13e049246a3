/**
 * The message at the end of data: as rules see it (header fields parsed with mailsplit,
 * the MIME splitter of the nodemailer family; size; the capped body, MIME parts, links
 * and spamd's verdict when a rule needs them), and as it goes on once accepted (the
 * headers rules and the host add, the fields removed).
 */
import Headers from 'mailsplit/lib/headers.js';
import type { MessageEvent, SpamdFact } from '../../sdk/index.js';
import type { Config } from '../config/config.js';
import type { SpamdClient } from '../content/spamd.js';
import { AUTH_RESULTS_FIELD, authResultsValue, withoutForgedAuthResults, type AuthFacts } from '../delivery/auth-results.js';
import { bodyOffset, withoutFields } from '../delivery/header.js';
import type { RuleSet } from '../pipeline/ruleset.js';
import { mimeFacts } from './mime.js';
import { scoreHeader, type Symbols } from './score.js';
import { uriFacts } from './uris.js';

/**
 * The message phase's `message`: only what the rule set's needs ask for (the body, the
 * MIME parse, the links, spamd), each at most `limits.bodyLimit`. `size`: a replayed
 * message recorded without its body says its size.
 */
export async function messageFacts(msg: Buffer, o: { ruleSet: RuleSet; bodyLimit: number; size?: number | undefined; spamd: Pick<SpamdClient, 'check'> | null | undefined; exempt: boolean }): Promise<MessageEvent['message']> {
  const { ruleSet: rs, bodyLimit: limit } = o;
  const offset = bodyOffset(msg);
  const body = msg.subarray(offset);
  const mime = rs.needsMime || rs.needsUris ? await mimeFacts(msg, offset, limit) : null;
  const spamd = async (): Promise<SpamdFact> => (o.spamd ? o.spamd.check(msg) : { error: 'spamd is not configured (config spamd)' });
  return {
    headers: parseHeaders(msg, offset),
    size: o.size ?? msg.length,
    body: rs.needsBody ? body.subarray(0, limit).toString('utf8') : null,
    bodyTruncated: rs.needsBody && body.length > limit,
    mime: rs.needsMime ? mime : null,
    ...(mime && rs.needsUris ? { uris: uriFacts(mime) } : {}),
    ...(rs.needsSpamd && !o.exempt ? { spamd: await spamd() } : {}),
  };
}

/**
 * An accepted message as it goes on: the headers to add (the rules', the score's, our
 * Authentication-Results, RFC 8601), and the message less forged Authentication-Results
 * fields under our name (RFC 8601 §5) and the fields rules removed.
 */
export function acceptedMessage(msg: Buffer, o: { added: [string, string][]; symbols: Symbols; scores: Config['scores']; hostname: string; auth: AuthFacts; removeHeaders: string[] }): { headers: [string, string][]; message: Buffer; removeHeaders: string[] } {
  const headers = [...o.added];
  const score = scoreHeader(o.symbols, o.scores);
  if (score) headers.push(score);
  const ar = authResultsValue(o.hostname, o.auth);
  if (ar) headers.push([AUTH_RESULTS_FIELD, ar]);
  const removeHeaders = [...new Set(o.removeHeaders)];
  return { headers, message: withoutFields(withoutForgedAuthResults(msg, o.hostname), removeHeaders), removeHeaders };
}


/** `[name as written, unfolded value with encoded-words decoded]` for each field, in order. */
export function parseHeaders(msg: Buffer, offset: number): [string, string][] {
  const h = new Headers(msg.subarray(0, offset));
  return h.getList().map(({ line }) => {
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).trim() : line.trim();
    let value: string;
    try {
      // decodeHeader unfolds; decodeWords turns RFC 2047 encoded-words into text.
      value = h.libmime.decodeWords(h.libmime.decodeHeader(line).value);
    } catch {
      value = line.slice(colon + 1);
    }
    return [name, value.replace(/\r?\n[ \t]*/g, ' ').trim()];
  });
}
