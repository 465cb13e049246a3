/**
 * Greylisting over real SMTP: the built-in rule ships off, the config turns it on, and a
 * real client's retry passes once the retry window has gone by (1 s here).
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
