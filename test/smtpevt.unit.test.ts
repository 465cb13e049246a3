/**
 * The SmtpEvt rules through the rule harness: all built-in rules together, a fake clock
 * for the watchlist windows, a store preset with mailboxes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadRule, loadRuleSet, type Harness } from '../host/testing/harness.js';

let h: Harness;
before(async () => {
  h = await loadRuleSet({ config: { hostname: 'mx.portcullis.test', localDomains: ['localhost', 'example.net', 'open.example'], mailboxes: ['alice@localhost', 'bob@localhost', '*@example.net']} });
});
after(() => h.close());

let n = 0;
/** A new client address per test, so watchlists and the blacklist do not leak between tests. */
const ip = () => `198.51.100.${++n}`;
const good = (o: { ip?: string } = {}) => h.connect({ ip: o.ip ?? ip(), ptr: 'mx.example.org', helo: 'mx.example.org' });

describe('suspicious-helo', () => {
  for (const [name, tag] of [
    ['198.51.100.200', 'bare IP address 198.51.100.200 (not in brackets)'],
    ['[192.0.2.99]', "IP literal [192.0.2.99] is not the client's address"],
    ['mailhost', 'unqualified name mailhost'],
    ['mx.portcullis.test', 'our own name mx.portcullis.test'],
    ['example.net', 'our own name example.net'],
  ] as const) {
    it(`tags HELO ${name}: X-HELO: ${tag}`, async () => {
      const s = await h.connect({ ip: '192.0.2.1' });
      assert.deepEqual((await s.helo(name)).headers, [['X-HELO', tag]]);
    });
  }

  it('leaves a proper name or the client\'s own literal alone', async () => {
    const s = await h.connect({ ip: '192.0.2.1' });
    assert.deepEqual((await s.helo('mx.example.org')).headers, []);
    assert.deepEqual((await s.helo('[192.0.2.1]')).headers, []);
  });
});

describe('invalid-recipient', () => {
  it('refuses a missing mailbox when the client looks like a bot (no PTR) or the sender is null', async () => {
    const s = await h.connect({ ip: ip(), helo: 'mx.example.org' });
    await s.mail('a@example.org');
    assert.equal((await s.rcpt('nobody@localhost')).reply, '550 5.1.1 No such user here: nobody@localhost');
    const t = await good();
    await t.mail('');
    assert.equal((await t.rcpt('nobody@localhost')).reply, '550 5.1.1 No such user here: nobody@localhost');
  });

  it('accepts it from a proper client but counts it; past maxFailedRcpts the connection is dropped', async () => {
    const s = await good();
    await s.mail('a@example.org');
    assert.equal((await s.rcpt('alice@localhost')).reply, null);
    assert.equal((await s.rcpt('postmaster@localhost')).reply, null);
    assert.equal((await s.rcpt('anyone@example.net')).reply, null);
    for (let i = 1; i <= 5; i++) assert.equal((await s.rcpt(`x${i}@localhost`)).reply, null);
    assert.equal((await s.rcpt('x6@localhost')).reply, '421 4.7.0 Too many invalid recipients');
  });
});

describe('missing-date-bulk', () => {
  async function send(headers: Record<string, string>, rcpt = 'nobody@localhost') {
    const s = await good();
    await s.mail('a@example.org');
    await s.rcpt(rcpt);
    return s.message({ headers: { Subject: 'hi', ...headers }, body: 'x' });
  }

  it('drops an undated message to an invalid recipient', async () => {
    assert.equal((await send({})).reply, '421 4.7.0 Message refused: no Date header');
  });

  it('discards bulk mail to an invalid recipient', async () => {
    const r = await send({ Date: 'Mon, 05 Jan 2026 10:00:00 +0000', Precedence: 'bulk' });
    assert.deepEqual([r.reply, r.accepted?.disposition, r.accepted?.reason], [null, 'discard', 'bulk-invalid-rcpt']);
  });

  it('leaves mail to valid recipients alone', async () => {
    assert.equal((await send({}, 'alice@localhost')).accepted?.disposition, 'deliver');
    assert.equal((await send({ Date: 'Mon, 05 Jan 2026 10:00:00 +0000' })).accepted?.disposition, 'deliver');
  });

  it('score mode: an undated bulk message to an invalid recipient adds both symbols and is delivered', async () => {
    await using h2 = await loadRule('rules/missing-date-bulk.ts', { options: { score: 3 }, config: { mailboxes: ['alice@localhost'] } });
    const s = await h2.connect({ ip: ip(), ptr: 'mx.example.org', helo: 'mx.example.org' });
    await s.mail('a@example.org');
    await s.rcpt('nobody@localhost');
    const r = await s.message({ headers: { Subject: 'hi', Precedence: 'bulk' }, body: 'x' });
    assert.deepEqual([r.reply, r.scores, r.accepted?.disposition], [null, [['no-date-invalid-rcpt', 3], ['bulk-invalid-rcpt', 3]], 'deliver']);
    assert.deepEqual(r.accepted?.headers, [['X-Portcullis-Score', '6 (no-date-invalid-rcpt=3 bulk-invalid-rcpt=3)']]);
  });
});

describe('bad-local-sender', () => {
  it('drops a sender claiming a missing local mailbox; 5 within 5 minutes blacklist the client', async () => {
    const addr = ip();
    for (let i = 1; i <= 5; i++) {
      const s = await good({ ip: addr });
      const r = await s.mail('nobody@localhost');
      assert.equal(r.reply, '421 4.7.0 Sender address rejected: no such local mailbox');
      assert.equal(r.blacklist?.reason ?? null, i === 5 ? 'repeated bad local sender' : null);
      h.clock.advance(30_000);
    }
    assert.equal((await h.connect({ ip: addr })).connected.reply, '554 5.7.1 Access denied: repeated bad local sender');
  });

  it('does not blacklist when the attempts are spread out, nor flag domain-wide mailboxes', async () => {
    const addr = ip();
    for (let i = 0; i < 6; i++) {
      const s = await good({ ip: addr });
      assert.equal((await s.mail('nobody@localhost')).blacklist, null);
      h.clock.advance(2 * 60_000);
    }
    const s = await good({ ip: addr });
    assert.equal((await s.mail('whoever@example.net')).reply, null);
  });
});

describe('identical-sender-rcpt', () => {
  it('tags X-Identical, and X-Blocked for a single recipient that is not a local mailbox', async () => {
    const s = await good();
    // open.example is local with no mailbox list: its addresses are not known mailboxes.
    await s.mail('someone@open.example');
    assert.deepEqual((await s.rcpt('Someone@open.example')).headers, [['X-Identical', 'From and Rcpt identical']]);
    assert.deepEqual((await s.data()).headers, [['X-Blocked', 'identical-sender-rcpt']]);
  });

  it('the third time within 10 minutes drops and blacklists the client', async () => {
    const addr = ip();
    const replies: (string | null)[] = [];
    for (let i = 0; i < 3; i++) {
      const s = await good({ ip: addr });
      await s.mail('self@open.example');
      replies.push((await s.rcpt('self@open.example')).reply);
    }
    assert.deepEqual(replies, [null, null, '421 4.7.0 Too many messages from an address to itself']);
    assert.equal(h.store.blacklistGet(addr, h.clock.now())?.rule, 'identical-sender-rcpt');
  });

  it('score mode: each time adds its points, with no header and no watchlist (the third time is not dropped)', async () => {
    await using h2 = await loadRule('rules/identical-sender-rcpt.ts', { options: { score: 2 }, config: { localDomains: ['localhost', 'open.example'] } });
    const addr = ip();
    for (let i = 0; i < 3; i++) {
      const s = await h2.connect({ ip: addr, ptr: 'mx.example.org', helo: 'mx.example.org' });
      await s.mail('self@open.example');
      const r = await s.rcpt('self@open.example');
      assert.deepEqual([r.reply, r.headers, r.scores], [null, [], [['identical-sender-rcpt', 2]]]);
      assert.deepEqual((await s.message({ headers: { Subject: 'note to self' } })).accepted?.headers, [['X-Portcullis-Score', '2 (identical-sender-rcpt=2)']]);
    }
    assert.equal(h2.store.blacklistGet(addr, h2.clock.now()), undefined);
  });
});

describe('mass-mailing', () => {
  async function mailing(rcpts: number, size: number, auth: boolean) {
    const s = await good();
    if (auth) await s.auth('alice');
    await s.mail(auth ? 'alice@localhost' : 'news@example.org', { SIZE: String(size) });
    for (let i = 0; i < rcpts; i++) await s.rcpt(`r${i}@example.net`);
    return (await s.data()).reply;
  }

  it('refuses a big message to many recipients from a local user', async () => {
    assert.equal(await mailing(11, 5_000_001, true), '552 5.3.4 Too large a message for 11 recipients; send it to fewer at a time');
    assert.equal(await mailing(26, 2_600_000, true), '552 5.3.4 Too large a message for 26 recipients; send it to fewer at a time');
  });

  it('lets smaller mailings and outside senders through', async () => {
    assert.equal(await mailing(10, 5_000_001, true), null);
    assert.equal(await mailing(11, 4_000_000, true), null);
    assert.equal(await mailing(11, 5_000_001, false), null);
  });
});

describe('subject-spam', () => {
  it('drops and blacklists a spam subject to an invalid recipient, and learns it', async () => {
    const h2 = await loadRuleSet({ config: { mailboxes: ['alice@localhost'], rules: { settings: { 'subject-spam': { options: { learn: true } } } } } });
    try {
      const addr = ip();
      const s = await h2.connect({ ip: addr, ptr: 'mx.example.org', helo: 'mx.example.org' });
      await s.mail('a@example.org');
      await s.rcpt('nobody@localhost');
      const r = await s.message({ headers: { Subject: 'Win the LOTTERY now', Date: 'Mon, 05 Jan 2026 10:00:00 +0000' } });
      assert.equal(r.reply, '421 4.7.0 Message refused');
      assert.equal(r.blacklist?.reason, 'spam subject to an invalid recipient');
      assert.deepEqual(h2.store.listValues('spam-subjects'), ['Win the LOTTERY now']);
    } finally {
      await h2.close();
    }
  });

  it('after an unqualified HELO only tags; without a trigger it does not look', async () => {
    const s = await h.connect({ ip: ip(), ptr: 'x.example.org', helo: 'desktop' });
    await s.mail('a@example.org');
    await s.rcpt('alice@localhost');
    const r = await s.message({ headers: { Subject: 'cheap casino chips', Date: 'Mon, 05 Jan 2026 10:00:00 +0000' } });
    assert.deepEqual(r.accepted?.headers, [['X-HELO', 'unqualified name desktop'], ['X-Blocked', 'subject-spam']]);
    const t = await good();
    await t.mail('a@example.org');
    await t.rcpt('alice@localhost');
    assert.deepEqual((await t.message({ headers: { Subject: 'casino night', Date: 'Mon, 05 Jan 2026 10:00:00 +0000' } })).accepted?.headers, []);
  });

  it('score mode: every subject is scanned, and a match adds its points instead of dropping, blacklisting or tagging', async () => {
    await using h2 = await loadRule('rules/subject-spam.ts', { options: { score: 4 }, config: { mailboxes: ['alice@localhost'] } });
    const s = await h2.connect({ ip: ip(), ptr: 'mx.example.org', helo: 'mx.example.org' });
    for (const rcpt of ['nobody@localhost', 'alice@localhost']) { // with SmtpEvt's trigger (an invalid recipient), and without
      await s.mail('a@example.org');
      await s.rcpt(rcpt);
      const r = await s.message({ headers: { Subject: 'You won the lottery', Date: 'Mon, 05 Jan 2026 10:00:00 +0000' } });
      assert.deepEqual([r.reply, r.blacklist, r.scores], [null, null, [['subject-spam', 4]]]);
      assert.deepEqual(r.accepted?.headers, [['X-Portcullis-Score', '4 (subject-spam=4)']]);
    }
  });

  it('a message without a Subject after an unqualified HELO is accepted untouched (found by npm run bench)', async () => {
    const s = await h.connect({ ip: ip(), ptr: 'x.example.org', helo: 'localhost' });
    await s.mail('a@example.org');
    await s.rcpt('alice@localhost');
    const r = await s.message({ headers: { Date: 'Mon, 05 Jan 2026 10:00:00 +0000' } });
    assert.equal(r.reply, null);
    assert.equal(r.failure, null);
  });
});

describe('auth-brute-force', () => {
  it('the sixth failed AUTH within 2 minutes drops and blacklists for 3 hours', async () => {
    const addr = ip();
    const s = await good({ ip: addr });
    for (let i = 0; i < 5; i++) assert.equal((await s.auth('alice', { success: false })).reply, '535 5.7.8 Authentication credentials invalid');
    const r = await s.auth('alice', { success: false });
    assert.equal(r.reply, '421 4.7.0 Too many failed authentication attempts');
    assert.equal(h.store.blacklistGet(addr, h.clock.now())?.expires, h.clock.now() + 180 * 60_000);
    h.clock.advance(181 * 60_000);
    assert.equal((await h.connect({ ip: addr })).connected.reply, null);
  });
});

describe('connect-flood', () => {
  it('5 connections that never sent MAIL FROM within 2 minutes blacklist the client', async () => {
    const addr = ip();
    for (let i = 0; i < 5; i++) {
      const s = await h.connect({ ip: addr, helo: 'x.example.org' });
      const r = await s.close();
      assert.equal(r.blacklist?.reason ?? null, i === 4 ? 'connect flood' : null);
    }
    assert.equal((await h.connect({ ip: addr })).connected.reply, '554 5.7.1 Access denied: connect flood');
  });
});

describe('authenticated clients', () => {
  it('pass the SmtpEvt checks (mass-mailing excepted)', async () => {
    const s = await h.connect({ ip: ip(), helo: 'desktop' });
    await s.auth('alice');
    assert.equal((await s.mail('nobody@localhost')).reply, null);
    assert.equal((await s.rcpt('nobody2@localhost')).reply, null);
  });
});
