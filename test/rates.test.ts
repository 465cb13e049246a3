/**
 * Issue 14's rate controls and tarpit over real SMTP: each rule turned on in the config
 * (they ship off) with the built-in rules around it, the exact reply line a client gets.
 * Every client comes from its own 127.0.0.x address, so one test's counts never reach
 * another's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually, RawSmtp, startTestHost, withHost, type TestHost } from './helpers.js';

const BASE = { localDomains: ['localhost', 'example.net'], mailboxes: ['alice@localhost', 'bob@localhost', 'carol@localhost'] };
/** Settings turning `name` on with these options; loopback has no reverse DNS here. */
const on = (settings: Record<string, Record<string, unknown>>) => ({
  ...BASE,
  rules: { settings: { 'invalid-recipient': { options: { noPtrIsSign: false } }, ...Object.fromEntries(Object.entries(settings).map(([k, o]) => [k, { enabled: true, options: o }])) } },
});

async function client(port: number, from: string, helo = 'mx.example.org'): Promise<RawSmtp> {
  const { c, greeting } = await RawSmtp.open(port, from);
  assert.match(greeting, /^220 /);
  assert.match(await c.cmd(`EHLO ${helo}`), /^250/);
  return c;
}

describe('require-size over SMTP', () => {
  let t: TestHost;
  before(async () => { t = await startTestHost({ builtin: true, config: on({ 'require-size': {} }) }); });
  after(() => t.close());

  it('MAIL FROM without SIZE gets 550 5.7.1; with SIZE it goes on', async () => {
    const c = await client(t.port, '127.0.0.11');
    assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '550 5.7.1 Message size must be declared: use ESMTP MAIL FROM with SIZE= (RFC 1870)');
    assert.equal(await c.cmd('MAIL FROM:<a@example.org> SIZE=1000'), '250 2.1.0 Accepted');
    assert.equal(await c.cmd('RCPT TO:<alice@localhost>'), '250 2.1.5 Accepted');
    c.end();
  });

  it('is off by default', async () => {
    await withHost({ builtin: true, config: BASE }, async (h) => {
      const c = await client(h.port, '127.0.0.12');
      assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '250 2.1.0 Accepted');
      c.end();
    });
  });
});

describe('null-sender-rate over SMTP', () => {
  it('the second bounce to a recipient within the window gets 550 5.7.1', async () => {
    await withHost({ builtin: true, config: on({ 'null-sender-rate': { maxPerRecipient: 1 } }) }, async (h) => {
      const c = await client(h.port, '127.0.0.21');
      assert.equal(await c.cmd('MAIL FROM:<>'), '250 2.1.0 Accepted');
      assert.equal(await c.cmd('RCPT TO:<alice@localhost>'), '250 2.1.5 Accepted');
      assert.match(await c.cmd('DATA'), /^354 /);
      assert.match(await c.cmd('Subject: bounce\r\nDate: Mon, 05 Jan 2026 10:00:00 +0000\r\n\r\nreturned\r\n.'), /^250 2\.0\.0 Ok: queued as /);
      c.end();
      const d = await client(h.port, '127.0.0.22');
      assert.equal(await d.cmd('MAIL FROM:<>'), '250 2.1.0 Accepted');
      assert.equal(await d.cmd('RCPT TO:<alice@localhost>'), '550 5.7.1 Too many bounces (null sender) for alice@localhost');
      assert.equal(await d.cmd('RCPT TO:<bob@localhost>'), '250 2.1.5 Accepted');
      d.end();
    });
  });
});

describe('connection-rate over SMTP', () => {
  it('the third connection within the window is greeted 421 4.7.0 and closed; another client is not', async () => {
    await withHost({ builtin: true, config: on({ 'connection-rate': { maxConnections: 2 }, 'connect-flood': { watchlistCount: 1000 } }) }, async (h) => {
      for (let i = 0; i < 2; i++) (await client(h.port, '127.0.0.31')).end();
      const { c, greeting } = await RawSmtp.open(h.port, '127.0.0.31');
      assert.equal(greeting, '421 4.7.0 Too many connections from 127.0.0.31; try again later');
      assert.equal(await c.waitClosed(), true);
      const d = await client(h.port, '127.0.0.32');
      assert.equal(await d.cmd('MAIL FROM:<a@example.org>'), '250 2.1.0 Accepted');
      d.end();
    });
  });
});

describe('rcpt-failures over SMTP', () => {
  it('after 3 refused RCPTs (unknown mailbox, relay) the next RCPT gets 421 4.7.0 and the connection closes', async () => {
    // Loopback is a relay client by default: here it is a stranger, so relay control refuses foreign recipients.
    await withHost({ builtin: true, config: { ...on({ 'rcpt-failures': { maxRefused: 3 } }), relayNetworks: [] } }, async (h) => {
      const c = await client(h.port, '127.0.0.41');
      assert.equal(await c.cmd('MAIL FROM:<>'), '250 2.1.0 Accepted');
      assert.equal(await c.cmd('RCPT TO:<nobody@localhost>'), '550 5.1.1 No such user here: nobody@localhost');
      assert.equal(await c.cmd('RCPT TO:<someone@example.com>'), '554 5.7.1 Relaying denied');
      assert.equal(await c.cmd('RSET'), '250 2.0.0 Flushed');
      assert.equal(await c.cmd('MAIL FROM:<>'), '250 2.1.0 Accepted');
      assert.equal(await c.cmd('RCPT TO:<nobody2@localhost>'), '550 5.1.1 No such user here: nobody2@localhost');
      assert.equal(await c.cmd('RCPT TO:<alice@localhost>'), '421 4.7.0 Too many refused recipients');
      assert.equal(await c.waitClosed(), true);
      const d = await client(h.port, '127.0.0.42');
      assert.equal(await d.cmd('MAIL FROM:<>'), '250 2.1.0 Accepted');
      assert.equal(await d.cmd('RCPT TO:<alice@localhost>'), '250 2.1.5 Accepted');
      d.end();
    });
  });
});

describe('tarpit over SMTP', () => {
  it('a RCPT past the limit waits delayMs while another client\'s replies stay fast', async () => {
    await withHost({ builtin: true, config: on({ tarpit: { afterRecipients: 1, delayMs: 3000, multiplier: 1 } }) }, async (h) => {
      const a = await client(h.port, '127.0.0.51');
      assert.equal(await a.cmd('MAIL FROM:<a@example.org>'), '250 2.1.0 Accepted');
      assert.equal(await a.cmd('RCPT TO:<alice@localhost>'), '250 2.1.5 Accepted');
      const sent = Date.now();
      a.write('RCPT TO:<bob@localhost>\r\n');
      const slow = a.reply(10_000).then((r) => ({ r, ms: Date.now() - sent }));
      // The tarpitted reply is being held once the rule asked for it.
      await eventually('tarpit asked', () => h.logs.some((l) => l.rule === 'tarpit' && /waits 3000 ms/.test(String(l.msg))));
      const b = await client(h.port, '127.0.0.52');
      const t0 = Date.now();
      assert.equal(await b.cmd('MAIL FROM:<b@example.org>'), '250 2.1.0 Accepted');
      assert.equal(await b.cmd('RCPT TO:<alice@localhost>'), '250 2.1.5 Accepted');
      assert.ok(Date.now() - t0 < 1500, `the other client waited ${Date.now() - t0} ms`);
      b.end();
      const { r, ms } = await slow;
      assert.equal(r, '250 2.1.5 Accepted');
      assert.ok(ms >= 2900, `the tarpitted reply came after ${ms} ms`);
      a.end();
    });
  });
});

describe('concurrent-connections over SMTP', () => {
  it('a third simultaneous connection is greeted 421 4.7.0 and closed; after one ends, a new one is let in', async () => {
    await withHost({ builtin: true, config: on({ 'concurrent-connections': { maxSessions: 2 } }) }, async (h) => {
      const a = await client(h.port, '127.0.0.61');
      const b = await client(h.port, '127.0.0.61');
      const { c, greeting } = await RawSmtp.open(h.port, '127.0.0.61');
      assert.equal(greeting, '421 4.7.0 Too many concurrent connections from 127.0.0.61; try again later');
      assert.equal(await c.waitClosed(), true);
      const other = await client(h.port, '127.0.0.62');
      other.end();
      assert.equal(await a.cmd('QUIT'), '221 2.0.0 Bye');
      assert.equal(await a.waitClosed(), true);
      await eventually('the session ended', () => h.logs.filter((l) => /^disconnect from \[127\.0\.0\.61\]/.test(String(l.msg))).length >= 2);
      const d = await client(h.port, '127.0.0.61');
      assert.equal(await d.cmd('MAIL FROM:<a@example.org>'), '250 2.1.0 Accepted');
      d.end();
      b.end();
    });
  });
});
