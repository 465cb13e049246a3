/**
 * Issue 14's rate controls and tarpit through the rule harness: each rule loaded alone
 * (they ship off; loadRule turns the one it loads on), a fake clock for the windows.
 */
import assert from 'node:assert/strict';
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
