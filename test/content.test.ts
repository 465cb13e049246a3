/**
 * The content rules over real SMTP: header conformance's reply, the content filter from a
 * plain file (its reply, its log line, an edit taking effect), a catastrophic pattern that
 * costs one message its verdict and nothing else, and MIME facts reaching a rule.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { eventually, mailer, RawSmtp, scratchDirs, withHost } from './helpers.js';

const tempDir = scratchDirs();
const FAIL = /^451 4\.3\.0 Temporary local problem, please try again later \(session [a-z0-9]+\)$/;

/** One message from `ip` on a raw connection; returns the reply to its final dot (or the first refusal before it). */
async function send(port: number, ip: string, message: string): Promise<string> {
  const { c } = await RawSmtp.open(port, ip);
  try {
    await c.cmd('EHLO mx.example.net');
    await c.cmd('MAIL FROM:<a@example.net>');
    await c.cmd('RCPT TO:<user@localhost>');
    const data = await c.cmd('DATA');
    if (!data.startsWith('354')) return data;
    return await c.cmd(`${message.replace(/\r?\n/g, '\r\n')}\r\n.`, 10_000);
  } finally {
    c.end();
  }
}

const DATED = 'From: a@example.net\nDate: Tue, 1 Dec 2026 10:00:00 +0000\nMessage-ID: <1@example.net>\nSubject: hi\n\n';

it('header-conformance: a message without Message-ID gets 554 5.6.0 at the final dot; a mail client\'s message goes through', async () => {
  await withHost({ builtin: true, config: { rules: { settings: { 'header-conformance': { enabled: true } } } } }, async (h) => {
    assert.equal(await send(h.port, '127.0.0.81', 'From: a@example.net\nDate: Tue, 1 Dec 2026 10:00:00 +0000\nSubject: hi\n\nhello'),
      '554 5.6.0 Message refused: its header does not conform to RFC 5322 (no Message-ID)');
    const transport = mailer(h.port);
    try {
      const info = await transport.sendMail({ from: 'a@example.net', to: 'user@localhost', subject: 'hi', text: 'hello' });
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as /);
    } finally {
      transport.close();
    }
  });
});

it('content-filter from a file: the first match gets 554 5.7.1, the log names the pattern and its line, and an edit takes effect without a restart', async () => {
  const file = join(tempDir(), 'content-filter.txt');
  writeFileSync(file, '# ban friend@public emails\nFrom: Friend@public.com\n');
  const config = { rules: { settings: { 'content-filter': { enabled: true, optionFiles: { patterns: file } } } } };
  await withHost({ builtin: true, watch: true, config }, async (h) => {
    assert.equal(await send(h.port, '127.0.0.82', 'From: Friend@public.com\nSubject: hi\n\nhello'), '554 5.7.1 Message refused: its content is not accepted here');
    const line = h.logs.find((l) => l.rule === 'content-filter' && l.ruleLog);
    assert.equal(line?.msg, 'the message matches the pattern at line 2: From: Friend@public.com');
    assert.match(await send(h.port, '127.0.0.83', `${DATED}Cheap Microsoft licences`), /^250 /);
    writeFileSync(file, '# ban friend@public emails\nFrom: Friend@public.com\n\n# no software offers\n\\bmicrosoft\\b\n');
    await eventually('the edited filter is in force', async () => (await send(h.port, '127.0.0.83', `${DATED}Cheap Microsoft licences`)).startsWith('554 '));
    assert.ok(h.logs.some((l) => l.ruleLog && l.msg === 'the message matches the pattern at line 5: \\bmicrosoft\\b'));
  });
});

it('content-filter: a catastrophic pattern times out on one message (the fail policy answers it) and the next client is served normally', async () => {
  const config = { rules: { settings: { 'content-filter': { enabled: true, options: { patterns: ['(a+)+$'] } } } } };
  await withHost({ builtin: true, config }, async (h) => {
    assert.match(await send(h.port, '127.0.0.84', `${DATED}${'a'.repeat(40)}!`), FAIL);
    const failure = h.logs.find((l) => l.rule === 'content-filter' && l.outcome !== undefined);
    assert.equal(failure?.outcome, 'timeout');
    assert.match(await send(h.port, '127.0.0.85', `${DATED}hello`), /^250 2\.0\.0 Ok: queued as /);
  });
});

it('MIME facts reach a rule over SMTP: an attachment name from a mail client refuses the message', async () => {
  const rule = `import { defineRule, reject } from 'portcullis/sdk';
export default defineRule({ name: 'no-exe', needs: ['mime'], phases: { message: (ev) => {
  const exe = ev.message.mime?.attachments.find((a) => /\\.exe$/i.test(a.filename ?? ''));
  if (exe) return reject(552, 'Executable attachments are not accepted: ' + exe.filename, { status: '7.1' });
} } });
`;
  await withHost({ rules: { 'no-exe.ts': rule } }, async (h) => {
    const transport = mailer(h.port);
    try {
      const attachments = [{ filename: 'setup.exe', content: Buffer.alloc(2000, 7) }];
      await assert.rejects(transport.sendMail({ from: 'a@example.net', to: 'user@localhost', text: 'run me', attachments }), (e: Error & { response?: string }) => {
        assert.equal(e.response, '552 5.7.1 Executable attachments are not accepted: setup.exe');
        return true;
      });
      const ok = await transport.sendMail({ from: 'a@example.net', to: 'user@localhost', text: 'a report', attachments: [{ filename: 'report.pdf', content: 'pdf' }] });
      assert.match(ok.response, /^250 /);
    } finally {
      transport.close();
    }
  });
});
