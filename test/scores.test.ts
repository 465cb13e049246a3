/** Scores over real SMTP: the total refuses at DATA, or rides along in a header of the spooled message. */
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
