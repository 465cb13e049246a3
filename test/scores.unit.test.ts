/**
 * Scores (`ctx.score`) through the public harness: symbols add up over the session and
 * the transaction, the config's thresholds refuse or tag, and the accepted message says
 * the total and the symbols.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fakeDns, loadRule, loadRuleSet } from '../host/testing/harness.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'portcullis-scores-'));
  writeFileSync(join(dir, 'helo-score.ts'), `import { defineRule } from 'portcullis/sdk';
export default defineRule({ name: 'helo-score', phases: { helo: (ev, ctx) => { if (!ev.helo.name.includes('.')) ctx.score('helo-unqualified', 2.5); } } });
`);
  writeFileSync(join(dir, 'trap-score.ts'), `import { defineRule } from 'portcullis/sdk';
export default defineRule({ name: 'trap-score', phases: {
  rcpt: (ev, ctx) => { if (ev.rcpt.address.startsWith('trap')) ctx.score('trap', 5); },
  data: (ev, ctx) => ctx.log('score so far ' + ev.envelope.score.total + ': ' + JSON.stringify(ev.envelope.score.symbols)),
} });
`);
  writeFileSync(join(dir, 'mail-block.ts'), `import { defineRule, reject } from 'portcullis/sdk';
export default defineRule({ name: 'mail-block', phases: { mail: (ev) => (ev.mail.address.startsWith('blocked@') ? reject(550, 'Sender blocked') : undefined) } });
`);
  writeFileSync(join(dir, 'vip.ts'), `import { accept, defineRule } from 'portcullis/sdk';
export default defineRule({ name: 'vip', phases: {
  rcpt: (ev) => (ev.rcpt.address.startsWith('vip@') ? accept() : undefined),
  data: (ev) => (ev.envelope.mailFrom?.address.startsWith('vip@') ? accept() : undefined),
} });
`);
});
after(() => rmSync(dir, { recursive: true, force: true }));

const harness = (scores: Record<string, unknown> = {}, config: Record<string, unknown> = {}) =>
  loadRuleSet({ rulesDirs: [dir], config: { ...config, rules: { builtin: false }, scores } });
const MESSAGE = { headers: { From: 'a@example.net', Subject: 'hi' }, body: 'hello\r\n' };

describe('scores', () => {
  it('symbols add up over the session and the transaction; rules read them; the accepted message carries them', async () => {
    await using h = await harness();
    const s = await h.connect({ ip: '192.0.2.80', helo: 'mailhost' });
    await s.mail('a@example.net');
    await s.rcpt('trap1@localhost');
    assert.deepEqual((await s.data()).logs, ['score so far 7.5: {"helo-unqualified":2.5,"trap":5}']);
    const m = await s.message(MESSAGE, { skipData: true });
    assert.deepEqual(m.accepted?.headers, [['X-Portcullis-Score', '7.5 (trap=5 helo-unqualified=2.5)']]);
    // The next transaction starts with the session's symbols only.
    await s.mail('a@example.net');
    await s.rcpt('user@localhost');
    assert.deepEqual((await s.message(MESSAGE)).accepted?.headers, [['X-Portcullis-Score', '2.5 (helo-unqualified=2.5)']]);
  });

  it('at or over reject: 550 5.7.1 after DATA, the symbols in the log only', async () => {
    await using h = await harness({ reject: 7 });
    const s = await h.connect({ ip: '192.0.2.81', helo: 'mailhost' });
    await s.mail('a@example.net');
    assert.equal((await s.rcpt('trap1@localhost')).reply, null, 'by default the thresholds wait for DATA');
    assert.equal((await s.data()).reply, '550 5.7.1 Message refused: its spam score 7.5 is at or over 7');
    assert.ok(h.logs.some((l) => l.msg === 'score 7.5 at data is at or over 7: trap=5 helo-unqualified=2.5'));
  });

  it('at or over tempfail (under reject): 451 4.7.1', async () => {
    await using h = await harness({ tempfail: 5, reject: 10 });
    const s = await h.connect({ ip: '192.0.2.82', helo: 'mailhost' });
    await s.mail('a@example.net');
    await s.rcpt('trap1@localhost');
    assert.equal((await s.data()).reply, '451 4.7.1 Message deferred: its spam score 7.5 is at or over 5');
  });

  it('tag: the header says tag=yes at or over it, tag=no under', async () => {
    await using h = await harness({ tag: 5, header: 'X-Spam-Score' });
    const s = await h.connect({ ip: '192.0.2.83', helo: 'mailhost' });
    await s.mail('a@example.net');
    await s.rcpt('trap1@localhost');
    assert.deepEqual((await s.message(MESSAGE)).accepted?.headers, [['X-Spam-Score', '7.5 tag=yes (trap=5 helo-unqualified=2.5)']]);
    await s.mail('a@example.net');
    await s.rcpt('user@localhost');
    assert.deepEqual((await s.message(MESSAGE)).accepted?.headers, [['X-Spam-Score', '2.5 tag=no (helo-unqualified=2.5)']]);
  });

  it('a rule that accepts at DATA wins over the score', async () => {
    await using h = await harness({ reject: 2.5 });
    const s = await h.connect({ ip: '192.0.2.86', helo: 'mailhost' });
    await s.mail('vip@example.net');
    await s.rcpt('user@localhost');
    assert.equal((await s.data()).reply, null);
  });

  it('no symbols, no header', async () => {
    await using h = await harness({ tag: 5 });
    const s = await h.connect({ ip: '192.0.2.84', helo: 'mx.example.net' });
    await s.mail('a@example.net');
    await s.rcpt('user@localhost');
    assert.deepEqual((await s.message(MESSAGE)).accepted?.headers, []);
  });
});

describe('scores.phases: where the thresholds are checked', () => {
  for (const delayChecks of [false, true]) {
    it(`rcpt: a session over reject since HELO gets 550 5.7.1 for each RCPT, MAIL is accepted (delayChecks ${delayChecks})`, async () => {
      await using h = await harness({ reject: 2.5, phases: ['rcpt', 'data', 'message'] }, { delayChecks });
      const s = await h.connect({ ip: '192.0.2.87', helo: 'mailhost' });
      assert.equal((await s.mail('a@example.net')).reply, null);
      assert.equal((await s.rcpt('user@localhost')).reply, '550 5.7.1 Message refused: its spam score 2.5 is at or over 2.5');
      assert.equal((await s.rcpt('other@localhost')).reply, '550 5.7.1 Message refused: its spam score 2.5 is at or over 2.5');
      assert.deepEqual(h.logs.map((l) => String(l.msg)).filter((m) => /^(score|refused) /.test(m)), [
        'score 2.5 at rcpt is at or over 2.5: helo-unqualified=2.5',
        'refused rcpt from 192.0.2.87: 550 5.7.1 Message refused: its spam score 2.5 is at or over 2.5',
        'score 2.5 at rcpt is at or over 2.5: helo-unqualified=2.5',
        'refused rcpt from 192.0.2.87: 550 5.7.1 Message refused: its spam score 2.5 is at or over 2.5',
      ]);
      assert.equal(await h.metrics.get('replies_refused_total', { phase: 'rcpt', rule: 'scores' }), 2);
    });
  }

  it('rcpt: the RCPT whose rules bring the total to tempfail gets 451 4.7.1, and so does every later one; the earlier ones stay accepted', async () => {
    await using h = await harness({ tempfail: 5, phases: ['rcpt'] });
    const s = await h.connect({ ip: '192.0.2.88', helo: 'mx.example.net' });
    await s.mail('a@example.net');
    assert.equal((await s.rcpt('user@localhost')).reply, null);
    assert.equal((await s.rcpt('trap1@localhost')).reply, '451 4.7.1 Message deferred: its spam score 5 is at or over 5');
    assert.equal((await s.rcpt('other@localhost')).reply, '451 4.7.1 Message deferred: its spam score 5 is at or over 5');
    // Only RCPT checks the threshold here: the message goes to user@ with the trap's points.
    const m = await s.message(MESSAGE);
    assert.deepEqual([m.reply, m.accepted?.headers], [null, [['X-Portcullis-Score', '5 (trap=5)']]]);
  });

  it('rcpt: a recipient a rule accepts is not refused by the score', async () => {
    await using h = await harness({ reject: 2.5, phases: ['rcpt'] });
    const s = await h.connect({ ip: '192.0.2.89', helo: 'mailhost' });
    await s.mail('a@example.net');
    assert.equal((await s.rcpt('user@localhost')).reply, '550 5.7.1 Message refused: its spam score 2.5 is at or over 2.5');
    assert.equal((await s.rcpt('vip@localhost')).reply, null);
  });

  it('rcpt with delayChecks: a refusal held since MAIL answers the RCPT, not the score', async () => {
    await using h = await harness({ reject: 2.5, phases: ['rcpt'] }, { delayChecks: true });
    const s = await h.connect({ ip: '192.0.2.91', helo: 'mailhost' });
    assert.equal((await s.mail('blocked@example.net')).reply, null);
    assert.equal((await s.rcpt('user@localhost')).reply, '550 5.7.1 Sender blocked');
  });

  it('message only: DATA gets its 354, the end of the message the refusal (with no rule at that phase)', async () => {
    await using h = await harness({ reject: 2.5, phases: ['message'] });
    const s = await h.connect({ ip: '192.0.2.92', helo: 'mailhost' });
    await s.mail('a@example.net');
    assert.equal((await s.rcpt('user@localhost')).reply, null);
    assert.equal((await s.data()).reply, null);
    assert.equal((await s.message(MESSAGE, { skipData: true })).reply, '550 5.7.1 Message refused: its spam score 2.5 is at or over 2.5');
  });

  it('none ([]): no threshold refuses; the header still says the total and the tag', async () => {
    await using h = await harness({ reject: 1, tag: 1, phases: [] });
    const s = await h.connect({ ip: '192.0.2.93', helo: 'mailhost' });
    await s.mail('a@example.net');
    await s.rcpt('user@localhost');
    assert.deepEqual((await s.message(MESSAGE)).accepted?.headers, [['X-Portcullis-Score', '2.5 tag=yes (helo-unqualified=2.5)']]);
  });
});

describe('score modes of the built-in rules', () => {
  const MSG = { headers: { From: 'a@example.net', Subject: 'hi' }, body: 'hello\r\n' };

  it('a symbol from a rule that skips authenticated clients is withdrawn at AUTH, as its header would be', async () => {
    await using h = await loadRule('rules/suspicious-helo.ts', { options: { score: 3 }, config: { scores: { reject: 3, phases: ['rcpt', 'data', 'message'] } } });
    const user = await h.connect({ ip: '192.0.2.94', helo: 'DESKTOP-1' });
    await user.auth('alice');
    await user.mail('alice@localhost');
    assert.equal((await user.rcpt('bob@example.org')).reply, null);
    assert.deepEqual((await user.message(MSG)).accepted?.headers, []);
    const stranger = await h.connect({ ip: '192.0.2.95', helo: 'DESKTOP-1' });
    await stranger.mail('a@example.net');
    assert.equal((await stranger.rcpt('user@localhost')).reply, '550 5.7.1 Message refused: its spam score 3 is at or over 3');
  });

  it('suspicious-helo, spamhaus-zen, spamhaus-dbl and sender-domain add points instead of deciding; the total decides', async () => {
    const dns = {
      ...fakeDns.listed('zen.spamhaus.org', '192.0.2.90', '127.0.0.2'),
      ...fakeDns.listed('dbl.spamhaus.org', 'spam.example', '127.0.1.2'),
    };
    const settings = {
      'suspicious-helo': { options: { score: 1.5 } }, 'spamhaus-zen': { options: { score: 4 } },
      'spamhaus-dbl': { options: { score: 3 } }, 'sender-domain': { options: { score: 2 } },
    };
    // Listed client, DBL-listed sender domain without MX, unqualified HELO: each alone would
    // have refused or tagged; together 10.5, under a reject threshold of 11, over one of 10.
    const run = async (reject: number) => {
      await using h = await loadRuleSet({ dns, config: { scores: { reject }, rules: { settings } } });
      const s = await h.connect({ ip: '192.0.2.90', ptr: 'mx.spam.example', helo: 'mailhost' });
      assert.equal((await s.mail('a@spam.example')).reply, null);
      assert.equal((await s.rcpt('user@localhost')).reply, null);
      return await s.message(MSG);
    };
    const m = await run(11);
    assert.deepEqual(m.accepted?.headers.find(([n]) => n === 'X-Portcullis-Score'), ['X-Portcullis-Score', '10.5 (zen-sbl=4 dbl=3 sender-domain-unknown=2 helo-suspicious=1.5)']);
    assert.equal(m.accepted?.headers.find(([n]) => n === 'X-HELO'), undefined, 'score mode does not tag');
    assert.equal((await run(10)).reply, '550 5.7.1 Message refused: its spam score 10.5 is at or over 10');
  });
});
