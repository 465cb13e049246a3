/**
 * The DNS rules through the rule harness with fake DNS answers (the same fact code as
 * the server, a table instead of a resolver): every ZEN and DBL answer code, the generic
 * lists with weights, the sender-domain check, and the SmtpEvt rules' DNSBL signs.
 * test/dns.test.ts runs the same rules against real DNS servers over SMTP.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fakeDns, loadRule, loadRuleSet, type DnsTable } from '../host/testing/harness.js';

const ZEN = 'zen.spamhaus.org';
const rule = (name: string) => `rules/${name}.ts`;
const good = { ptr: 'mx.example.org', helo: 'mx.example.org' };

describe('spamhaus-zen', () => {
  const dns: DnsTable = {
    ...fakeDns.listed(ZEN, '192.0.2.2', '127.0.0.2', 'https://check.spamhaus.org/sbl/'),
    ...fakeDns.listed(ZEN, '192.0.2.3', '127.0.0.3'),
    ...fakeDns.listed(ZEN, '192.0.2.4', '127.0.0.4'),
    ...fakeDns.listed(ZEN, '192.0.2.7', '127.0.0.7'),
    ...fakeDns.listed(ZEN, '192.0.2.10', '127.0.0.10'),
    ...fakeDns.listed(ZEN, '192.0.2.11', '127.0.0.11'),
    ...fakeDns.listed(ZEN, '192.0.2.254', '127.255.255.254'),
    ...fakeDns.timeout(ZEN, '192.0.2.99'),
  };

  for (const ip of ['192.0.2.2', '192.0.2.3']) {
    it(`SBL (${ip}) is refused at RCPT with 554 5.7.1`, async () => {
      await using h = await loadRule(rule('spamhaus-zen'), { dns });
      const s = await h.connect({ ip, ...good });
      await s.mail('a@example.org');
      const r = await s.rcpt('user@localhost');
      assert.equal(r.reply, `554 5.7.1 Service unavailable; client [${ip}] blocked using ${ZEN} (SBL)`);
      assert.match(r.logs[0]!, /is in the SBL/);
    });
  }

  for (const ip of ['192.0.2.4', '192.0.2.7']) {
    it(`XBL (${ip}) with a clean session is tagged X-Blocked; with a spam sign it is refused`, async () => {
      await using h = await loadRule(rule('spamhaus-zen'), { dns, config: { mailboxes: ['user@localhost'] } });
      const s = await h.connect({ ip, ...good });
      await s.mail('a@example.org');
      assert.equal((await s.rcpt('user@localhost')).reply, null);
      const code = `127.0.0.${ip.split('.')[3]}`;
      assert.deepEqual((await s.data()).headers, [['X-Blocked', `${ZEN} (XBL ${code})`]]);

      const bot = await h.connect({ ip, helo: 'bot' }); // unqualified HELO and no PTR
      await bot.mail('a@example.org');
      assert.equal((await bot.rcpt('user@localhost')).reply, `554 5.7.1 Service unavailable; client [${ip}] blocked using ${ZEN} (XBL)`);
    });
  }

  it('XBL with an invalid recipient earlier in the transaction is refused at DATA', async () => {
    await using h = await loadRuleSet({ dns, config: { mailboxes: ['user@localhost'], rules: { settings: { 'invalid-recipient': { options: { noPtrIsSign: false } } } } } });
    const s = await h.connect({ ip: '192.0.2.4', ...good });
    await s.mail('a@example.org');
    // invalid-recipient counts ZEN listings as a sign, so the bad RCPT is refused outright
    assert.equal((await s.rcpt('nobody@localhost')).reply, '550 5.1.1 No such user here: nobody@localhost');
    assert.equal((await s.rcpt('user@localhost')).reply, null);
    assert.equal((await s.data()).reply, `554 5.7.1 Service unavailable; client [192.0.2.4] blocked using ${ZEN} (XBL)`);
  });

  for (const ip of ['192.0.2.10', '192.0.2.11']) {
    it(`PBL (${ip}) adds X-PBL on port 25, not on a submission port or after AUTH`, async () => {
      await using h = await loadRule(rule('spamhaus-zen'), { dns });
      const s = await h.connect({ ip, ...good });
      await s.mail('a@example.org');
      await s.rcpt('user@localhost');
      assert.deepEqual((await s.data()).headers, [['X-PBL', `${ip} listed in the Spamhaus PBL`]]);
      const sub = await h.connect({ ip, ...good, localPort: 587 });
      await sub.mail('a@example.org');
      await sub.rcpt('user@localhost');
      assert.deepEqual((await sub.data()).headers, []);
      const authed = await h.connect({ ip, ...good });
      await authed.auth('alice');
      await authed.mail('alice@localhost');
      await authed.rcpt('someone@example.org');
      assert.deepEqual((await authed.data()).headers, []);
    });
  }

  it('a refused query (127.255.255.x) and a timeout count as not listed; the refusal is logged loudly', async () => {
    await using h = await loadRule(rule('spamhaus-zen'), { dns });
    for (const ip of ['192.0.2.254', '192.0.2.99', '192.0.2.1']) {
      const s = await h.connect({ ip, helo: 'bot' });
      await s.mail('a@example.org');
      assert.equal((await s.rcpt('user@localhost')).reply, null, ip);
      assert.deepEqual((await s.data()).headers, [], ip);
    }
    assert.ok(h.logs.some((l) => l.level === 50 && /REFUSED our queries/.test(String(l.msg))));
    assert.equal(await h.metrics.get('dns_errors_total', { zone: ZEN, code: 'ETIMEOUT' }), 1);
  });

  it('caches answers (listed and not) for dns.cacheTtlSeconds, but never failures', async () => {
    await using h = await loadRule(rule('spamhaus-zen'), { dns, config: { dns: { cacheTtlSeconds: 60 } } });
    const run = async (ip: string) => {
      const s = await h.connect({ ip, ...good });
      await s.mail('a@example.org');
      return (await s.rcpt('user@localhost')).reply;
    };
    for (const ip of ['192.0.2.2', '192.0.2.1', '192.0.2.99']) await run(ip);
    assert.equal(await h.metrics.get('dns_lookups_total', { kind: 'dnsbl' }), 3);
    for (const ip of ['192.0.2.2', '192.0.2.1', '192.0.2.99']) await run(ip);
    assert.equal(await h.metrics.get('dns_cache_hits_total', { kind: 'dnsbl' }), 2);
    assert.equal(await h.metrics.get('dns_lookups_total', { kind: 'dnsbl' }), 4); // the timeout is asked again
    h.clock.advance(61_000);
    assert.match((await run('192.0.2.2'))!, /SBL/);
    assert.equal(await h.metrics.get('dns_lookups_total', { kind: 'dnsbl' }), 5);
  });
});

describe('spamhaus-dbl', () => {
  const dns: DnsTable = {
    ...fakeDns.listed('dbl.spamhaus.org', 'spam.example', '127.0.1.2'),
    ...fakeDns.listed('dbl.spamhaus.org', 'phish.example', '127.0.1.4'),
    ...fakeDns.listed('dbl.spamhaus.org', 'hacked.example', '127.0.1.102'),
    ...fakeDns.listed('dbl.spamhaus.org', 'odd.example', '127.0.1.255'),
  };
  it('refuses MAIL FROM a spam domain, tags an abused-legit one, ignores other answers and <>', async () => {
    await using h = await loadRule(rule('spamhaus-dbl'), { dns });
    const s = await h.connect(good);
    assert.equal((await s.mail('x@spam.example')).reply, '550 5.7.1 Sender address rejected: spam.example blocked using dbl.spamhaus.org');
    assert.equal((await s.mail('x@PHISH.example')).reply, '550 5.7.1 Sender address rejected: phish.example blocked using dbl.spamhaus.org');
    assert.equal((await s.mail('x@hacked.example')).reply, null);
    await s.rcpt('user@localhost');
    assert.deepEqual((await s.data()).headers, [['X-DBL', 'hacked.example abused-legit (127.0.1.102)']]);
    for (const from of ['x@odd.example', '', 'x@clean.example']) {
      const t = await h.connect(good);
      assert.equal((await t.mail(from)).reply, null, from);
      await t.rcpt('user@localhost');
      assert.deepEqual((await t.data()).headers, [], from);
    }
  });
});

describe('dnsbl (generic lists)', () => {
  const dns: DnsTable = {
    ...fakeDns.listed('bl.example', '192.0.2.5', '127.0.0.2', 'see https://bl.example/192.0.2.5'),
    ...fakeDns.listed('bl.example', '192.0.2.6', '127.0.0.2'),
    ...fakeDns.listed('weak.example', '192.0.2.6', '127.0.0.2'),
    ...fakeDns.listed('weak.example', '192.0.2.8', '127.0.0.2'),
    ...fakeDns.listed('weak.example', '192.0.2.5', '127.0.0.2'),
    ...fakeDns.listed('wl.example', '192.0.2.5', '127.0.10.3'),
    ...fakeDns.listed('rhs.example', 'spammer.example', '127.0.0.2'),
  };
  const load = (options: Record<string, unknown>) => loadRule(rule('dnsbl'), { dns, options });
  const rcpt = async (h: Awaited<ReturnType<typeof load>>, ip: string, from = 'a@example.org') => {
    const s = await h.connect({ ip, ...good });
    await s.mail(from);
    return { s, r: await s.rcpt('user@localhost') };
  };

  it('each list acts on its own by default: reject with a custom text, tag, redirect, drop + blacklist', async () => {
    {
      await using h = await load({ lists: [{ name: 'bl', zone: 'bl.example', text: 'Mail refused. {ip} is listed: {text}' }] });
      assert.equal((await rcpt(h, '192.0.2.5')).r.reply, '550 5.7.1 Mail refused. 192.0.2.5 is listed: see https://bl.example/192.0.2.5');
      assert.equal((await rcpt(h, '192.0.2.7')).r.reply, null);
    }
    {
      await using h = await load({ lists: [{ name: 'bl', zone: 'bl.example', action: 'tag' }, { name: 'weak', zone: 'weak.example', action: 'tag', header: 'X-Weak' }] });
      const { s, r } = await rcpt(h, '192.0.2.6');
      assert.equal(r.reply, null);
      assert.deepEqual((await s.data()).headers, [['X-Blocked', 'bl'], ['X-Weak', 'weak']]);
    }
    {
      await using h = await load({ lists: [{ name: 'bl', zone: 'bl.example', action: 'redirect', address: 'spamtrap@localhost' }] });
      const { s } = await rcpt(h, '192.0.2.6');
      await s.data();
      const m = await s.message('Subject: x\r\n\r\nhi\r\n');
      assert.deepEqual([m.accepted?.disposition, m.accepted?.redirectTo], ['redirect', 'spamtrap@localhost']);
    }
    {
      await using h = await load({ lists: [{ name: 'bl', zone: 'bl.example', action: 'drop' }] });
      const { r } = await rcpt(h, '192.0.2.6');
      assert.equal(r.reply, '421 4.7.0 Mail refused: 192.0.2.6 is listed by bl');
      assert.equal(h.store.blacklistGet('192.0.2.6', h.clock.now())?.reason, 'listed in bl');
      assert.ok(h.store.blacklistGet('192.0.2.6', h.clock.now() + 29 * 60_000));
      assert.equal(h.store.blacklistGet('192.0.2.6', h.clock.now() + 31 * 60_000), undefined);
    }
  });

  it('weights and a threshold: two weak lists add up; an allow list (DNSWL) lowers the score', async () => {
    await using h = await load({
      threshold: 3,
      lists: [
        { name: 'bl', zone: 'bl.example', weight: 2 },
        { name: 'weak', zone: 'weak.example', weight: 1 },
        { name: 'dnswl', zone: 'wl.example', answers: ['127.0.[0..255].[2..3]'], weight: -5 },
      ],
    });
    assert.equal((await rcpt(h, '192.0.2.6')).r.reply, '550 5.7.1 Mail refused: 192.0.2.6 is listed by bl'); // 2 + 1
    assert.equal((await rcpt(h, '192.0.2.8')).r.reply, null); // 1
    assert.equal((await rcpt(h, '192.0.2.5')).r.reply, null); // 2 + 1 - 5
  });

  it('score mode: each listing adds weight × score under dnsbl-<name> at RCPT (an allow list takes off); no list acts on its own', async () => {
    await using h = await load({
      score: 2,
      lists: [
        { name: 'BL', zone: 'bl.example', action: 'drop' },
        { name: 'weak', zone: 'weak.example', weight: 0.5, action: 'tag' },
        { name: 'dnswl', zone: 'wl.example', answers: ['127.0.[0..255].[2..3]'], weight: -1 },
      ],
    });
    const { s, r } = await rcpt(h, '192.0.2.5');
    assert.deepEqual([r.reply, r.scores], [null, [['dnsbl-bl', 2], ['dnsbl-weak', 1], ['dnsbl-dnswl', -2]]]);
    assert.equal(h.store.blacklistGet('192.0.2.5', h.clock.now()), undefined);
    const m = await s.message('Subject: x\r\n\r\nhi\r\n');
    assert.deepEqual(m.accepted?.headers, [['X-Portcullis-Score', '1 (dnsbl-bl=2 dnsbl-weak=1 dnsbl-dnswl=-2)']]);
  });

  it('an RHSBL list looks up the MAIL FROM domain; disabled lists are not looked up', async () => {
    await using h = await load({ lists: [{ name: 'rhs', zone: 'rhs.example', on: 'sender' }, { name: 'off', zone: 'bl.example', action: 'disabled' }] });
    assert.equal((await rcpt(h, '192.0.2.5', 'x@spammer.example')).r.reply, '550 5.7.1 Mail refused: 192.0.2.5 is listed by rhs');
    assert.equal((await rcpt(h, '192.0.2.5', 'x@fine.example')).r.reply, null);
    assert.equal(await h.metrics.get('dns_lookups_total', { kind: 'dnsbl' }), 0);
  });

  it('a bad list definition is a config error naming the path', async () => {
    await assert.rejects(load({ lists: [{ name: 'x', zone: 'not a zone', action: 'bounce' }] }), (e: Error) => {
      assert.match(e.message, /\/rules\/settings\/dnsbl\/options\/lists\/0\/zone: must match pattern/);
      assert.match(e.message, /\/rules\/settings\/dnsbl\/options\/lists\/0\/action: must be one of/);
      return true;
    });
  });
});

describe('sender-domain', () => {
  const dns: DnsTable = { ...fakeDns.mx('mx.example', 'mail.mx.example'), ...fakeDns.mx('aonly.example'), 'broken.example': 'ESERVFAIL', 'nullmx.example': { MX: ['.'] } };
  it('refuses a domain with no MX and no address (550 5.1.8); MX, A, DNS failure, <> and local domains pass', async () => {
    await using h = await loadRule(rule('sender-domain'), { dns });
    const s = await h.connect(good);
    assert.equal((await s.mail('x@nowhere.example')).reply, '550 5.1.8 Sender address rejected: Domain nowhere.example not found');
    assert.equal((await s.mail('x@nullmx.example')).reply, '550 5.1.8 Sender address rejected: Domain nullmx.example not found');
    for (const from of ['x@mx.example', 'x@aonly.example', 'x@broken.example', '', 'me@localhost']) assert.equal((await s.mail(from)).reply, null, from);
  });

  it('with DNS off (no dns.servers) nothing is checked and nothing waits', async () => {
    await using h = await loadRule(rule('sender-domain'));
    const s = await h.connect(good);
    assert.equal((await s.mail('x@nowhere.example')).reply, null);
  });
});

describe('SmtpEvt rules with a DNSBL hit', () => {
  const dns = { ...fakeDns.listed(ZEN, '192.0.2.4', '127.0.0.4') };
  const config = { mailboxes: ['user@localhost'], rules: { settings: { 'spamhaus-zen': { enabled: false }, 'invalid-recipient': { options: { noPtrIsSign: false } } } } };

  it('invalid-recipient refuses a missing mailbox for a listed client that otherwise looks fine', async () => {
    await using h = await loadRuleSet({ dns, config });
    const s = await h.connect({ ip: '192.0.2.4', ...good });
    await s.mail('a@example.org');
    const r = await s.rcpt('nobody@localhost');
    assert.equal(r.reply, '550 5.1.1 No such user here: nobody@localhost');
    assert.match(r.logs.join('\n'), /listed in zen\.spamhaus\.org \(127\.0\.0\.4\)/);
    const clean = await h.connect({ ip: '192.0.2.5', ...good });
    await clean.mail('a@example.org');
    assert.equal((await clean.rcpt('nobody@localhost')).reply, null);
  });

  it('identical-sender-rcpt drops a listed client at once', async () => {
    await using h = await loadRuleSet({ dns, config });
    const s = await h.connect({ ip: '192.0.2.4', ...good });
    await s.mail('user@localhost');
    assert.equal((await s.rcpt('user@localhost')).reply, '421 4.7.0 Message refused');
  });

  it('subject-spam drops and blacklists a listed client sending a spam subject', async () => {
    await using h = await loadRuleSet({ dns, config });
    const s = await h.connect({ ip: '192.0.2.4', ...good });
    await s.mail('a@example.org');
    await s.rcpt('user@localhost');
    await s.data();
    const m = await s.message('Subject: You have won the lottery\r\nDate: Mon, 5 Jan 2026 10:00:00 +0000\r\n\r\nhi\r\n');
    assert.equal(m.reply, '421 4.7.0 Message refused');
    assert.match(h.store.blacklistGet('192.0.2.4', h.clock.now())!.reason, /listed in zen\.spamhaus\.org/);
  });
});

describe('needs', () => {
  it('an unknown need or a bad zone is a load error naming the rule file', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'needs-'));
    const file = join(dir, 'bad-needs.ts');
    writeFileSync(file, `import { defineRule } from 'portcullis/sdk';\nexport default defineRule({ name: 'bad-needs', needs: ['dnsbl:not a zone', 'ptr' as never], phases: { rcpt: () => undefined } });\n`);
    await assert.rejects(loadRule(file), (e: Error) => {
      assert.match(e.message, /bad-needs\.ts: needs: "dnsbl:not a zone": "not a zone" is not a DNS zone name/);
      assert.match(e.message, /bad-needs\.ts: needs: unknown need "ptr"/);
      return true;
    });
  });
});
