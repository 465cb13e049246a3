/**
 * Each verdict at each phase, over a real socket: the exact reply line the client sees
 * and whether the connection stays open.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RawSmtp, rule, spooled, startTestHost, type TestHost, withHost } from './helpers.js';

const SWITCHBOARD = rule('switchboard', `{
  helo: (ev) => {
    switch (ev.helo.name) {
      case 'reject.test': return reject(550, 'HELO refused');
      case 'tempfail.test': return tempfail(450, 'Try later');
      case 'drop.test': return drop('Go away');
      case 'accept.test': return accept();
      default: return next();
    }
  },
  mail: (ev) => {
    switch (ev.mail.address.split('@')[0]) {
      case 'reject-mail': return reject(553, 'Bad sender domain', { status: '1.8' });
      case 'tempfail-mail': return tempfail(451, 'Sender check pending', { status: '7.1' });
      case 'drop-mail': return drop('Bye');
      case 'discard-mail': return discard();
      case 'quarantine-mail': return quarantine({ reason: 'suspicious-sender' });
      case 'redirect-mail': return redirect('abuse@localhost');
      case 'accept-mail': return accept();
      default: return next();
    }
  },
  rcpt: (ev) => {
    switch (ev.rcpt.address.split('@')[0]) {
      case 'reject': return reject(550, 'No such user', { status: '1.1' });
      case 'tempfail': return tempfail(452, 'Mailbox busy', { status: '2.2' });
      case 'drop': return drop('Too many errors');
      default: return next();
    }
  },
  data: (ev) => ev.envelope.mailFrom?.address.startsWith('reject-data@') ? reject(554, 'No data today') : next(),
  message: (ev, ctx) => {
    const subject = ev.message.headers.find(([n]) => n.toLowerCase() === 'subject')?.[1] ?? '';
    ctx.addHeader('X-Switchboard', 'seen');
    switch (subject) {
      case 'reject': return reject(550, 'Content refused');
      case 'tempfail': return tempfail(451, 'Scanner busy', { status: '3.0' });
      case 'drop': return drop('Content drop');
      case 'discard': return discard();
      default: return next();
    }
  },
}`);

/** The host running SWITCHBOARD, for the tests of 'verdicts become exact SMTP replies'. */
let t: TestHost;

async function session(helo = 'client.example.org'): Promise<RawSmtp> {
  const { c, greeting } = await RawSmtp.open(t.port);
  assert.equal(greeting, '220 localhost ESMTP Portcullis');
  const r = await c.cmd(`EHLO ${helo}`);
  assert.match(r, /^250-localhost Nice to meet you/);
  return c;
}

async function sendMessage(c: RawSmtp, subject: string): Promise<string> {
  assert.equal(await c.cmd('DATA'), '354 End data with <CR><LF>.<CR><LF>');
  return c.cmd(`Subject: ${subject}\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\nHello\r\n.`);
}

describe('verdicts become exact SMTP replies', () => {
  before(async () => {
    t = await startTestHost({ rules: { 'switchboard.ts': SWITCHBOARD } });
  });
  after(async () => t.close());

  it('EHLO advertises ENHANCEDSTATUSCODES because replies carry them', async () => {
    const { c } = await RawSmtp.open(t.port);
    assert.match(await c.cmd('EHLO x.example'), /\n250-ENHANCEDSTATUSCODES\n/);
    c.end();
  });

  it('helo: reject and tempfail refuse the HELO but keep the connection; MAIL is then out of sequence', async () => {
    const { c } = await RawSmtp.open(t.port);
    assert.equal(await c.cmd('EHLO reject.test'), '550 5.7.1 HELO refused');
    assert.equal(await c.cmd('HELO tempfail.test'), '450 4.7.1 Try later');
    assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '503 5.5.1 Error: send HELO/EHLO first');
    assert.match(await c.cmd('HELO fine.example'), /^250 localhost Nice to meet you/);
    assert.equal(c.closed, false);
    c.end();
  });

  it('helo: drop answers 421 4.7.0 and closes', async () => {
    const { c } = await RawSmtp.open(t.port);
    assert.equal(await c.cmd('EHLO drop.test'), '421 4.7.0 Go away');
    assert.equal(await c.waitClosed(), true);
  });

  it('mail: reject and tempfail carry the rule\'s code and status with the class from the code', async () => {
    const c = await session();
    assert.equal(await c.cmd('MAIL FROM:<reject-mail@example.org>'), '553 5.1.8 Bad sender domain');
    assert.equal(await c.cmd('MAIL FROM:<tempfail-mail@example.org>'), '451 4.7.1 Sender check pending');
    assert.equal(await c.cmd('MAIL FROM:<ok@example.org>'), '250 2.1.0 Accepted');
    c.end();
  });

  it('mail: drop closes with 421', async () => {
    const c = await session();
    assert.equal(await c.cmd('MAIL FROM:<drop-mail@example.org>'), '421 4.7.0 Bye');
    assert.equal(await c.waitClosed(), true);
  });

  it('rcpt: reject refuses only that recipient; the others are accepted', async () => {
    const c = await session();
    assert.equal(await c.cmd('MAIL FROM:<ok@example.org>'), '250 2.1.0 Accepted');
    assert.equal(await c.cmd('RCPT TO:<reject@localhost>'), '550 5.1.1 No such user');
    assert.equal(await c.cmd('RCPT TO:<tempfail@localhost>'), '452 4.2.2 Mailbox busy');
    assert.equal(await c.cmd('RCPT TO:<good@localhost>'), '250 2.1.5 Accepted');
    assert.match(await sendMessage(c, 'hello'), /^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/);
    c.end();
  });

  it('rcpt: drop closes with 421', async () => {
    const c = await session();
    await c.cmd('MAIL FROM:<ok@example.org>');
    assert.equal(await c.cmd('RCPT TO:<drop@localhost>'), '421 4.7.0 Too many errors');
    assert.equal(await c.waitClosed(), true);
  });

  it('data: reject refuses the DATA command before 354', async () => {
    const c = await session();
    await c.cmd('MAIL FROM:<reject-data@example.org>');
    await c.cmd('RCPT TO:<good@localhost>');
    assert.equal(await c.cmd('DATA'), '554 5.7.1 No data today');
    assert.equal(await c.cmd('RSET'), '250 2.0.0 Flushed');
    c.end();
  });

  it('message: reject, tempfail and drop answer the final dot; nothing is spooled', async () => {
    const before = spooled(t.dataDir).length;
    const c = await session();
    for (const [subject, expected] of [['reject', '550 5.7.1 Content refused'], ['tempfail', '451 4.3.0 Scanner busy']] as const) {
      await c.cmd('MAIL FROM:<ok@example.org>');
      await c.cmd('RCPT TO:<good@localhost>');
      assert.equal(await sendMessage(c, subject), expected);
    }
    await c.cmd('MAIL FROM:<ok@example.org>');
    await c.cmd('RCPT TO:<good@localhost>');
    assert.equal(await sendMessage(c, 'drop'), '421 4.7.0 Content drop');
    assert.equal(await c.waitClosed(), true);
    assert.equal(spooled(t.dataDir).length, before);
  });

  it('message and mail: discard answers 250 like a delivery but spools nothing', async () => {
    const before = spooled(t.dataDir).length;
    const c = await session();
    await c.cmd('MAIL FROM:<ok@example.org>');
    await c.cmd('RCPT TO:<good@localhost>');
    assert.match(await sendMessage(c, 'discard'), /^250 2\.0\.0 Ok: queued as /);
    assert.equal(await c.cmd('MAIL FROM:<discard-mail@example.org>'), '250 2.1.0 Accepted');
    await c.cmd('RCPT TO:<good@localhost>');
    assert.match(await sendMessage(c, 'plain'), /^250 2\.0\.0 Ok: queued as /);
    c.end();
    assert.equal(spooled(t.dataDir).length, before);
    assert.ok(t.logs.some((l) => l.msg?.toString().startsWith('discarded message') && l.rule === 'switchboard'));
  });

  it('mail: quarantine puts the message in the quarantine folder with the reason', async () => {
    const c = await session();
    await c.cmd('MAIL FROM:<quarantine-mail@example.org>');
    await c.cmd('RCPT TO:<good@localhost>');
    const r = await sendMessage(c, 'quarantine me');
    const id = /queued as (\S+)/.exec(r)?.[1];
    c.end();
    const q = spooled(t.dataDir, 'quarantine').find((m) => m.id === id);
    assert.ok(q, 'message is in quarantine/new');
    assert.deepEqual(q.env.disposition, { action: 'quarantine', rule: 'switchboard', reason: 'suspicious-sender', originalRcptTo: ['good@localhost'] });
    assert.equal(spooled(t.dataDir).some((m) => m.id === id), false);
  });

  it('mail: redirect replaces the recipients in the spooled envelope', async () => {
    const c = await session();
    await c.cmd('MAIL FROM:<redirect-mail@example.org>');
    await c.cmd('RCPT TO:<good@localhost>');
    await c.cmd('RCPT TO:<other@localhost>');
    const id = /queued as (\S+)/.exec(await sendMessage(c, 'redirected'))?.[1];
    c.end();
    const m = spooled(t.dataDir).find((x) => x.id === id);
    assert.ok(m);
    assert.deepEqual(m.env.rcptTo, ['abuse@localhost']);
  });

  it('helo: accept whitelists the connection: later rules do not run', async () => {
    const c = await session('accept.test');
    await c.cmd('MAIL FROM:<reject-mail@example.org>');
    assert.equal(await c.cmd('RCPT TO:<reject@localhost>'), '250 2.1.5 Accepted');
    c.end();
  });

  it('mail: accept whitelists the transaction only', async () => {
    const c = await session();
    assert.equal(await c.cmd('MAIL FROM:<accept-mail@example.org>'), '250 2.1.0 Accepted');
    assert.equal(await c.cmd('RCPT TO:<reject@localhost>'), '250 2.1.5 Accepted');
    assert.equal(await c.cmd('RSET'), '250 2.0.0 Flushed');
    await c.cmd('MAIL FROM:<ok@example.org>');
    assert.equal(await c.cmd('RCPT TO:<reject@localhost>'), '550 5.1.1 No such user');
    c.end();
  });

  it('every refusal is logged with the rule that made it', async () => {
    const from = t.logs.length;
    const { c } = await RawSmtp.open(t.port);
    assert.equal(await c.cmd('EHLO reject.test'), '550 5.7.1 HELO refused');
    await c.cmd('HELO fine.example');
    assert.equal(await c.cmd('MAIL FROM:<reject-mail@example.org>'), '553 5.1.8 Bad sender domain');
    await c.cmd('MAIL FROM:<ok@example.org>');
    assert.equal(await c.cmd('RCPT TO:<reject@localhost>'), '550 5.1.1 No such user');
    c.end();
    const refusals = t.logs.slice(from).filter((l) => String(l.msg).startsWith('refused')).map((l) => [l.phase, l.rule, l.reply]);
    assert.deepEqual(refusals, [
      ['helo', 'switchboard', '550 5.7.1 HELO refused'],
      ['mail', 'switchboard', '553 5.1.8 Bad sender domain'],
      ['rcpt', 'switchboard', '550 5.1.1 No such user'],
    ]);
  });
});

describe('connect phase', () => {
  it('reject refuses the connection with 554 and closes it', async () => {
    await withHost({ rules: { 'c.ts': rule('no-connect', `{ connect: () => reject(550, 'No mail from your network') }`) } }, async (h) => {
      const { c, greeting } = await RawSmtp.open(h.port);
      assert.equal(greeting, '554 5.7.1 No mail from your network');
      assert.equal(await c.waitClosed(), true);
    });
  });

  it('tempfail answers 421 and closes', async () => {
    await withHost({ rules: { 'c.ts': rule('busy', `{ connect: () => tempfail(450, 'Too busy, come back later') }`) } }, async (h) => {
      const { c, greeting } = await RawSmtp.open(h.port);
      assert.equal(greeting, '421 4.7.1 Too busy, come back later');
      assert.equal(await c.waitClosed(), true);
    });
  });

  it('a rule\'s blacklist effect refuses the client\'s next connection', async () => {
    // The built-in rules include `blacklist`, which refuses listed clients at connect.
    await withHost({ builtin: true, rules: { 'b.ts': rule('bl', `{ rcpt: (ev, ctx) => { ctx.blacklist(600, 'spam trap hit'); return drop('Spam trap'); } }`) } }, async (h) => {
      const { c } = await RawSmtp.open(h.port);
      await c.cmd('EHLO x.example');
      await c.cmd('MAIL FROM:<a@example.org>');
      assert.equal(await c.cmd('RCPT TO:<trap@localhost>'), '421 4.7.0 Spam trap');
      const { c: c2, greeting } = await RawSmtp.open(h.port);
      assert.equal(greeting, '554 5.7.1 Access denied: spam trap hit');
      assert.equal(await c2.waitClosed(), true);
      assert.equal(h.host.store.blacklistGet('127.0.0.1')?.rule, 'bl');
    });
  });
});
