import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadRule, type Harness } from 'portcullis/sdk/testing';

describe('domain-size-limits', () => {
  let h: Harness;
  before(async () => {
    h = await loadRule('examples/domain-size-limits.ts', { options: { limits: { 'partner.example': 1000 } }, config: { relayDomains: ['partner.example'] } });
  });
  after(() => h.close());

  it('refuses a recipient at RCPT when the declared SIZE is over its domain\'s limit', async () => {
    const s = await h.connect({ helo: 'mx.example.net' });
    await s.mail('a@example.net', { SIZE: '5000' });
    assert.equal((await s.rcpt('bob@partner.example')).reply, '552 5.3.4 Message too large for partner.example (limit 1000 bytes)');
    assert.equal((await s.rcpt('user@localhost')).reply, null);
  });

  it('refuses at end of data when no size was declared', async () => {
    const s = await h.connect({ helo: 'mx.example.net' });
    await s.mail('a@example.net');
    assert.equal((await s.rcpt('bob@partner.example')).reply, null);
    const big = await s.message({ headers: { Subject: 'report' }, body: 'x'.repeat(2000) });
    assert.equal(big.reply, '552 5.3.4 Message too large for one of its recipients (limit 1000 bytes)');
  });

  it('lets small messages through', async () => {
    const s = await h.connect({ helo: 'mx.example.net' });
    await s.mail('a@example.net', { SIZE: '300' });
    await s.rcpt('bob@partner.example');
    assert.equal((await s.message({ headers: { Subject: 'hi' }, body: 'short' })).accepted?.disposition, 'deliver');
  });
});
