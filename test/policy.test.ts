/**
 * The admin's controls over a rule (shadow, action overrides, priority), the tarpit and
 * greeting pause, and what happens when the spool cannot take a message.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { mailer, mountTmpfs, RawSmtp, rule, spooled, startTestHost, unmountTmpfs, withHost, rcptReply } from './helpers.js';

const STRICT = rule('strict', `{ rcpt: (ev) => ev.rcpt.address.startsWith('spam@') ? reject(550, 'Looks like spam') : next() }`);

describe('per-rule action overrides', () => {
  it('shadow: the rule runs and its decision is logged and counted, but not enforced', async () => {
    await withHost({ rules: { 's.ts': STRICT }, config: { rules: { settings: { strict: { action: 'shadow' } } } } }, async (h) => {
      assert.equal(await rcptReply(h.port, 'spam@localhost'), '250 2.1.5 Accepted');
      const rec = h.logs.find((l) => l.rule === 'strict' && l.shadow === true);
      assert.equal(rec?.msg, 'shadow: rule strict would have answered reject at rcpt');
      assert.equal(rec?.code, 550);
      assert.equal(await h.host.metrics.get('rule_verdicts_total', { rule: 'strict', phase: 'rcpt', action: 'reject', mode: 'shadow' }), 1);
    });
  });

  it('tempfail: a reject becomes the matching 4xx (soft bounce)', async () => {
    await withHost({ rules: { 's.ts': STRICT }, config: { rules: { settings: { strict: { action: 'tempfail' } } } } }, async (h) => {
      assert.equal(await rcptReply(h.port, 'spam@localhost'), '450 4.7.1 Looks like spam');
    });
  });

  it('quarantine: a reject becomes acceptance into the quarantine folder', async () => {
    await withHost({ rules: { 's.ts': STRICT }, config: { rules: { settings: { strict: { action: 'quarantine' } } } } }, async (h) => {
      const info = await mailer(h.port).sendMail({ envelope: { from: 'a@example.org', to: ['spam@localhost'] }, raw: 'Subject: buy\r\n\r\nnow\r\n' });
      assert.match(info.response, /^250 2\.0\.0 Ok: queued as /);
      assert.equal(spooled(h.dataDir).length, 0);
      const [q] = spooled(h.dataDir, 'quarantine');
      assert.equal(q?.env.disposition?.rule, 'strict');
    });
  });

  it('enabled: false leaves the rule out', async () => {
    await withHost({ rules: { 's.ts': STRICT }, config: { rules: { settings: { strict: { enabled: false } } } } }, async (h) => {
      assert.equal(await rcptReply(h.port, 'spam@localhost'), '250 2.1.5 Accepted');
    });
  });
});

describe('priority', () => {
  const rules = {
    'a.ts': rule('first', `{ rcpt: () => reject(550, 'first says no') }`, 'priority: 10,'),
    'b.ts': rule('second', `{ rcpt: () => reject(551, 'second says no') }`, 'priority: 20,'),
  };

  it('rules run in priority order and the first terminal verdict wins', async () => {
    await withHost({ rules }, async (h) => {
      assert.equal(await rcptReply(h.port, 'x@localhost'), '550 5.7.1 first says no');
    });
  });

  it('the config can reorder rules', async () => {
    await withHost({ rules, config: { rules: { settings: { second: { priority: 1 } } } } }, async (h) => {
      assert.equal(await rcptReply(h.port, 'x@localhost'), '551 5.7.1 second says no');
    });
  });
});

describe('tarpit and greeting pause', () => {
  it('a rule can delay its reply, capped by limits.maxDelayMs', async () => {
    await withHost({
      rules: { 't.ts': rule('tarpit', `{ rcpt: (ev, ctx) => { ctx.delay(ev.rcpt.address.startsWith('slow@') ? 60000 : 0); } }`) },
      config: { limits: { maxDelayMs: 400 } },
    }, async (h) => {
      const t0 = Date.now();
      assert.equal(await rcptReply(h.port, 'slow@localhost'), '250 2.1.5 Accepted');
      const waited = Date.now() - t0;
      assert.ok(waited >= 390, `waited ${waited} ms`);
      assert.ok(waited < 5000, `waited ${waited} ms: the cap did not apply`);
    });
  });

  it('with greetPauseMs, a client that talks before the greeting is refused', async () => {
    await withHost({ config: { greetPauseMs: 500 } }, async (h) => {
      const { connect } = await import('node:net');
      const sock = connect(h.port, '127.0.0.1');
      const data: Buffer[] = [];
      sock.on('data', (d: Buffer) => data.push(d));
      sock.on('connect', () => sock.write('EHLO hasty.example\r\n'));
      await new Promise((ok) => sock.on('close', ok));
      assert.match(Buffer.concat(data).toString(), /^421 localhost You talk too soon\r\n/);
    });
  });

  it('a client marked well-behaved skips the pause: a command it sends before the greeting is answered after it', async () => {
    // A resolver that never answers holds the connect phase (its rule waits for a DNSBL
    // fact) for dns.timeoutMs: the early line surely arrives before the 220.
    const silent = createSocket('udp4');
    await new Promise<void>((ok) => silent.bind(0, '127.0.0.1', ok));
    try {
      await withHost({
        rules: { 'c.ts': rule('slow-connect', `{ connect: () => undefined }`, `needs: ['dnsbl:silent.test'],`) },
        config: { greetPauseMs: 1500, dns: { servers: [`127.0.0.1:${silent.address().port}`], timeoutMs: 400 } },
      }, async (h) => {
        h.host.store.markWellBehaved('127.0.0.81', 3600, 'greylist');
        const t0 = Date.now();
        const { c, greeting } = await RawSmtp.open(h.port, '127.0.0.81', 'EHLO early.example');
        assert.match(greeting, /^220 localhost /);
        assert.match(await c.reply(), /^250-localhost /);
        assert.ok(Date.now() - t0 < 1500, `greeted after ${Date.now() - t0} ms: the pause applied`);
        assert.equal(await c.cmd('MAIL FROM:<a@example.org>'), '250 2.1.0 Accepted');
        c.end();
        // Another client is still held to the pause, and refused for talking first.
        const other = await RawSmtp.open(h.port, '127.0.0.82', 'EHLO hasty.example');
        assert.equal(other.greeting, '421 localhost You talk too soon');
      });
    } finally {
      silent.close();
    }
  });
});

describe('spool failures', () => {
  it('a spool that cannot be written gives 452 4.3.1, leaves nothing behind, and the host keeps serving', async () => {
    await withHost({}, async (h) => {
      const tmp = join(h.dataDir, 'spool', 'tmp');
      rmSync(tmp, { recursive: true });
      writeFileSync(tmp, 'not a directory'); // every write into spool/tmp now fails (ENOTDIR)
      const send = () => mailer(h.port).sendMail({ envelope: { from: 'a@example.org', to: ['u@localhost'] }, raw: 'Subject: x\r\n\r\nbody\r\n' });
      await assert.rejects(send(), (e: { response?: string }) => /^452 4\.3\.1 Insufficient system storage, please try again later \(session [a-z0-9]+\)$/.test(e.response ?? ''));
      assert.deepEqual(readdirSync(join(h.dataDir, 'spool', 'new')), []);
      rmSync(tmp);
      mkdirSync(tmp);
      assert.match((await send()).response, /^250 2\.0\.0 Ok: queued as /);
    });
  });

  it('a full disk gives 452 4.3.1 with no partial file, then mail flows again once there is room', async (t) => {
    const mnt = mountTmpfs();
    if (!mnt) return void t.skip('cannot mount a tmpfs here (needs root); the ENOTDIR test above covers the write-failure path');
    const h = await startTestHost({ config: { dataDir: join(mnt, 'data') } });
    try {
      const big = `Subject: big\r\n\r\n${'y'.repeat(76)}\r\n`.repeat(4000); // ~320 KB > 256 KB
      await assert.rejects(
        mailer(h.port).sendMail({ envelope: { from: 'a@example.org', to: ['u@localhost'] }, raw: big }),
        (e: { response?: string }) => /^452 4\.3\.1 /.test(e.response ?? ''),
      );
      assert.deepEqual(readdirSync(join(mnt, 'data', 'spool', 'tmp')), []);
      assert.deepEqual(readdirSync(join(mnt, 'data', 'spool', 'new')), []);
      const ok = await mailer(h.port).sendMail({ envelope: { from: 'a@example.org', to: ['u@localhost'] }, raw: 'Subject: small\r\n\r\nfits\r\n' });
      assert.match(ok.response, /^250 2\.0\.0 Ok: queued as /);
    } finally {
      await h.close();
      unmountTmpfs(mnt);
    }
  });
});

describe('connection limits', () => {
  it('a client over limits.maxClients gets 421 and is closed; the others are served', async () => {
    await withHost({ config: { limits: { maxClients: 1 } } }, async (h) => {
      const { c: first, greeting } = await RawSmtp.open(h.port);
      assert.equal(greeting, '220 localhost ESMTP Portcullis');
      const { c: second, greeting: refused } = await RawSmtp.open(h.port);
      assert.equal(refused, '421 localhost Too many connected clients, try again in a moment');
      assert.equal(await second.waitClosed(), true);
      assert.match(await first.cmd('EHLO still.example'), /^250-localhost/);
      first.end();
    });
  });
});
