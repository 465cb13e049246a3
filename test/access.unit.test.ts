/** The access map: its line grammar (the SDK's), and the rule through the public harness: keys, combos, actions, whitelists honored first, the store list. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fakeDns, loadRule, loadRuleSet, type Harness } from '../host/testing/harness.js';
import { ACCESS_LINE_PATTERN, parseAccessLine } from '../sdk/index.js';

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

  it('asks the host for SPF only when the map may have an SPF-PASS line: in its options, or in a store list', async () => {
    await using none = await loadRule('rules/access.ts', { options: { entries: ENTRIES, storeList: null } });
    assert.deepEqual(none.ruleSet.rules[0]!.needs, []);
    await using inOptions = await loadRule('rules/access.ts', { options: { entries: ['From:partner.example SPF-PASS'], storeList: null } });
    assert.deepEqual(inOptions.ruleSet.rules[0]!.needs, ['spf']);
    await using storeList = await load();
    assert.deepEqual(storeList.ruleSet.rules[0]!.needs, ['spf'], '`portcullis access add` may add one while it runs');
  });

  it('an SPF-PASS line from the store list whitelists too', async () => {
    await using h = await loadRule('rules/access.ts', { dns: fakeDns.spf('partner.example', 'v=spf1 ip4:192.0.2.7 -all') });
    h.store.listAdd('access', 'From:partner.example SPF-PASS');
    const s = await h.connect({ ip: '192.0.2.7', helo: 'mx.partner.example' });
    const { verdict } = await s.mail('news@partner.example');
    assert.equal(verdict.action, 'accept');
    assert.equal(verdict.reason, 'access-spf-pass');
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

describe('parseAccessLine: the one grammar of the rule, its options schema and `portcullis access add`', () => {
  const table: [string, ReturnType<typeof parseAccessLine>][] = [
    ['Connect:192.0.2.0/24 REJECT Not from here', { keys: [['Connect', '192.0.2.0/24']], action: 'REJECT', text: 'Not from here', line: 'Connect:192.0.2.0/24 REJECT Not from here' }],
    ['  Connect:192.0.2.0/24   From:Partner.Example  OK  ', { keys: [['Connect', '192.0.2.0/24'], ['From', 'partner.example']], action: 'OK', text: '', line: 'Connect:192.0.2.0/24 From:partner.example OK' }],
    ['From:<> TEMPFAIL  Try   later', { keys: [['From', '<>']], action: 'TEMPFAIL', text: 'Try later', line: 'From:<> TEMPFAIL Try later' }],
    ['Conect:192.0.2.1 OK', '"Conect:192.0.2.1" is not a key: a line starts with Connect:, From:, To: and a value'],
    ['connect:192.0.2.1 OK', '"connect:192.0.2.1" is not a key: write the tag as Connect:'],
    ['Connect: 192.0.2.1 OK', '"Connect:" is not a key: Connect: needs a value right after the colon'],
    ['Connect:192.0.2.1 from:x.example OK', '"from:x.example" is not a key: write the tag as From:'],
    ['Connect:192.0.2.1', 'no action after the keys: give one of OK, REJECT, TEMPFAIL, DISCARD, SPF-PASS'],
    ['Connect:192.0.2.1 reject', '"reject" is not an action: write it as REJECT'],
    ['Connect:192.0.2.1 BLOCK Go away', '"BLOCK" is not an action: give one of OK, REJECT, TEMPFAIL, DISCARD, SPF-PASS'],
    ['Connect:192.0.2.1 OK-ish', '"OK-ish" is not an action: give one of OK, REJECT, TEMPFAIL, DISCARD, SPF-PASS'],
    ['   ', 'an empty line'],
  ];

  it('parses a line into its keys, action, text and one spelling, or says which word is wrong', () => {
    for (const [line, expected] of table) assert.deepEqual(parseAccessLine(line), expected, line);
  });

  it('accepts exactly the lines the options schema\'s pattern accepts', () => {
    const pattern = new RegExp(ACCESS_LINE_PATTERN, 'u');
    for (const [line] of table) assert.equal(typeof parseAccessLine(line) !== 'string', pattern.test(line), line);
  });
});

describe('access: the store list (`portcullis access add`)', () => {
  /** Counts the rule's reads of the store list (each crosses from the sandbox's thread to the store's). */
  function countReads(h: Harness): { n: number } {
    const reads = { n: 0 };
    const listValues = h.store.listValues.bind(h.store);
    h.store.listValues = (list) => {
      reads.n++;
      return listValues(list);
    };
    return reads;
  }

  it('its lines come after the options\' lines: an OK there beats a store deny, and the first deny wins', async () => {
    await using h = await loadRule('rules/access.ts', { options: { entries: ['Connect:192.0.2.7 OK', 'Connect:192.0.2.8 REJECT Said by the config'] } });
    h.store.listAdd('access', 'Connect:192.0.2.0/24 REJECT No thanks');
    h.store.listAdd('access', 'To:closed@localhost REJECT This mailbox is closed');
    assert.equal((await h.connect({ ip: '192.0.2.9' })).connected.reply, '554 5.7.1 No thanks');
    assert.equal((await h.connect({ ip: '192.0.2.8' })).connected.reply, '554 5.7.1 Said by the config');
    assert.equal((await h.connect({ ip: '192.0.2.7' })).connected.verdict.action, 'accept');
    const s = await h.connect({ ip: '198.51.100.1', helo: 'mx.example.net' });
    await s.mail('someone@example.net');
    assert.equal((await s.rcpt('closed@localhost')).reply, '550 5.7.1 This mailbox is closed');
    assert.equal((await s.rcpt('open@localhost')).reply, null);
  });

  it('is read once per session, at its first phase: a line added reaches the sessions that start after it', async () => {
    await using h = await loadRule('rules/access.ts');
    const reads = countReads(h);
    h.store.listAdd('access', 'From:spammer.example REJECT Not from you');
    const s = await h.connect({ ip: '198.51.100.2', helo: 'mx.example.net' });
    assert.equal((await s.mail('x@spammer.example')).reply, '550 5.7.1 Not from you');
    assert.equal((await s.mail('someone@example.net')).reply, null);
    assert.equal((await s.rcpt('closed@localhost')).reply, null);
    assert.equal((await s.rcpt('open@localhost')).reply, null);
    assert.equal(reads.n, 1, 'connect read it; MAIL, MAIL and two RCPTs did not');
    h.store.listAdd('access', 'To:closed@localhost REJECT This mailbox is closed');
    const next = await h.connect({ ip: '198.51.100.2', helo: 'mx.example.net' });
    await next.mail('someone@example.net');
    assert.equal((await next.rcpt('closed@localhost')).reply, '550 5.7.1 This mailbox is closed');
    assert.equal(reads.n, 2);
  });

  it('storeList names the list; null reads none', async () => {
    await using named = await loadRule('rules/access.ts', { options: { storeList: 'mx1-access' } });
    named.store.listAdd('access', 'Connect:192.0.2.9 REJECT Not this list');
    named.store.listAdd('mx1-access', 'Connect:192.0.2.10 REJECT No thanks');
    assert.equal((await named.connect({ ip: '192.0.2.9' })).connected.reply, null);
    assert.equal((await named.connect({ ip: '192.0.2.10' })).connected.reply, '554 5.7.1 No thanks');
    await using none = await loadRule('rules/access.ts', { options: { storeList: null } });
    const reads = countReads(none);
    none.store.listAdd('access', 'Connect:192.0.2.9 REJECT No thanks');
    assert.equal((await none.connect({ ip: '192.0.2.9' })).connected.reply, null);
    assert.equal(reads.n, 0);
  });

  it('a store line that is not an access line (a rule may listAdd anything) is skipped and logged', async () => {
    await using h = await loadRule('rules/access.ts');
    h.store.listAdd('access', 'Conect:192.0.2.9 REJECT Typo');
    h.store.listAdd('access', 'Connect:192.0.2.9 REJECT No thanks');
    assert.equal((await h.connect({ ip: '192.0.2.9' })).connected.reply, '554 5.7.1 No thanks');
    assert.deepEqual(h.ruleLogs('access'), ['ignoring 1 line(s) of the store list "access" that are not access lines; the first: "Conect:192.0.2.9 REJECT Typo": "Conect:192.0.2.9" is not a key: a line starts with Connect:, From:, To: and a value']);
  });
});
