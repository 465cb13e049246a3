/** Scores over real SMTP: the total refuses at RCPT or DATA, or rides along in a header of the spooled message. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { RawSmtp, spooled, withHost } from './helpers.js';

const SCORER = `import { defineRule } from 'portcullis/sdk';
export default defineRule({ name: 'scorer', phases: { rcpt: (ev, ctx) => { if (ev.rcpt.address.startsWith('trap')) ctx.score('trap', 5); else ctx.score('known-rcpt', -1); } } });
`;

async function send(port: number, ip: string, rcpt: string): Promise<string> {
  const { c } = await RawSmtp.open(port, ip);
  try {
    await c.cmd('EHLO mx.example.net');
    await c.cmd('MAIL FROM:<a@example.net>');
    await c.cmd(`RCPT TO:<${rcpt}>`);
    const data = await c.cmd('DATA');
    if (!data.startsWith('354')) return data;
    return await c.cmd('From: a@example.net\r\nSubject: scored\r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\n\r\nhello\r\n.');
  } finally {
    c.end();
  }
}

it('scores: a transaction at the reject threshold gets 550 5.7.1 at DATA; an accepted one carries its score header', async () => {
  await withHost({ rules: { 'scorer.ts': SCORER }, config: { delivery: { queue: { hold: true } }, scores: { reject: 5 } } }, async (h) => {
    assert.equal(await send(h.port, '127.0.0.61', 'trap@localhost'), '550 5.7.1 Message refused: its spam score 5 is at or over 5');
    assert.match(await send(h.port, '127.0.0.62', 'user@localhost'), /^250 /);
    const [m] = spooled(h.dataDir);
    assert.match(m!.eml.toString(), /\r\nX-Portcullis-Score: -1 \(known-rcpt=-1\)\r\n/);
  });
});

it('scores at RCPT: built-in rules in score mode refuse the RCPT that brings the total to reject; an accepted message lists their symbols', async () => {
  const settings = { 'suspicious-helo': { options: { score: 2 } }, 'identical-sender-rcpt': { options: { score: 3 } }, 'subject-spam': { options: { score: 1 } } };
  const config = { delivery: { queue: { hold: true } }, scores: { reject: 5, phases: ['rcpt', 'data', 'message'] }, rules: { settings } };
  await withHost({ builtin: true, config }, async (h) => {
    // An unqualified HELO (2), then mail from an address to itself (3): that RCPT is refused, with the score reply.
    const a = (await RawSmtp.open(h.port, '127.0.0.63')).c;
    assert.match(await a.cmd('EHLO mailhost'), /^250/);
    assert.equal(await a.cmd('MAIL FROM:<self@localhost>'), '250 2.1.0 Accepted');
    assert.equal(await a.cmd('RCPT TO:<self@localhost>'), '550 5.7.1 Message refused: its spam score 5 is at or over 5');
    a.end();
    assert.ok(h.logs.some((l) => l.msg === 'score 5 at rcpt is at or over 5: identical-sender-rcpt=3 helo-suspicious=2'));

    // An unqualified HELO (2) and a spam subject (1): under the threshold, delivered with its score header and no X-HELO.
    const b = (await RawSmtp.open(h.port, '127.0.0.64')).c;
    await b.cmd('EHLO mailhost');
    await b.cmd('MAIL FROM:<a@example.net>');
    assert.equal(await b.cmd('RCPT TO:<user@localhost>'), '250 2.1.5 Accepted');
    assert.match(await b.cmd('DATA'), /^354 /);
    assert.match(await b.cmd('From: a@example.net\r\nSubject: You won the lottery\r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\n\r\nhello\r\n.'), /^250 /);
    b.end();
    const eml = spooled(h.dataDir)[0]!.eml.toString();
    assert.match(eml, /\r\nX-Portcullis-Score: 3 \(helo-suspicious=2 subject-spam=1\)\r\n/);
    assert.doesNotMatch(eml, /X-HELO/);
  });
});
