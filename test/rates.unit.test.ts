/**
 * Issue 14's rate controls and tarpit through the rule harness: each rule loaded alone
 * (they ship off; loadRule turns the one it loads on), a fake clock for the windows.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadRule, loadRuleSet } from '../host/testing/harness.js';

const rule = (name: string) => `rules/${name}.ts`;
const CONFIG = { localDomains: ['localhost', 'example.net'] };

describe('require-size', () => {
  it('refuses MAIL FROM without SIZE with 550 5.7.1, accepts it with SIZE', async (t) => {
    const h = await loadRule(rule('require-size'), { config: CONFIG });
    t.after(() => h.close());
    const s = await h.connect({ ip: '198.51.100.1', helo: 'mx.example.org' });
    const r = await s.mail('a@example.org');
    assert.equal(r.reply, '550 5.7.1 Message size must be declared: use ESMTP MAIL FROM with SIZE= (RFC 1870)');
    assert.equal(r.rule, 'require-size');
    assert.equal((await s.mail('a@example.org', { SIZE: '1200' })).reply, null);
    assert.equal((await s.mail('', { SIZE: '0' })).reply, null);
  });

  it('a malformed SIZE is no declaration', async (t) => {
    const h = await loadRule(rule('require-size'), { config: CONFIG });
    t.after(() => h.close());
    const s = await h.connect({ ip: '198.51.100.2', helo: 'mx.example.org' });
    assert.match((await s.mail('a@example.org', { SIZE: 'big' })).reply ?? '', /^550 5\.7\.1 /);
  });

  it('authenticated clients are not asked', async (t) => {
    const h = await loadRule(rule('require-size'), { config: CONFIG });
    t.after(() => h.close());
    const s = await h.connect({ ip: '198.51.100.3', helo: 'mx.example.org' });
    await s.auth('alice');
    assert.equal((await s.mail('alice@localhost')).reply, null);
  });

  it('is off unless the config turns it on', async (t) => {
    const h = await loadRuleSet({ config: CONFIG });
    t.after(() => h.close());
    assert.equal(h.rules.includes('require-size'), false);
  });
});

describe('null-sender-rate', () => {
  const DATE = { Date: 'Mon, 05 Jan 2026 10:00:00 +0000', Subject: 'Delivery Status Notification' };
  /** One bounce to `rcpt` from `ip`: the RCPT's reply (null: accepted, and the message sent). */
  async function bounce(h: Awaited<ReturnType<typeof loadRule>>, ip: string, rcpt: string, sender = ''): Promise<string | null> {
    const s = await h.connect({ ip, helo: 'mx.example.org' });
    await s.mail(sender);
    const r = await s.rcpt(rcpt);
    if (!r.reply) assert.notEqual((await s.message({ headers: DATE })).accepted, null);
    await s.close();
    return r.reply;
  }

  it('the bounce past maxPerRecipient within the window gets 550 5.7.1; other recipients and senders pass', async (t) => {
    const h = await loadRule(rule('null-sender-rate'), { config: CONFIG, options: { maxPerRecipient: 2, windowMinutes: 10 } });
    t.after(() => h.close());
    assert.equal(await bounce(h, '198.51.100.10', 'alice@localhost'), null);
    assert.equal(await bounce(h, '198.51.100.11', 'Alice@localhost'), null);
    assert.equal(await bounce(h, '198.51.100.12', 'alice@localhost'), '550 5.7.1 Too many bounces (null sender) for alice@localhost');
    assert.equal(await bounce(h, '198.51.100.12', 'bob@localhost'), null);
    assert.equal(await bounce(h, '198.51.100.12', 'alice@localhost', 'someone@example.org'), null);
    h.clock.advance(10 * 60_000 + 1000);
    assert.equal(await bounce(h, '198.51.100.12', 'alice@localhost'), null);
  });

  it('refused and abandoned attempts do not count', async (t) => {
    const h = await loadRule(rule('null-sender-rate'), { config: CONFIG, options: { maxPerRecipient: 1 } });
    t.after(() => h.close());
    for (let i = 0; i < 3; i++) {
      const s = await h.connect({ ip: '198.51.100.13', helo: 'mx.example.org' });
      await s.mail('');
      assert.equal((await s.rcpt('alice@localhost')).reply, null);
      await s.close(); // no DATA
    }
    assert.equal(await bounce(h, '198.51.100.13', 'alice@localhost'), null);
    assert.equal(await bounce(h, '198.51.100.13', 'alice@localhost'), '550 5.7.1 Too many bounces (null sender) for alice@localhost');
  });

  it('maxPerDomain counts every recipient of a domain; code 450 tempfails', async (t) => {
    const h = await loadRule(rule('null-sender-rate'), { config: CONFIG, options: { maxPerRecipient: 0, maxPerDomain: 3, code: 450 } });
    t.after(() => h.close());
    for (const u of ['a', 'b', 'c']) assert.equal(await bounce(h, '198.51.100.14', `${u}@example.net`), null);
    assert.equal(await bounce(h, '198.51.100.14', 'd@example.net'), '450 4.7.1 Too many bounces (null sender) for example.net');
    assert.equal(await bounce(h, '198.51.100.14', 'alice@localhost'), null);
  });
});

describe('connection-rate', () => {
  it('the connection past maxConnections within the window gets 421 4.7.0; other clients and a later window pass', async (t) => {
    const h = await loadRule(rule('connection-rate'), { config: CONFIG, options: { maxConnections: 3, windowSeconds: 60 } });
    t.after(() => h.close());
    for (let i = 0; i < 3; i++) assert.equal((await h.connect({ ip: '198.51.100.20' })).connected.reply, null);
    const r = (await h.connect({ ip: '198.51.100.20' })).connected;
    assert.equal(r.reply, '421 4.7.0 Too many connections from 198.51.100.20; try again later');
    assert.equal(r.rule, 'connection-rate');
    assert.equal((await h.connect({ ip: '198.51.100.21' })).connected.reply, null);
    h.clock.advance(61_000);
    assert.equal((await h.connect({ ip: '198.51.100.20' })).connected.reply, null);
  });
});

describe('rcpt-failures', () => {
  const config = { ...CONFIG, mailboxes: ['alice@localhost'] };
  const refusing = { config, options: { maxRefused: 3 } };

  it('session.refusedRecipients counts refusals by rules and by relay control, across RSET', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'portcullis-rates-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'count-refused.ts');
    writeFileSync(file, `import { defineRule, reject } from 'portcullis/sdk';
export default defineRule({ name: 'count-refused', phases: {
  mail: (ev, ctx) => ctx.log('mail ' + ev.session.refusedRecipients),
  rcpt: (ev, ctx) => { ctx.log('rcpt ' + ev.session.refusedRecipients); if (ev.rcpt.address.startsWith('no')) return reject(550, 'No'); },
} });
`);
    const h = await loadRule(file, { config });
    t.after(() => h.close());
    const s = await h.connect({ ip: '198.51.100.30', helo: 'mx.example.org' });
    await s.mail('');
    assert.equal((await s.rcpt('nobody@localhost')).reply, '550 5.7.1 No');
    assert.equal((await s.rcpt('x@example.com')).reply, '554 5.7.1 Relaying denied');
    assert.deepEqual((await s.rcpt('alice@localhost')).logs, ['rcpt 2']);
    s.rset();
    assert.deepEqual((await s.mail('a@example.org')).logs, ['mail 2']);
    assert.deepEqual((await s.rcpt('alice@localhost')).logs, ['rcpt 2']);
  });

  it('after maxRefused refused RCPTs the next RCPT is answered 421 4.7.0', async (t) => {
    const h = await loadRule(rule('rcpt-failures'), refusing);
    t.after(() => h.close());
    const s = await h.connect({ ip: '198.51.100.31', helo: 'mx.example.org' });
    await s.mail('a@example.org');
    for (let i = 0; i < 3; i++) assert.equal((await s.rcpt(`u${i}@example.com`)).reply, '554 5.7.1 Relaying denied');
    const r = await s.rcpt('alice@localhost');
    assert.equal(r.reply, '421 4.7.0 Too many refused recipients');
    assert.equal(r.rule, 'rcpt-failures');
  });

  it('RSET does not reset the count: the next MAIL is dropped', async (t) => {
    const h = await loadRule(rule('rcpt-failures'), refusing);
    t.after(() => h.close());
    const s = await h.connect({ ip: '198.51.100.32', helo: 'mx.example.org' });
    await s.mail('a@example.org');
    for (let i = 0; i < 2; i++) await s.rcpt(`u${i}@example.com`);
    s.rset();
    await s.mail('a@example.org');
    assert.equal((await s.rcpt('alice@localhost')).reply, null);
    await s.rcpt('u3@example.com');
    s.rset();
    assert.equal((await s.mail('a@example.org')).reply, '421 4.7.0 Too many refused recipients');
  });

  it('fewer refusals, or a new connection, pass', async (t) => {
    const h = await loadRule(rule('rcpt-failures'), refusing);
    t.after(() => h.close());
    const s = await h.connect({ ip: '198.51.100.33', helo: 'mx.example.org' });
    await s.mail('a@example.org');
    for (let i = 0; i < 2; i++) await s.rcpt(`u${i}@example.com`);
    assert.equal((await s.rcpt('alice@localhost')).reply, null);
    assert.equal((await s.data()).reply, null);
    const t2 = await h.connect({ ip: '198.51.100.33', helo: 'mx.example.org' });
    await t2.mail('a@example.org');
    assert.equal((await t2.rcpt('alice@localhost')).reply, null);
  });
});

describe('tarpit', () => {
  it('after afterRecipients RCPTs each reply waits delayMs × multiplier^k, capped by limits.maxDelayMs; nothing is refused', async (t) => {
    const h = await loadRule(rule('tarpit'), { config: { ...CONFIG, limits: { maxDelayMs: 5000 } }, options: { afterRecipients: 2, delayMs: 1000, multiplier: 2 } });
    t.after(() => h.close());
    const s = await h.connect({ ip: '198.51.100.40', helo: 'mx.example.org' });
    assert.equal((await s.mail('a@example.org')).delayMs, 0);
    const delays: number[] = [];
    for (const r of ['a', 'b', 'c', 'd']) {
      const step = await s.rcpt(`${r}@localhost`);
      assert.equal(step.reply, null);
      delays.push(step.delayMs);
    }
    assert.deepEqual(delays, [0, 0, 1000, 2000]);
    assert.equal((await s.data()).delayMs, 4000);
    const m = await s.message({ headers: { Subject: 'x' } }, { skipData: true });
    assert.equal(m.delayMs, 5000); // 8000, capped
    assert.notEqual(m.accepted, null);
    // The next transaction starts from zero.
    await s.mail('a@example.org');
    assert.equal((await s.rcpt('a@localhost')).delayMs, 0);
  });

  it('refused RCPTs count; multiplier 1 is a constant delay', async (t) => {
    const h = await loadRule(rule('tarpit'), { config: CONFIG, options: { afterRecipients: 1, delayMs: 700, multiplier: 1 } });
    t.after(() => h.close());
    const s = await h.connect({ ip: '198.51.100.41', helo: 'mx.example.org' });
    await s.mail('a@example.org');
    assert.equal((await s.rcpt('x@example.com')).reply, '554 5.7.1 Relaying denied');
    assert.deepEqual([(await s.rcpt('a@localhost')).delayMs, (await s.rcpt('b@localhost')).delayMs, (await s.data()).delayMs], [700, 700, 700]);
  });

  it('spares a client marked well-behaved, unless spareWellBehaved is false', async (t) => {
    /** The delays of 3 RCPTs and DATA from a client marked well-behaved an hour ago. */
    async function delays(options: Record<string, unknown>, ip: string): Promise<number[]> {
      const h = await loadRule(rule('tarpit'), { config: CONFIG, options: { afterRecipients: 1, delayMs: 700, multiplier: 1, ...options } });
      t.after(() => h.close());
      h.store.markWellBehaved(ip, 30 * 86400, 'greylist', h.clock.now() - 3600_000);
      const s = await h.connect({ ip, helo: 'mx.example.org' });
      await s.mail('a@example.org');
      return [(await s.rcpt('a@localhost')).delayMs, (await s.rcpt('b@localhost')).delayMs, (await s.rcpt('c@localhost')).delayMs, (await s.data()).delayMs];
    }
    assert.deepEqual(await delays({}, '198.51.100.42'), [0, 0, 0, 0]);
    assert.deepEqual(await delays({ spareWellBehaved: false }, '198.51.100.43'), [0, 700, 700, 700]);
  });

  it('with greylisting: the client whose retry passed is no longer tarpitted, from the next phase on; a new client is', async (t) => {
    const h = await loadRuleSet({ config: { ...CONFIG, rules: { settings: {
      greylist: { enabled: true, options: { drop: false } },
      tarpit: { enabled: true, priority: 10, options: { afterRecipients: 0, delayMs: 700, multiplier: 1 } }, // before greylist: its refusals wait too
    } } } });
    t.after(() => h.close());
    const first = await h.connect({ ip: '198.51.100.44', helo: 'mx.example.org' });
    await first.mail('news@example.org');
    const grey = await first.rcpt('alice@localhost');
    assert.deepEqual([grey.reply, grey.delayMs], ['450 4.7.1 Greylisted: please try again later', 700]);
    h.clock.advance(6 * 60_000);
    const retry = await h.connect({ ip: '198.51.100.44', helo: 'mx.example.org' });
    await retry.mail('news@example.org');
    const passed = await retry.rcpt('alice@localhost');
    assert.deepEqual([passed.reply, passed.delayMs, passed.wellBehaved?.rule], [null, 700, 'greylist']); // marked by a later rule of the phase
    assert.equal((await retry.data()).delayMs, 0);
    const next = await h.connect({ ip: '198.51.100.44', helo: 'mx.example.org' });
    await next.mail('news@example.org');
    assert.deepEqual([(await next.rcpt('alice@localhost')).delayMs, (await next.rcpt('bob@localhost')).delayMs], [0, 0]);
    const stranger = await h.connect({ ip: '203.0.113.44', helo: 'mx.example.org' });
    await stranger.mail('news@example.org');
    assert.equal((await stranger.rcpt('alice@localhost')).delayMs, 700);
  });
});

describe('concurrent-connections', () => {
  it('the session past maxSessions open at once gets 421 4.7.0; once one closes, a new one passes', async (t) => {
    const h = await loadRule(rule('concurrent-connections'), { config: CONFIG, options: { maxSessions: 2 } });
    t.after(() => h.close());
    const a = await h.connect({ ip: '198.51.100.50' });
    const b = await h.connect({ ip: '198.51.100.50' });
    assert.equal(b.connected.reply, null);
    const c = await h.connect({ ip: '198.51.100.50' });
    assert.equal(c.connected.reply, '421 4.7.0 Too many concurrent connections from 198.51.100.50; try again later');
    assert.equal(c.connected.rule, 'concurrent-connections');
    await c.close();
    assert.equal((await h.connect({ ip: '198.51.100.51' })).connected.reply, null);
    await a.close();
    assert.equal((await h.connect({ ip: '198.51.100.50' })).connected.reply, null);
    await b.close();
  });
});

describe('slow-reply', () => {
  it("every reply waits delayMs (smtpf's smtp-slow-reply); a client marked well-behaved is answered at once", async (t) => {
    const h = await loadRule(rule('slow-reply'), { config: CONFIG, options: { delayMs: 500 } });
    t.after(() => h.close());
    /** The delays of MAIL, RCPT, DATA and the end of data for a client from `ip`. */
    async function delays(ip: string): Promise<number[]> {
      const s = await h.connect({ ip, helo: 'mx.example.org' });
      const out = [(await s.mail('a@example.org')).delayMs, (await s.rcpt('a@localhost')).delayMs, (await s.data()).delayMs];
      out.push((await s.message({ headers: { Subject: 'x' } }, { skipData: true })).delayMs);
      return out;
    }
    assert.deepEqual(await delays('198.51.100.50'), [500, 500, 500, 500]);
    h.store.markWellBehaved('198.51.100.51', 86400, 'greylist', h.clock.now());
    assert.deepEqual(await delays('198.51.100.51'), [0, 0, 0, 0]);
  });
});
