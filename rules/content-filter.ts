/**
 * content-filter — Obtuse smtpd Spammer Deterrent's content filter: an admin's list of
 * case-insensitive regular expressions, and the first that matches refuses the message.
 *
 * Keep them in a plain file, one per line, `#` comments and blank lines skipped, reloaded
 * when it changes: config `rules.settings.content-filter.optionFiles: { "patterns": "content-filter.txt" }`.
 *
 *   # ban friend@public emails
 *   ^From: Friend@public\.com
 *   # ban any emails with VisualBasic Script attachments
 *   name\=".*\.vbs"
 *
 * The text matched, capped at `limits.bodyLimit`: every header field as `Name: value`
 * (unfolded, encoded-words decoded), then with `decoded` (the default) each attachment
 * as the two header lines a mail client writes for it (`Content-Type: <type>;
 * name="<file>"`, `Content-Disposition: attachment; filename="<file>"`, the name decoded
 * from RFC 2231 or 2047 so an encoded one hides nothing) and the text and HTML parts
 * transfer-decoded; with `decoded: false`, the body as received (Spammer Deterrent's
 * way: base64 hides words, and its payload lines are scanned too). Patterns are
 * JavaScript regular expressions with the `i` and `m` flags: `^` and `$` are line
 * anchors, `.` stops at a line end. Each costs about 2 ms per 64 KB of text in the
 * sandbox here: a long list over large messages wants more than the default deadline
 * (`rules.settings.content-filter.timeoutMs`).
 *
 * A match answers the final dot with 554 5.7.1 and logs the pattern and its line. 554:
 * the transaction failed (RFC 5321 §4.2.2), and after a 5yz at the final dot the message
 * stays the sender's (§4.2.5): refused in the session, never accepted then deleted; 552
 * is a storage allocation, i.e. size, answer. X.7.1: refused by the site's policy (RFC
 * 3463 §3.8). A pattern that is not a regular expression stops the load (`portcullis
 * check`, a reload keeps the last good rules) with its file and line. Patterns run within
 * the rule's deadline: one that backtracks without end (`(a+)+$`) times out, and its fail
 * policy answers that message alone. Authenticated clients are filtered too (smtpf's
 * content filtering guards a site from its own infected users); ships off, and does
 * nothing without patterns.
 */
import { defineRule, reject, STATUS, type RuleContext } from 'portcullis/sdk';

interface Pattern {
  re: RegExp;
  source: string;
  /** Where the admin wrote it: `line 3`, or `patterns[2]` when not read from a file. */
  at: string;
}

let compiled: { from: readonly string[]; patterns: Pattern[] } | null = null;

/** The patterns, compiled once per options (frozen per rule load); one this engine refuses is logged and skipped. */
function patternsOf(ctx: RuleContext<{ patterns: string[] }>): Pattern[] {
  const list = ctx.options.patterns;
  if (compiled?.from === list) return compiled.patterns;
  const patterns: Pattern[] = [];
  list.forEach((source, i) => {
    const line = ctx.optionLine('patterns', i);
    const at = line === null ? `patterns[${i}]` : `line ${line}`;
    try {
      patterns.push({ re: new RegExp(source, 'im'), source, at });
    } catch (e) {
      ctx.log(`skipping the pattern at ${at}: ${(e as Error).message}`);
    }
  });
  compiled = { from: list, patterns };
  return patterns;
}

export default defineRule({
  name: 'content-filter',
  description: 'Refuses messages matching an admin\'s regular expressions (headers and body)',
  priority: 125,
  enabled: false,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      patterns: {
        type: 'array', items: { type: 'string', minLength: 1, format: 'regex' }, default: [],
        description: 'Case-insensitive regular expressions (JavaScript, flags i and m), one per line of the optionFiles file; the first that matches refuses the message.',
      },
      decoded: { type: 'boolean', default: true, description: 'Match the attachments\' names and the decoded text and HTML parts (the MIME parse, on the main thread); false: the body as received.' },
    },
  },
  needs: (o) => (o.patterns.length ? [o.decoded ? 'mime' : 'body'] : []),
  phases: {
    message: (ev, ctx) => {
      const patterns = patternsOf(ctx);
      if (!patterns.length) return;
      const { headers, body, mime } = ev.message;
      const attachments = (mime?.attachments ?? []).map((a) => `Content-Type: ${a.contentType}; name="${a.filename ?? ''}"\nContent-Disposition: attachment; filename="${a.filename ?? ''}"`);
      const text = [...headers.map(([n, v]) => `${n}: ${v}`), ...attachments, mime ? `${mime.text}\n${mime.html}` : body ?? ''].join('\n');
      const hit = patterns.find((p) => p.re.test(text));
      if (!hit) return;
      ctx.log(`the message matches the pattern at ${hit.at}: ${hit.source}`);
      return reject(554, 'Message refused: its content is not accepted here', { status: STATUS.notAuthorized, reason: 'content-filter' });
    },
  },
});
