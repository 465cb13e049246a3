/**
 * Accepted mail is spooled before the 250, byte-identical to what the client sent plus the
 * Received header and the rules' headers; relay control; AUTH; exempt networks.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { mailer, RawSmtp, rule, splitFields, spooled, startTestHost, testPasswordHash, type TestHost, withHost } from './helpers.js';

const TAGGER = rule('tagger', `{
  helo: (ev, ctx) => { ctx.addHeader('X-HELO', 'seen ' + ev.helo.name); },
  rcpt: (ev) => ev.rcpt.address.startsWith('blocked@') ? reject(550, 'Blocked recipient') : next(),
  message: (ev, ctx) => { ctx.addHeader('X-Size', String(ev.message.size)); },
}`);

let t: TestHost;
before(async () => {
  t = await startTestHost({
    rules: { 'tagger.ts': TAGGER },
    config: { localDomains: ['localhost', 'example.net'], relayNetworks: [], auth: { users: { alice: await testPasswordHash('secret-pw') }, allowInsecure: true } },
  });
});
after(async () => t.close());

describe('delivery to the spool', () => {
  it('spools exactly the accepted messages, byte-identical apart from added headers', async () => {
    const sent: Buffer[] = [];
    const transport = mailer(t.port);
    for (let i = 0; i < 3; i++) {
      // Raw bytes with a dot-leading line, 8-bit text and a long line: nothing may be altered.
      const raw = Buffer.concat([
        Buffer.from(`From: a@example.org\r\nTo: user@localhost\r\nSubject: test ${i}\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\n`),
        Buffer.from(`.leading dot\r\n..two dots\r\nh\u00e9llo ${randomBytes(8).toString('hex')}\r\n${'x'.repeat(900)}\r\n`, 'utf8'),
      ]);
      sent.push(raw);
      const info = await transport.sendMail({ envelope: { from: 'a@example.org', to: ['user@localhost'] }, raw });
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/);
    }
    // One refused by a rule at RCPT: the client gets the error, nothing is spooled for it.
    await assert.rejects(
      transport.sendMail({ envelope: { from: 'a@example.org', to: ['blocked@localhost'] }, raw: 'Subject: no\r\n\r\nno\r\n' }),
      (e: { response?: string }) => e.response === '550 5.7.1 Blocked recipient',
    );
    transport.close();
    const all = spooled(t.dataDir);
    assert.equal(all.length, 3);
    for (const [i, m] of all.entries()) {
      const { fields, rest } = splitFields(m.eml, 3);
      assert.match(fields[0]!, /^Received: from \S+ \(\[127\.0\.0\.1\]\)\r\n\tby localhost \(Portcullis\) with ESMTP id [0-9A-Z]+\r\n\tfor <user@localhost>;\r\n\t.+ \+0000\r\n$/);
      assert.match(fields[1]!, /^X-HELO: seen \S+\r\n$/);
      assert.equal(fields[2], `X-Size: ${sent[i]!.length}\r\n`);
      assert.ok(rest.equals(sent[i]!), `message ${i} is byte-identical`);
      assert.equal(m.env.mailFrom, 'a@example.org');
      assert.deepEqual(m.env.rcptTo, ['user@localhost']);
    }
  });
});

describe('relay control', () => {
  it('refuses a foreign domain with 554 5.7.1 for an unauthenticated client outside the relay networks', async () => {
    const { c } = await RawSmtp.open(t.port);
    await c.cmd('EHLO client.example');
    await c.cmd('MAIL FROM:<a@example.org>');
    assert.equal(await c.cmd('RCPT TO:<victim@elsewhere.example>'), '554 5.7.1 Relaying denied');
    assert.equal(await c.cmd('RCPT TO:<user@example.net>'), '250 2.1.5 Accepted');
    assert.equal(await c.cmd('RCPT TO:<Postmaster>'), '250 2.1.5 Accepted');
    c.end();
  });

  it('lets an authenticated client relay', async () => {
    const { c } = await RawSmtp.open(t.port);
    await c.cmd('EHLO client.example');
    assert.equal(await c.cmd(`AUTH PLAIN ${Buffer.from('\0alice\0wrong').toString('base64')}`), '535 5.7.8 Authentication credentials invalid');
    assert.equal(await c.cmd(`AUTH PLAIN ${Buffer.from('\0alice\0secret-pw').toString('base64')}`), '235 2.7.0 Authentication successful');
    await c.cmd('MAIL FROM:<alice@localhost>');
    assert.equal(await c.cmd('RCPT TO:<friend@elsewhere.example>'), '250 2.1.5 Accepted');
    c.end();
  });

  it('a rule cannot open the relay: relay control runs before the rules', async () => {
    await withHost({ rules: { 'a.ts': rule('allow-all', `{ connect: () => accept(), rcpt: () => accept() }`) }, config: { relayNetworks: ['192.0.2.0/24'] } }, async (h) => {
      const { c } = await RawSmtp.open(h.port);
      await c.cmd('EHLO x.example');
      await c.cmd('MAIL FROM:<a@example.org>');
      assert.equal(await c.cmd('RCPT TO:<victim@elsewhere.example>'), '554 5.7.1 Relaying denied');
      c.end();
    });
  });

  it('lets a client in the relay networks (loopback by default) relay', async () => {
    await withHost({}, async (h) => {
      const { c } = await RawSmtp.open(h.port);
      await c.cmd('EHLO x.example');
      await c.cmd('MAIL FROM:<a@example.org>');
      assert.equal(await c.cmd('RCPT TO:<someone@elsewhere.example>'), '250 2.1.5 Accepted');
      c.end();
    });
  });
});

describe('auth phase and exempt networks', () => {
  it('auth rules see each attempt with its result and can refuse it', async () => {
    await withHost({
      rules: { 'a.ts': rule('auth-watch', `{ auth: (ev, ctx) => { ctx.log('auth ' + ev.auth.username + ' ' + ev.auth.success); return ev.auth.username === 'mallory' ? drop('No more attempts') : next(); } }`) },
      config: { auth: { users: { alice: await testPasswordHash('pw') }, allowInsecure: true } },
    }, async (h) => {
      const { c } = await RawSmtp.open(h.port);
      await c.cmd('EHLO x.example');
      assert.equal(await c.cmd(`AUTH PLAIN ${Buffer.from('\0alice\0bad').toString('base64')}`), '535 5.7.8 Authentication credentials invalid');
      assert.equal(await c.cmd(`AUTH PLAIN ${Buffer.from('\0mallory\0x').toString('base64')}`), '421 4.7.0 No more attempts');
      assert.equal(await c.waitClosed(), true);
      const lines = h.logs.filter((l) => l.rule === 'auth-watch' && String(l.msg).startsWith('auth ')).map((l) => l.msg);
      assert.deepEqual(lines, ['auth alice false', 'auth mallory false']);
    });
  });

  it('exempt networks skip every rule', async () => {
    await withHost({ rules: { 'n.ts': rule('no', `{ connect: () => reject(554, 'No') }`) }, config: { exemptNetworks: ['127.0.0.0/8'] } }, async (h) => {
      const { c, greeting } = await RawSmtp.open(h.port);
      assert.equal(greeting, '220 localhost ESMTP Portcullis');
      c.end();
    });
  });
});

describe('events', () => {
  it('each phase sees the session and envelope as they are at that point, across transactions and HELOs', async () => {
    await withHost({
      rules: {
        'e.ts': rule('echo', `{
          rcpt: (ev, ctx) => { ctx.log('rcpt ' + ev.envelope.rcptTo.map((r) => r.address).join(',') + ' +' + ev.rcpt.address + ' failed=' + ev.envelope.failedRcpts); },
          message: (ev, ctx) => { ctx.addHeader('X-Seen', [ev.session.helo?.verb, ev.session.helo?.name, ev.envelope.mailFrom?.address, ev.envelope.mailFrom?.size, ev.envelope.rcptTo.map((r) => r.address).join(','), ev.session.transactions].join('|')); },
          data: (ev) => { try { (ev.envelope as any).rcptTo.push({ address: 'injected@x' }); } catch { /* events are read-only */ } },
        }`),
      },
    }, async (h) => {
      const { c } = await RawSmtp.open(h.port);
      await c.cmd('EHLO first.example');
      await c.cmd('MAIL FROM:<a@example.org> SIZE=120');
      await c.cmd('RCPT TO:<one@localhost>');
      await c.cmd('RCPT TO:<two@localhost>');
      await c.cmd('DATA');
      await c.cmd('Subject: 1\r\n\r\nx\r\n.');
      await c.cmd('HELO second.example');
      await c.cmd('MAIL FROM:<b@example.org>');
      await c.cmd('RCPT TO:<three@localhost>');
      await c.cmd('DATA');
      await c.cmd('Subject: 2\r\n\r\ny\r\n.');
      c.end();
      const seen = spooled(h.dataDir).map((m) => /X-Seen: (.*)\r\n/.exec(m.eml.toString())?.[1]);
      assert.deepEqual(seen, ['EHLO|first.example|a@example.org|120|one@localhost,two@localhost|0', 'HELO|second.example|b@example.org||three@localhost|1']);
      const rcpts = h.logs.filter((l) => l.rule === 'echo' && String(l.msg).startsWith('rcpt ')).map((l) => l.msg);
      assert.deepEqual(rcpts, ['rcpt  +one@localhost failed=0', 'rcpt one@localhost +two@localhost failed=0', 'rcpt  +three@localhost failed=0']);
    });
  });
});

describe('message body', () => {
  it('reaches only rules that declare needs: [\'body\'], capped at limits.bodyLimit', async () => {
    await withHost({
      rules: {
        'b.ts': rule('body-filter', `{ message: (ev) => {
          const body = ev.message.body ?? '';
          if (/cheap pills/i.test(body)) return reject(550, 'Message content refused', { status: '7.1', reason: 'body-keyword' });
          if (ev.message.bodyTruncated) return reject(552, 'Body seen up to ' + body.length + ' bytes', { status: '3.4' });
        } }`, "needs: ['body'],"),
      },
      config: { limits: { bodyLimit: 1000 } },
    }, async (h) => {
      const send = (text: string) => mailer(h.port).sendMail({ envelope: { from: 'a@example.org', to: ['u@localhost'] }, raw: `Subject: hi\r\n\r\n${text}\r\n` });
      await assert.rejects(send('Buy CHEAP PILLS now'), (e: { response?: string }) => e.response === '550 5.7.1 Message content refused');
      await assert.rejects(send('x'.repeat(5000)), (e: { response?: string }) => e.response === '552 5.3.4 Body seen up to 1000 bytes');
      assert.match((await send('hello')).response, /^250 /);
    });
  });
});

describe('listening', () => {
  it('serves every address in listen', async () => {
    await withHost({ config: { listen: ['127.0.0.1:0', '127.0.0.1:0'] } }, async (h) => {
      assert.equal(h.host.addresses.length, 2);
      assert.notEqual(h.host.addresses[0]!.port, h.host.addresses[1]!.port);
      for (const a of h.host.addresses) {
        const { c, greeting } = await RawSmtp.open(a.port);
        assert.equal(greeting, '220 localhost ESMTP Portcullis');
        assert.equal(await c.cmd('QUIT'), '221 2.0.0 Bye');
      }
    });
  });
});
