/**
 * content-filter through the public harness: patterns from a file with their line
 * numbers, what text they see (headers, the body as received, decoded parts), and a
 * pattern that is not one refused at load with its line.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadRule, type Harness } from '../host/testing/harness.js';

const RULE = 'rules/content-filter.ts';
let dir = '';
before(() => (dir = mkdtempSync(join(tmpdir(), 'portcullis-content-'))));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The seed's filter file (Spammer Deterrent), with a pattern for a word in the body. */
const FILTER = `# ban friend@public emails
From: Friend@public.com
To: Friend@public.com

# ban the snowwhite virus
From: hahaha@sexyfun.net
# ban any emails with VisualBasic Script attachments
name\\=".*\\.vbs"
\\bmicrosoft\\b
`;

function withFile(text: string): string {
  const file = join(dir, `filter-${Math.random().toString(36).slice(2)}.txt`);
  writeFileSync(file, text);
  return file;
}

async function send(h: Harness, message: string) {
  const s = await h.connect({ ip: '192.0.2.70', helo: 'mx.example.net' });
  await s.mail('a@example.net');
  await s.rcpt('user@localhost');
  return s.message(message);
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const base64Body = (text: string) => `From: a@example.net\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n${b64(text)}\n`;

describe('content-filter', () => {
  it('refuses the first match with 554 5.7.1 and logs the pattern with its line in the file', async () => {
    await using h = await loadRule(RULE, { settings: { optionFiles: { patterns: withFile(FILTER) } } });
    const m = await send(h, 'From: friend@PUBLIC.com\nSubject: hi\n\nhello\n');
    assert.deepEqual([m.reply, m.rule, m.logs], ['554 5.7.1 Message refused: its content is not accepted here', 'content-filter', ['the message matches the pattern at line 2: From: Friend@public.com']]);
    const vbs = `From: a@example.net\nContent-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: application/octet-stream; name="LOVE-LETTER.TXT.vbs"\n\nx\n--b--\n`;
    assert.deepEqual((await send(h, vbs)).logs, ['the message matches the pattern at line 8: name\\=".*\\.vbs"']);
    // The name as a mail client encodes it (RFC 2047) is matched decoded.
    const encoded = vbs.replace('name="LOVE-LETTER.TXT.vbs"', `name="=?utf-8?B?${b64('LÖVE-LETTER.vbs')}?="`);
    assert.deepEqual((await send(h, encoded)).logs, ['the message matches the pattern at line 8: name\\=".*\\.vbs"']);
    assert.equal((await send(h, 'From: a@example.net\nSubject: hi\n\nhello\n')).reply, null);
  });

  it('sees the decoded text of a base64 part; with decoded false, the body as received', async () => {
    const file = withFile(FILTER);
    await using h = await loadRule(RULE, { settings: { optionFiles: { patterns: file } } });
    assert.equal((await send(h, base64Body('Buy Microsoft licences cheap'))).reply, '554 5.7.1 Message refused: its content is not accepted here');
    await using raw = await loadRule(RULE, { settings: { optionFiles: { patterns: file } }, options: { decoded: false } });
    assert.equal((await send(raw, base64Body('Buy Microsoft licences cheap'))).reply, null);
    assert.equal((await send(raw, 'From: a@example.net\n\nBuy Microsoft licences cheap\n')).reply, '554 5.7.1 Message refused: its content is not accepted here');
    assert.deepEqual([h.ruleSet.needsMime, h.ruleSet.needsBody, raw.ruleSet.needsMime, raw.ruleSet.needsBody], [true, false, false, true]);
  });

  it('patterns given in the options are named by their place in the list', async () => {
    await using h = await loadRule(RULE, { options: { patterns: ['viagra', '^Subject: .*lottery'] } });
    assert.deepEqual((await send(h, 'From: a@example.net\nSubject: You won the LOTTERY\n\nhello\n')).logs, ['the message matches the pattern at patterns[1]: ^Subject: .*lottery']);
  });

  it('with no patterns it asks for nothing: no body, no MIME parse', async () => {
    await using h = await loadRule(RULE);
    assert.deepEqual([h.ruleSet.needsBody, h.ruleSet.needsMime], [false, false]);
  });

  it('a line that is not a regular expression stops the load, naming the file and line', async () => {
    const file = withFile('# fine\nviagra\n\n(unclosed\n');
    await assert.rejects(loadRule(RULE, { settings: { optionFiles: { patterns: file } } }), (e: Error) => {
      assert.match(e.message, new RegExp(`/rules/settings/content-filter/optionFiles/patterns: ${file} line 4: "\\(unclosed": Invalid regular expression: /\\(unclosed/i: Unterminated group`));
      return true;
    });
    await assert.rejects(loadRule(RULE, { options: { patterns: ['[z-a]'] } }), /\/rules\/settings\/content-filter\/options\/patterns\/0: Invalid regular expression: \/\[z-a\]\/i: Range out of order in character class/);
  });
});
