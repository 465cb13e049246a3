/**
 * Greylisting over real SMTP: the built-in rule ships off, the config turns it on, and a
 * real client's retry passes once the retry window has gone by (1 s here); from then on
 * the client is well-behaved: no greet pause, no tarpit.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { RawSmtp, spooled, withHost } from './helpers.js';

/** One attempt from `ip`: the RCPT reply; when it is 250 the message goes too. */
async function attempt(port: number, ip: string): Promise<string> {
  const { c } = await RawSmtp.open(port, ip);
  try {
    await c.cmd('EHLO mx.example.net');
    await c.cmd('MAIL FROM:<news@example.net>');
    const reply = await c.cmd('RCPT TO:<user@localhost>');
    if (reply.startsWith('250')) {
      assert.match(await c.cmd('DATA'), /^354 /);
      assert.match(await c.cmd('From: news@example.net\r\nSubject: retried\r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\n\r\nhello\r\n.'), /^250 /);
    }
    return reply;
  } finally {
    c.end();
  }
}

it('greylisting: off by default; turned on, a first attempt gets 421 4.7.1 (the connection closes) and the retry after the window passes', async () => {
  await withHost({ builtin: true }, async (h) => {
    assert.equal(await attempt(h.port, '127.0.0.31'), '250 2.1.5 Accepted', 'ships off');
  });
  await withHost({ builtin: true, config: { delivery: { queue: { hold: true } }, rules: { settings: { greylist: { enabled: true, options: { retrySeconds: 1 } } } } } }, async (h) => {
    assert.equal(await attempt(h.port, '127.0.0.32'), '421 4.7.1 Greylisted: please try again later');
    const first = Date.now();
    assert.equal(await attempt(h.port, '127.0.0.32'), '421 4.7.1 Greylisted: please try again later', 'a retry too early');
    // Retry as an MTA's queue would, until the window has gone by (bounded).
    let reply = '';
    while (Date.now() - first < 5000 && !(reply = await attempt(h.port, '127.0.0.32')).startsWith('250')) await new Promise((r) => setTimeout(r, 250));
    assert.equal(reply, '250 2.1.5 Accepted');
    assert.ok(Date.now() - first >= 1000, 'not before the retry window');
    assert.equal(await attempt(h.port, '127.0.0.33'), '250 2.1.5 Accepted', 'another address of the /24 is the same triplet');
    // The first message that passed says so; the next one does not.
    const [passed, next] = spooled(h.dataDir).map((m) => m.eml.toString());
    assert.match(passed!, /\r\nX-Grey-Report: age=\d+s; key=ip-network; triplet=127\.0\.0\|news@example\.net\|user@localhost; started=\S+\r\n/);
    assert.doesNotMatch(next!, /X-Grey-Report/);
  });
});

it('a client whose retry passed is well-behaved from then on: its next connection skips the greet pause and the tarpit; another client gets both', async () => {
  const GREY = '421 4.7.1 Greylisted: please try again later';
  await withHost({ builtin: true, config: {
    greetPauseMs: 500,
    rules: { settings: {
      greylist: { enabled: true, options: { retrySeconds: 1 } },
      // Before greylist, so that its refusals wait too: every RCPT of a client it does not spare waits 1 s.
      tarpit: { enabled: true, priority: 10, options: { afterRecipients: 0, delayMs: 1000, multiplier: 1 } },
    } },
  } }, async (h) => {
    const tarpitted = () => h.logs.filter((l) => l.rule === 'tarpit' && l.ruleLog === true).length;
    const good = '127.0.0.41';
    assert.equal(await attempt(h.port, good), GREY);
    const first = Date.now();
    let reply = '';
    while (Date.now() - first < 10_000 && !(reply = await attempt(h.port, good)).startsWith('250')) await new Promise((r) => setTimeout(r, 250));
    assert.equal(reply, '250 2.1.5 Accepted');
    assert.equal(h.host.store.wellBehaved(good), true);

    // Its next connection: it talks before the greeting, and is answered after it, at once.
    const before = tarpitted();
    const { c, greeting } = await RawSmtp.open(h.port, good, 'EHLO mx.example.net');
    assert.match(greeting, /^220 localhost /);
    assert.match(await c.reply(), /^250-localhost /);
    assert.equal(await c.cmd('MAIL FROM:<news@example.net>'), '250 2.1.0 Accepted');
    const t0 = Date.now();
    assert.equal(await c.cmd('RCPT TO:<user@localhost>'), '250 2.1.5 Accepted');
    assert.ok(Date.now() - t0 < 1000, `its RCPT took ${Date.now() - t0} ms`);
    assert.equal(tarpitted(), before, 'the tarpit spared it');
    c.end();

    // Another client (another sender: another triplet) is still refused for talking first, and tarpitted.
    const other = '127.0.0.42';
    assert.equal((await RawSmtp.open(h.port, other, 'EHLO hasty.example')).greeting, '421 localhost You talk too soon');
    const { c: o } = await RawSmtp.open(h.port, other);
    assert.match(await o.cmd('EHLO mx.example.org'), /^250-/);
    assert.equal(await o.cmd('MAIL FROM:<promo@example.org>'), '250 2.1.0 Accepted');
    const t1 = Date.now();
    assert.equal(await o.cmd('RCPT TO:<user@localhost>'), GREY);
    assert.ok(Date.now() - t1 >= 950, `its RCPT took ${Date.now() - t1} ms: not tarpitted`);
    assert.equal(tarpitted(), before + 1);
    o.end();
  });
});
