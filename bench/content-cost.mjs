// The per-message cost of the content rules (issue 15): body and MIME parsing, a regex
// file, header checks, URI extraction (uri-check, once it is in rules/), each on its own against the host with no rules,
// on messages with real content. smtp-source writes a fixed body of `-l` bytes (no
// MIME, no links), so these loads are sent by our own client (clients.mjs sendMessages).
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { sendMessages } from './clients.mjs';
import { measureLoad } from './lib.mjs';

/** A trivial rule that asks for the MIME parse and does nothing with it: what parsing costs. */
const MIME_ONLY = `import { defineRule } from 'portcullis/sdk';
export default defineRule({ name: 'mime-only', needs: ['mime'], phases: { message: () => undefined } });
`;
/** The same asking for the body as text only (content-filter's \`decoded: false\`). */
const BODY_ONLY = `import { defineRule } from 'portcullis/sdk';
export default defineRule({ name: 'body-only', needs: ['body'], phases: { message: () => undefined } });
`;

/**
 * 50 patterns of the kind an admin keeps for content-filter (headers, attachment names,
 * phrases, URLs, HTML tricks), none matching the bench's messages: every one runs over
 * the whole text of every message, which is the cost the list adds.
 */
const PATTERNS = `# content-filter patterns for the bench: one per line, case-insensitive
# headers
^From: .*@(?:[a-z0-9-]+\\.)*(?:xyz|top|click|loan|work)>?$
^Subject: .*\\b(?:viagra|cialis|levitra)\\b
^Subject: .*\\$\\$\\$
^Subject: .*(?:100% free|risk[- ]free|act now)
^X-Mailer: .*(?:mass ?mailer|group mail|dark mailer)
^Content-Type: .*charset="?(?:gb2312|koi8-r|big5)
^To: .*undisclosed[- ]recipients
^Reply-To: .*@(?:mail\\.ru|yandex\\.ru)
^From: Friend@public\\.com
=\\?(?:gb2312|koi8-r|big5)\\?
# attachments
name=".*\\.(?:exe|scr|pif|bat|cmd|com|vbs|js|jse|wsf|hta|cpl|msi|lnk|iso|img)"
name=".*\\.(?:docm|xlsm|pptm)"
name=".*\\.[a-z0-9]{2,4}\\.(?:exe|scr|zip)"
Content-Type: application/(?:x-msdownload|x-dosexec|hta)
# phrases
\\bviagra\\b
\\bcialis\\b
you (?:have )?won
\\bnigerian?\\b.*\\bprince\\b
\\bwire transfer\\b.*\\burgent\\b
\\bclaim your (?:prize|reward|gift)\\b
\\bverify your account\\b
\\bunclaimed (?:funds|inheritance)\\b
\\bbitcoin (?:doubler|investment)\\b
\\bdear (?:beneficiary|friend in christ)\\b
\\bcheap (?:meds|pills|rolex)\\b
\\bweight loss (?:miracle|secret)\\b
\\bcasino bonus\\b
\\bmillion (?:us )?dollars\\b
\\bno credit check\\b
\\blimited time offer\\b
\\bdouble your (?:income|money)\\b
\\bwork from home\\b.*\\$\\d+
\\bincrease your (?:size|performance)\\b
\\breplica watches\\b
\\bhot (?:singles|girls) in your area\\b
\\bforex signals?\\b
\\byour password (?:has expired|will expire)\\b
\\baccount (?:suspended|locked)\\b.*\\bclick\\b
\\bdocument shared with you\\b.*\\bsign in\\b
\\bact now\\b
# URLs and HTML
https?://\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}[/:]
https?://(?:bit\\.ly|tinyurl\\.com|goo\\.gl)/
https?://[^/\\s"]+\\.(?:xyz|top|click|loan|zip|mov)\\b
href="https?://[^"/]*@
<form[^>]+action="https?://
<iframe[^>]+src=
<script[^>]*>[^<]*eval\\(
data:text/html;base64,
(?:&#x?[0-9a-f]+;){6}
font-size:\\s*[01]px
display:\\s*none[^>]*>[^<]{200,}
`;

const LINKS = ['https://www.example.org/news/2026/12/release', 'https://docs.example.org/guide/install', 'https://www.example.org/events?city=paris&year=2026', 'https://shop.example.net/item/4711', 'https://www.example.org/unsubscribe?u=8f3a'];
const PROSE = 'The new release brings a faster queue, clearer logs and a guide for first-time installs. Read on for the details, the dates of the next meetings and where to find us.';
const HEADERS = (subject, type) => `From: Example News <news@example.org>\r\nTo: <rcpt@localhost>\r\nSubject: ${subject}\r\nDate: Tue, 1 Dec 2026 05:00:00 +0000\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: ${type}\r\n\r\n`;

/** Quoted-printable (RFC 2045 §6.7): '=' escaped, lines cut at 76 with soft line breaks, never inside an escape. */
function qp(text) {
  return text.split('\r\n').map((line) => {
    let rest = line.replace(/=/g, '=3D');
    const out = [];
    while (rest.length > 75) {
      const cut = rest[74] === '=' ? 74 : rest[73] === '=' ? 73 : 75;
      out.push(`${rest.slice(0, cut)}=`);
      rest = rest.slice(cut);
    }
    return [...out, rest].join('\r\n');
  }).join('\r\n');
}

/** multipart/alternative: a quoted-printable text part and an HTML part, each with the same 5 links (about 5 KB). */
function alternative() {
  const text = Array.from({ length: 10 }, (_, i) => `${PROSE}\r\nSee ${LINKS[i % LINKS.length]}\r\n`).join('\r\n');
  const html = `<html><body><h1>News</h1>\r\n${Array.from({ length: 10 }, (_, i) => `<p>${PROSE} <a href="${LINKS[i % LINKS.length]}">Read more</a></p>`).join('\r\n')}\r\n</body></html>`;
  return `${HEADERS('Our December news', 'multipart/alternative; boundary="alt-b"')}--alt-b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n${qp(text)}\r\n--alt-b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n${qp(html)}\r\n--alt-b--\r\n`;
}

/** multipart/mixed: a short text part and a 32 KB PDF attachment in base64 (about 45 KB, under the 64 KB bodyLimit). */
function withAttachment() {
  let x = 0x2545f491; // xorshift32: the same bytes every run
  const bytes = Buffer.alloc(32 * 1024, 0).map(() => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x & 0xff; });
  const b64 = bytes.toString('base64').replace(/.{76}/g, '$&\r\n');
  return `${HEADERS('Quarterly report', 'multipart/mixed; boundary="mix-b"')}--mix-b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe report is attached; the figures are at ${LINKS[1]}.\r\n\r\n--mix-b\r\nContent-Type: application/pdf; name="report-q4.pdf"\r\nContent-Disposition: attachment; filename="report-q4.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64}\r\n--mix-b--\r\n`;
}

export const CONTENT_MESSAGES = { 'alternative text + HTML, 5 links, 5 KB': alternative(), 'text + 32 KB PDF, 45 KB': withAttachment() };

/**
 * The variants, one line each: a rule of our own (`source`), or a built-in rule turned on
 * alone (`builtin`, with its `settings`; `files` written beside the config). A built-in
 * rule that this checkout does not have is skipped with a note.
 *
 * content-filter gets the longest deadline there is (`timeoutMs` 10 s; 50 ms by default):
 * 50 patterns over the 45 KB message's raw base64 (decoded: false) take about 100 ms of
 * CPU, and the deadline is the call's wall time, which on a shared machine (load average
 * 15 on 2 cores) ran past 1 s. The fail policy's 451 would stop the load instead of
 * measuring what the list costs. uri-check runs with the options it ships with.
 */
const VARIANTS = [
  { name: "needs ['body'], trivial rule (body as text)", source: BODY_ONLY },
  { name: "needs ['mime'], trivial rule (MIME parse)", source: MIME_ONLY },
  { name: 'content-filter, 50 patterns (decoded)', builtin: 'content-filter', settings: { timeoutMs: 10_000, optionFiles: { patterns: 'patterns.txt' } }, files: { 'patterns.txt': PATTERNS } },
  { name: 'content-filter, 50 patterns, decoded: false', builtin: 'content-filter', settings: { timeoutMs: 10_000, optionFiles: { patterns: 'patterns.txt' }, options: { decoded: false } }, files: { 'patterns.txt': PATTERNS } },
  { name: 'header-conformance', builtin: 'header-conformance', settings: { options: { action: 'tag' } } },
  { name: 'uri-check', builtin: 'uri-check', settings: {} },
];

/**
 * `start({ settings, source, files })` starts a host with the built-in rules under those
 * `rules.settings`, plus the rule `source` if any and `files` beside its config. Returns
 * rows: message, variant, msgs/s, server CPU ms per message, cost against no rules.
 */
export async function contentCost(root, start, { messages, rounds }) {
  const builtins = new Set(readdirSync(join(root, 'rules')).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)));
  const allOff = Object.fromEntries([...builtins].map((n) => [n, { enabled: false }]));
  const notes = [];
  const variants = [{ name: '(no rules)', config: { settings: allOff } }];
  for (const v of VARIANTS) {
    if (v.builtin && !existsSync(join(root, 'rules', `${v.builtin}.ts`))) {
      notes.push(`${v.name}: skipped, rules/${v.builtin}.ts is not in this checkout`);
      continue;
    }
    const settings = v.builtin ? { ...allOff, [v.builtin]: { enabled: true, ...v.settings } } : allOff;
    variants.push({ name: v.name, config: { settings, source: v.source ?? null, files: v.files ?? {} } });
  }
  const rows = [];
  for (const [label, raw] of Object.entries(CONTENT_MESSAGES)) {
    const runs = Object.fromEntries(variants.map((v) => [v.name, []]));
    // Rounds outside, variants inside: a slow spell of the shared machine hits every variant.
    for (let i = 0; i < rounds; i++) {
      for (const v of variants) {
        const r = await measureLoad(() => start(v.config), { raw, messages }, sendMessages).catch((e) => ({ error: e.message.split('\n')[0] }));
        runs[v.name].push(r.error ? r : { rate: r.rate, cpuMs: (r.cores / r.rate) * 1000 });
      }
    }
    const med = (rs, k) => rs.map((r) => r[k]).sort((a, b) => a - b)[Math.floor(rs.length / 2)];
    const off = runs['(no rules)'].filter((r) => !r.error);
    const [offRate, offCpu] = [med(off, 'rate'), med(off, 'cpuMs')];
    for (const v of variants) {
      const ok = runs[v.name].filter((r) => !r.error);
      if (!ok.length) {
        rows.push({ message: label, variant: v.name, 'msgs/s': '', 'server CPU ms/msg': '', 'CPU vs off': '', cost: `failed: ${runs[v.name][0].error.slice(0, 120)}` });
        continue;
      }
      const [rate, cpu] = [med(ok, 'rate'), med(ok, 'cpuMs')];
      rows.push({ message: label, variant: v.name, 'msgs/s': Math.round(rate), 'server CPU ms/msg': cpu.toFixed(2),
        'CPU vs off': v.name === '(no rules)' ? '' : `${(cpu / offCpu).toFixed(2)}×`, cost: v.name === '(no rules)' ? '' : `${Math.round((1 - rate / offRate) * 100)} %` });
    }
  }
  return { rows, notes };
}
