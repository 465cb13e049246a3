/**
 * One log line per transaction (issue 16, Postfix-style): what an admin greps for when a
 * sender asks "what happened to my mail?". Over real SMTP, reading the host's log records.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { eventually, RawSmtp, rule, withHost, type TestHost } from './helpers.js';

const RULES = {
  'r.ts': rule('picky', `{
    rcpt: (ev) => ev.rcpt.address.startsWith('nobody@') ? reject(550, 'No such user here', { status: '1.1' }) : next(),
    message: (ev) => ev.message.headers.some(([n, v]) => n.toLowerCase() === 'subject' && v.includes('viagra')) ? reject(554, 'Looks like spam') : next(),
  }`),
};

/** The transaction lines logged so far. */
const txLines = (h: TestHost) => h.logs.filter((l) => typeof l.tx === 'string');

/** The n-th transaction line: written before the reply that ends the transaction goes out (at close, just after). */
async function lineNo(h: TestHost, n: number): Promise<Record<string, unknown>> {
  await eventually(`transaction line ${n}`, () => txLines(h).length >= n);
  return txLines(h)[n - 1]!;
}

async function send(c: RawSmtp, subject: string): Promise<string> {
  await c.cmd('DATA');
  return c.cmd(`Subject: ${subject}\r\n\r\nhello\r\n.`);
}

describe('transaction log line', () => {
  it('an accepted message: sender, recipients with their replies, size, client, HELO and the queue id', async () => {
    await withHost({ rules: RULES }, async (h) => {
      const { c } = await RawSmtp.open(h.port, '127.0.0.21');
      await c.cmd('EHLO mx.example.org');
      await c.cmd('MAIL FROM:<a@example.org>');
      assert.equal(await c.cmd('RCPT TO:<nobody@localhost>'), '550 5.1.1 No such user here');
      await c.cmd('RCPT TO:<user@localhost>');
      const final = await send(c, 'hi');
      const line = await lineNo(h, 1);
      assert.equal(line.msg, `tx accepted: from=<a@example.org> to=<nobody@localhost>(550 5.1.1 No such user here rule picky),<user@localhost> size=22 client=unknown[127.0.0.21] helo=mx.example.org: ${final}`);
      assert.match(final, /^250 2\.0\.0 Ok: queued as \w+$/);
      assert.deepEqual(Object.keys(line.ms as object).sort(), ['data', 'mail', 'message', 'rcpt']);
      c.end();
    });
  });

  it('a message a rule refuses at the end of data names the rule', async () => {
    await withHost({ rules: RULES }, async (h) => {
      const { c } = await RawSmtp.open(h.port, '127.0.0.22');
      await c.cmd('HELO spammer');
      await c.cmd('MAIL FROM:<x@spam.example>');
      await c.cmd('RCPT TO:<user@localhost>');
      assert.equal(await send(c, 'cheap viagra'), '554 5.7.1 Looks like spam');
      const line = await lineNo(h, 1);
      assert.equal(line.msg, 'tx refused: from=<x@spam.example> to=<user@localhost> size=32 client=unknown[127.0.0.22] helo=spammer: 554 5.7.1 Looks like spam (rule picky)');
      assert.equal(line.rule, 'picky');
      c.end();
    });
  });

  it('a transaction left without DATA (every recipient refused, then RSET) gets its line too', async () => {
    await withHost({ rules: RULES }, async (h) => {
      const { c } = await RawSmtp.open(h.port, '127.0.0.23');
      await c.cmd('EHLO harvester.example');
      await c.cmd('MAIL FROM:<h@harvester.example>');
      await c.cmd('RCPT TO:<nobody@localhost>');
      await c.cmd('RCPT TO:<nobody@localhost>');
      await c.cmd('RSET');
      const line = await lineNo(h, 1);
      assert.equal(line.msg, 'tx abandoned: from=<h@harvester.example> to=<nobody@localhost>(550 5.1.1 No such user here rule picky),<nobody@localhost>(550 5.1.1 No such user here rule picky) client=unknown[127.0.0.23] helo=harvester.example: no DATA (RSET)');
      c.end();
    });
  });

  it('a connection that closes in the middle of a transaction ends it with a line', async () => {
    await withHost({ rules: RULES }, async (h) => {
      const { c } = await RawSmtp.open(h.port, '127.0.0.24');
      await c.cmd('EHLO mx.example.org');
      await c.cmd('MAIL FROM:<a@example.org>');
      await c.cmd('QUIT');
      const line = await lineNo(h, 1);
      assert.equal(line.msg, 'tx abandoned: from=<a@example.org> client=unknown[127.0.0.24] helo=mx.example.org: no DATA (connection closed)');
    });
  });
});
