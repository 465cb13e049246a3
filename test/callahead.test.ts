/**
 * call-ahead over real SMTP: the host asks a real downstream smtp-server (nexthop.ts) about
 * each recipient (MAIL FROM:<>, RCPT TO, RSET, QUIT) before answering RCPT. A mailbox the
 * next hop refuses is refused with its words; answers are cached; a next hop that accepts
 * smtpf's "false RCPT" accepts all and is not believed; a dead next hop allows the recipient.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deadPort, silentServer, startNextHop, type TestNextHop } from './nexthop.js';
import { RawSmtp, startTestHost, type TestHost } from './helpers.js';

/** The reply to RCPT TO:<rcpt> from client address `ip`. */
async function rcptReply(port: number, ip: string, rcpt: string): Promise<string> {
  const { c } = await RawSmtp.open(port, ip);
  try {
    await c.cmd('EHLO mx.example.org');
    await c.cmd('MAIL FROM:<sender@example.org>');
    return await c.cmd(`RCPT TO:<${rcpt}>`, 20000);
  } finally {
    c.end();
  }
}

describe('call-ahead against real next hops', () => {
  let hop: TestNextHop;
  let catchAll: TestNextHop;
  let silent: Awaited<ReturnType<typeof silentServer>>;
  let h: TestHost;
  /** RCPT TO addresses each next hop was asked about, in order. */
  const asked: string[] = [];
  const askedCatchAll: string[] = [];
  before(async () => {
    // The next hop knows its mailboxes: user@ and postmaster@; any other is refused.
    hop = await startNextHop({ rcpt: (a) => (asked.push(a), /^(user|postmaster)@/.test(a) ? null : `550 5.1.1 <${a}>: Recipient address rejected: User unknown`) });
    catchAll = await startNextHop({ rcpt: (a) => (askedCatchAll.push(a), null) });
    silent = await silentServer();
    const route = (port: number, timeoutMs = 5000) => ({ host: '127.0.0.1', port, starttls: 'off', timeoutMs, connectTimeoutMs: 2000 });
    h = await startTestHost({
      builtin: true,
      config: {
        relayDomains: ['example.net', 'catchall.example', 'dead.example', 'silent.example'],
        sandbox: { workers: 1 },
        delivery: { queue: { hold: true }, nextHop: route(hop.port), routes: { 'catchall.example': route(catchAll.port), 'dead.example': route(await deadPort()), 'silent.example': route(silent.port, 500) } },
        rules: { settings: { 'call-ahead': { enabled: true } } },
      },
    });
  });
  after(async () => {
    await h?.close();
    await hop?.close();
    await catchAll?.close();
    await silent?.close();
  });

  it('a mailbox the next hop refuses is refused 550 5.1.1 with the next hop\'s text', async () => {
    assert.equal(await rcptReply(h.port, '127.0.0.21', 'nobody@example.net'), '550 5.1.1 Recipient refused by the next hop: <nobody@example.net>: Recipient address rejected: User unknown');
    assert.ok(h.logs.some((l) => l.rule === 'call-ahead' && String(l.msg) === 'the next hop refused <nobody@example.net>: 550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown'));
  });

  it('a mailbox the next hop accepts is accepted, after the false RCPT was refused', async () => {
    asked.length = 0;
    assert.equal(await rcptReply(h.port, '127.0.0.22', 'user@example.net'), '250 2.1.5 Accepted');
    assert.equal(asked.length, 2);
    assert.equal(asked[0], 'user@example.net');
    assert.match(asked[1]!, /^portcullis-no-such-user-[0-9a-f]{24}@example\.net$/);
  });

  it('answers are cached: the next hop is not asked again for 5 minutes', async () => {
    asked.length = 0;
    assert.equal(await rcptReply(h.port, '127.0.0.23', 'nobody@example.net'), '550 5.1.1 Recipient refused by the next hop: <nobody@example.net>: Recipient address rejected: User unknown');
    assert.equal(await rcptReply(h.port, '127.0.0.23', 'user@example.net'), '250 2.1.5 Accepted');
    assert.deepEqual(asked, []);
  });

  it('a next hop that accepts the false RCPT accepts all: not believed, and not asked again for its domain', async () => {
    assert.equal(await rcptReply(h.port, '127.0.0.24', 'anyone@catchall.example'), '250 2.1.5 Accepted');
    assert.equal(askedCatchAll.length, 2);
    assert.ok(h.logs.some((l) => /accepts any recipient in catchall\.example/.test(String(l.msg))));
    assert.equal(await rcptReply(h.port, '127.0.0.24', 'someone-else@catchall.example'), '250 2.1.5 Accepted');
    assert.equal(askedCatchAll.length, 2);
  });

  it('a dead next hop: the recipient is allowed (SmtpEvt\'s rule), and the failure logged', async () => {
    assert.equal(await rcptReply(h.port, '127.0.0.25', 'gone@dead.example'), '250 2.1.5 Accepted');
    assert.ok(h.logs.some((l) => /call-ahead to 127\.0\.0\.1:\d+ for gone@dead\.example failed \(.*ECONNREFUSED.*\): recipient allowed/.test(String(l.msg))));
  });

  it('a next hop that never answers: the recipient is allowed once its timeout (500 ms) ran out', async () => {
    const t0 = Date.now();
    assert.equal(await rcptReply(h.port, '127.0.0.26', 'someone@silent.example'), '250 2.1.5 Accepted');
    assert.ok(Date.now() - t0 < 3000);
    assert.ok(h.logs.some((l) => /for someone@silent\.example failed \(no answer within 500 ms\): recipient allowed/.test(String(l.msg))));
  });

  it('recipients outside our domains are not asked about (a user\'s outbound mail)', async () => {
    asked.length = 0;
    assert.equal(await rcptReply(h.port, '127.0.0.1', 'nobody@elsewhere.example'), '250 2.1.5 Accepted'); // 127.0.0.1 relays (relayNetworks)
    assert.deepEqual(asked, []);
  });
});
