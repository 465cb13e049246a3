/**
 * The spamassassin rule over real SMTP against a real spamd on 127.0.0.1 (spamd-server.ts):
 * GTUBE is refused with its score, a plain message is accepted with our X-Spam-* fields
 * (and none of the sender's), spam under scoreReject is tagged, mail already marked spam
 * is refused, and a spamd that is down or silent tempfails: never a silent pass.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { deadPort, silentServer } from './nexthop.js';
import { GTUBE, spamdMissing, startSpamd, type Spamd } from './spamd-server.js';
import { spooled, startTestHost, type TestHost } from './helpers.js';

const skip = spamdMissing();
if (skip) console.log(`# skipping the spamd tests: ${skip}`);

const TEMPFAIL = /^451 4\.3\.0 Temporary local problem, please try again later \(session [0-9a-z]+\)$/;

/** Sends one message from client address `ip`: '250 …' or the refusing reply. */
async function send(port: number, ip: string, subject: string, text: string, headers: Record<string, string> = {}): Promise<string> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, localAddress: ip, name: 'mx.example.org', secure: false, ignoreTLS: true, connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 30000 });
  try {
    const info = await t.sendMail({ from: 'sender@example.org', to: 'user@localhost', subject, text, headers, date: new Date() });
    return info.response;
  } catch (e) {
    return (e as { response?: string }).response ?? (e as Error).message;
  } finally {
    t.close();
  }
}

/** The header fields of the spooled message with `marker` in its body: `[name, value]`. */
function fieldsOf(h: TestHost, marker: string): [string, string][] {
  const m = spooled(h.dataDir).find((x) => x.eml.includes(marker));
  assert.ok(m, `a message with ${marker} is in the spool`);
  const head = m.eml.toString('latin1').split('\r\n\r\n')[0]!.replace(/\r\n[ \t]+/g, ' ');
  return head.split('\r\n').map((l): [string, string] => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]);
}

const hostWith = (spamd: { port: number; timeoutMs?: number }, options: Record<string, unknown> = {}): Promise<TestHost> =>
  startTestHost({
    builtin: true,
    config: {
      spamd: { host: '127.0.0.1', port: spamd.port, timeoutMs: spamd.timeoutMs ?? 30000 },
      sandbox: { workers: 1 },
      rules: { settings: { spamassassin: { enabled: true, options } } },
    },
  });

describe('spamassassin against a real spamd', { skip: skip ?? false }, () => {
  let spamd: Spamd;
  let h: TestHost;
  before(async () => {
    spamd = await startSpamd();
    h = await hostWith(spamd);
  });
  after(async () => {
    await h?.close();
    await spamd?.close();
  });

  it('GTUBE is refused at the end of data with its score', async () => {
    const r = await send(h.port, '127.0.0.11', 'gtube', `${GTUBE}\n`);
    assert.match(r, /^550 5\.7\.1 Message refused as spam: SpamAssassin score 1\d{3}\.\d is at or over 10\.0$/);
    assert.ok(h.logs.some((l) => l.rule === 'spamassassin' && /spamd score 1\d{3}\.\d\/5\.0: .*GTUBE/.test(String(l.msg))));
  });

  it('a plain message is accepted with our X-Spam-Status and X-Spam-Score, the sender\'s X-Spam-* removed', async () => {
    const r = await send(h.port, '127.0.0.12', 'lunch', 'Shall we meet for lunch on Tuesday? marker-ham-1\n', { 'X-Spam-Status': 'No, score=0.1 required=5.0', 'X-Spam-Checker-Version': 'SpamAssassin 3.4.6 on elsewhere' });
    assert.match(r, /^250 /);
    const fields = fieldsOf(h, 'marker-ham-1');
    const spam = fields.filter(([n]) => /^x-spam-/i.test(n));
    assert.deepEqual(spam.map(([n]) => n), ['X-Spam-Status', 'X-Spam-Score']);
    assert.match(spam[0]![1], /^No, score=-?\d+\.\d required=5\.0 tests=\S+$/);
    assert.equal(spam[1]![1], /score=(-?\d+\.\d)/.exec(spam[0]![1])![1]);
    assert.deepEqual(fields.filter(([n]) => n === 'Subject'), [['Subject', 'lunch']]);
  });

  it('mail already marked X-Spam-Flag: YES is refused', async () => {
    assert.equal(await send(h.port, '127.0.0.13', 'flagged', 'hello\n', { 'X-Spam-Flag': 'YES' }), '550 5.7.1 Message refused: its sender already marked it as spam');
    assert.ok(h.logs.some((l) => l.rule === 'spamassassin' && String(l.msg) === 'refused: it came marked X-Spam-Flag: YES'));
  });

  it('mail stating an X-Spam-Status score over scoreReject is refused; one under it is not', async () => {
    assert.equal(await send(h.port, '127.0.0.14', 'stated', 'hello\n', { 'X-Spam-Status': 'Yes, score=12.5 required=5.0 tests=FOO' }), '550 5.7.1 Message refused: its sender already marked it as spam');
    assert.match(await send(h.port, '127.0.0.14', 'stated-low', 'hello marker-ham-2\n', { 'X-Spam-Status': 'Yes, score=6.0 required=5.0 tests=FOO' }), /^250 /);
  });
});

describe('spamassassin: spam under scoreReject is tagged', { skip: skip ?? false }, () => {
  let spamd: Spamd;
  let h: TestHost;
  before(async () => {
    spamd = await startSpamd();
    h = await hostWith(spamd, { scoreReject: 5000, subjectTag: '[SPAM]' });
  });
  after(async () => {
    await h?.close();
    await spamd?.close();
  });

  it('GTUBE under a scoreReject of 5000: Subject tagged, X-Spam-Flag: YES', async () => {
    assert.match(await send(h.port, '127.0.0.15', 'buy now', `${GTUBE}\nmarker-spam-1\n`), /^250 /);
    const fields = fieldsOf(h, 'marker-spam-1');
    assert.deepEqual(fields.filter(([n]) => n === 'Subject'), [['Subject', '[SPAM] buy now']]);
    assert.deepEqual(fields.filter(([n]) => n === 'X-Spam-Flag'), [['X-Spam-Flag', 'YES']]);
    assert.match(fields.find(([n]) => n === 'X-Spam-Status')![1], /^Yes, score=1\d{3}\.\d required=5\.0 tests=.*GTUBE/);
  });
});

describe('spamassassin without a working spamd: the fail policy, never a pass', () => {
  it('spamd down (connection refused): 451 at the end of data', async () => {
    const h = await hostWith({ port: await deadPort() });
    try {
      assert.match(await send(h.port, '127.0.0.16', 'down', 'hello\n'), TEMPFAIL);
      assert.ok(h.logs.some((l) => l.rule === 'spamassassin' && /ECONNREFUSED/.test(String(l.error))));
    } finally {
      await h.close();
    }
  });

  it('spamd silent past spamd.timeoutMs: 451 at the end of data', async () => {
    const silent = await silentServer();
    const h = await hostWith({ port: silent.port, timeoutMs: 300 });
    try {
      assert.match(await send(h.port, '127.0.0.17', 'slow', 'hello\n'), TEMPFAIL);
      assert.ok(h.logs.some((l) => l.rule === 'spamassassin' && /did not answer within 300 ms/.test(String(l.error))));
    } finally {
      await h.close();
      await silent.close();
    }
  });
});
