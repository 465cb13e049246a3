import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadRule, type Harness } from 'portcullis/sdk/testing';

describe('subject-filter', () => {
  let h: Harness;
  before(async () => {
    h = await loadRule('examples/subject-filter.ts', { options: { patterns: ['cheap pills', '^urgent:'] } });
  });
  after(() => h.close());

  async function send(subject: string) {
    const s = await h.connect({ ip: '203.0.113.9', helo: 'mx.example.net' });
    await s.mail('someone@example.net');
    await s.rcpt('user@localhost');
    return s.message({ headers: { Subject: subject, Date: 'Mon, 05 Jan 2026 10:00:00 +0000' }, body: 'Hello' });
  }

  it('refuses a matching subject with its custom reply, and says why in the log', async () => {
    const r = await send('Buy CHEAP pills today');
    assert.equal(r.reply, '550 5.7.1 Message refused: subject looks like spam');
    assert.equal(r.rule, 'subject-filter');
    assert.deepEqual(r.logs, ['subject "Buy CHEAP pills today" matches /cheap pills/i']);
  });

  it('decodes encoded subjects before matching', async () => {
    assert.equal((await send('=?UTF-8?B?VVJHRU5UOiBwYXkgbm93?=')).reply, '550 5.7.1 Message refused: subject looks like spam');
  });

  it('accepts everything else', async () => {
    const r = await send('Minutes of Monday\'s meeting');
    assert.equal(r.reply, null);
    assert.equal(r.accepted?.disposition, 'deliver');
  });
});
