/** The access map rule through the public harness: keys, combos, actions, and whitelists honored first. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fakeDns, loadRule, loadRuleSet } from '../host/testing/harness.js';

const ENTRIES = [
  'Connect:192.0.2.7 OK',
  'Connect:198.51.100.0/24 REJECT Your network sends no mail here',
  'Connect:dialup.example.net TEMPFAIL',
  'From:spammer.example DISCARD',
  'From:<> REJECT No bounces to this host',
  'To:abuse@localhost OK',
  'To:closed@localhost REJECT This mailbox is closed',
  'Connect:203.0.113.0/24 From:partner.example OK',
  'From:partner.example REJECT Only from their own servers',
];
const load = () => loadRule('rules/access.ts', { options: { entries: ENTRIES } });

describe('access', () => {
  it('Connect: an address is accepted for the whole connection; a network refused with 554; a PTR domain tempfailed', async () => {
    await using h = await load();
    assert.equal((await h.connect({ ip: '192.0.2.7' })).connected.verdict.action, 'accept');
    assert.equal((await h.connect({ ip: '198.51.100.9' })).connected.reply, '554 5.7.1 Your network sends no mail here');
    assert.equal((await h.connect({ ip: '192.0.2.50', ptr: 'host-1.pool.dialup.example.net' })).connected.reply, '421 4.7.1 Access temporarily denied', 'at the greeting a 4xx is 421 (RFC 5321 §3.1)');
    assert.equal((await h.connect({ ip: '192.0.2.50', ptr: 'mx.example.net' })).connected.reply, null);
  });

  it('From: a domain and its subdomains, and the null sender', async () => {
    await using h = await load();
    const s = await h.connect({ ip: '192.0.2.60', helo: 'mx.example.net' });
    assert.equal((await s.mail('x@mail.spammer.example')).verdict.action, 'discard');
    assert.equal((await s.mail('')).reply, '550 5.7.1 No bounces to this host');
    assert.equal((await s.mail('someone@example.net')).reply, null);
  });

  it('To: one recipient accepted, another refused', async () => {
    await using h = await load();
    const s = await h.connect({ ip: '192.0.2.61', helo: 'mx.example.net' });
    await s.mail('someone@example.net');
    assert.equal((await s.rcpt('abuse@localhost')).verdict.action, 'accept');
    assert.equal((await s.rcpt('closed@localhost')).reply, '550 5.7.1 This mailbox is closed');
  });

  it('a combo (Connect: and From: on one line) needs both; at one phase an OK beats a deny', async () => {
    await using h = await load();
    const theirs = await h.connect({ ip: '203.0.113.25', helo: 'mx.partner.example' });
    assert.equal((await theirs.mail('news@partner.example')).verdict.action, 'accept');
    const forged = await h.connect({ ip: '192.0.2.62', helo: 'mx.example.net' });
    assert.equal((await forged.mail('news@partner.example')).reply, '550 5.7.1 Only from their own servers');
  });

  it('a whitelisted sender delivers although its client is in a block list (whitelists are honored first)', async () => {
    const dns = fakeDns.listed('zen.spamhaus.org', '192.0.2.66', '127.0.0.2');
    await using h = await loadRuleSet({ dns, config: { rules: { settings: { access: { enabled: true, options: { entries: ['From:dave@bobo.example OK'] } } } } } });
    const listed = await h.connect({ ip: '192.0.2.66', ptr: 'mx.bobo.example', helo: 'mx.bobo.example' });
    await listed.mail('dave@bobo.example');
    assert.equal((await listed.rcpt('user@localhost')).reply, null);
    const other = await h.connect({ ip: '192.0.2.66', ptr: 'mx.bobo.example', helo: 'mx.bobo.example' });
    await other.mail('eve@bobo.example');
    assert.equal((await other.rcpt('user@localhost')).reply, '554 5.7.1 Service unavailable; client [192.0.2.66] blocked using zen.spamhaus.org (SBL)');
  });

  it('SPF-PASS whitelists a sender only from a client its domain authorises by SPF; otherwise the deny lines decide', async () => {
    const entries = ['From:partner.example SPF-PASS', 'From:partner.example REJECT Only from their own servers'];
    await using h = await loadRule('rules/access.ts', { options: { entries }, dns: fakeDns.spf('partner.example', 'v=spf1 ip4:192.0.2.7 -all') });
    const theirs = await h.connect({ ip: '192.0.2.7', helo: 'mx.partner.example' });
    const passed = await theirs.mail('news@partner.example');
    assert.equal(passed.verdict.action, 'accept');
    assert.equal(passed.verdict.reason, 'access-spf-pass');
    const forged = await h.connect({ ip: '192.0.2.8', helo: 'mx.example.net' });
    assert.equal((await forged.mail('news@partner.example')).reply, '550 5.7.1 Only from their own servers');
  });

  it('an SPF-PASS line with only a Connect: key waits for MAIL: SPF needs the sender', async () => {
    await using h = await loadRule('rules/access.ts', { options: { entries: ['Connect:192.0.2.0/24 SPF-PASS'] }, dns: fakeDns.spf('partner.example', 'v=spf1 ip4:192.0.2.7 -all') });
    const s = await h.connect({ ip: '192.0.2.7', helo: 'mx.partner.example' });
    assert.equal(s.connected.verdict.action, 'next', 'no SPF before the sender is known');
    assert.equal((await s.mail('news@partner.example')).verdict.action, 'accept');
    assert.equal((await s.mail('news@elsewhere.example')).verdict.action, 'next', 'no SPF record: no pass');
  });

  it('asks the host for SPF only when the map has an SPF-PASS line', async () => {
    await using without = await load();
    assert.deepEqual(without.ruleSet.rules[0]!.needs, []);
    await using withSpf = await loadRule('rules/access.ts', { options: { entries: ['From:partner.example SPF-PASS'] } });
    assert.deepEqual(withSpf.ruleSet.rules[0]!.needs, ['spf']);
  });

  it('a malformed line is refused at load with its config path', async () => {
    await assert.rejects(loadRule('rules/access.ts', { options: { entries: ['Conect:192.0.2.1 OK'] } }), /\/rules\/settings\/access\/options\/entries\/0: must match pattern/);
  });
});

describe('delayChecks (Postfix smtpd_delay_reject)', () => {
  const entries = ['Connect:198.51.100.0/24 REJECT Your network sends no mail here', 'To:postmaster@localhost OK', 'From:spammer.example REJECT Not from you'];

  it('a refusal at connect is held: 220, 250 to EHLO and MAIL; each RCPT gets it, but a whitelisted recipient passes', async () => {
    await using h = await loadRule('rules/access.ts', { options: { entries }, config: { delayChecks: true } });
    const s = await h.connect({ ip: '198.51.100.9', helo: 'mx.example.net' });
    assert.equal(s.connected.reply, null);
    assert.equal((await s.mail('someone@example.net')).reply, null);
    assert.equal((await s.rcpt('user@localhost')).reply, '554 5.7.1 Your network sends no mail here');
    assert.equal((await s.rcpt('postmaster@localhost')).reply, null, 'the recipient whitelist wins');
  });

  it('a refusal at MAIL is held for that transaction only', async () => {
    await using h = await loadRule('rules/access.ts', { options: { entries }, config: { delayChecks: true } });
    const s = await h.connect({ ip: '192.0.2.70', helo: 'mx.example.net' });
    assert.equal((await s.mail('x@spammer.example')).reply, null);
    assert.equal((await s.rcpt('user@localhost')).reply, '550 5.7.1 Not from you');
    assert.equal((await s.rcpt('postmaster@localhost')).reply, null);
    assert.equal((await s.mail('someone@example.net')).reply, null);
    assert.equal((await s.rcpt('user@localhost')).reply, null, 'a new transaction holds nothing');
  });

  it('without delayChecks the refusal comes at once', async () => {
    await using h = await loadRule('rules/access.ts', { options: { entries } });
    assert.equal((await h.connect({ ip: '198.51.100.9' })).connected.reply, '554 5.7.1 Your network sends no mail here');
  });
});
