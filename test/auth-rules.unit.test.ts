/**
 * spf-check and dmarc-policy in the harness, over the fake DNS table: the exact verdicts
 * and replies, and the Authentication-Results header the host adds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fakeDns, loadRule } from '../host/testing/harness.js';

const rule = (name: string) => `rules/${name}.ts`;
const CONFIG = { hostname: 'mx.portcullis.test', localDomains: ['localhost'] };
const DNS = {
  ...fakeDns.spf('strict.example', 'v=spf1 ip4:192.0.2.7 -all'),
  ...fakeDns.spf('soft.example', 'v=spf1 ip4:192.0.2.7 ~all'),
  ...fakeDns.spf('careful.example', 'v=spf1 ip4:192.0.2.7 -all'),
  ...fakeDns.dmarc('strict.example', 'v=DMARC1; p=reject'),
  ...fakeDns.dmarc('careful.example', 'v=DMARC1; p=quarantine'),
};
const mail = (from: string) => ({ headers: [['From', `<${from}>`], ['Subject', 'hi'], ['Date', 'Tue, 1 Dec 2026 00:00:00 +0000']] as [string, string][], body: 'hello\r\n' });

describe('spf-check', () => {
  it('refuses an SPF fail at MAIL FROM with 550 5.7.23; tags a softfail; passes the authorised client', async () => {
    const h = await loadRule(rule('spf-check'), { config: CONFIG, dns: DNS, settings: { enabled: true } });
    try {
      const bad = await h.connect({ ip: '192.0.2.9', helo: 'mx.example.net' });
      assert.equal((await bad.mail('a@strict.example')).reply, '550 5.7.23 SPF validation failed: strict.example does not designate 192.0.2.9 as permitted sender');
      const soft = await h.connect({ ip: '192.0.2.9', helo: 'mx.example.net' });
      assert.deepEqual((await soft.mail('a@soft.example')).headers, [['X-SPF', 'softfail (192.0.2.9 for soft.example)']]);
      const good = await h.connect({ ip: '192.0.2.7', helo: 'mx.example.net' });
      assert.equal((await good.mail('a@strict.example')).reply, null, 'accepted');
    } finally {
      await h.close();
    }
  });

  it("onFail 'tag' adds X-SPF instead", async () => {
    const h = await loadRule(rule('spf-check'), { config: CONFIG, dns: DNS, settings: { enabled: true }, options: { onFail: 'tag' } });
    try {
      const s = await h.connect({ ip: '192.0.2.9', helo: 'mx.example.net' });
      const r = await s.mail('a@strict.example');
      assert.equal(r.reply, null, 'accepted');
      assert.deepEqual(r.headers, [['X-SPF', 'fail (192.0.2.9 for strict.example)']]);
    } finally {
      await h.close();
    }
  });
});

describe('dmarc-policy', () => {
  it('p=reject: 550 5.7.26 at end of data, with the report data logged; the accepted message carries Authentication-Results', async () => {
    const h = await loadRule(rule('dmarc-policy'), { config: CONFIG, dns: DNS, settings: { enabled: true } });
    try {
      const s = await h.connect({ ip: '192.0.2.9', helo: 'mx.example.net' });
      await s.mail('a@strict.example');
      await s.rcpt('user@localhost');
      const r = await s.message(mail('a@strict.example'));
      assert.equal(r.reply, "550 5.7.26 Unauthenticated mail from strict.example is not accepted due to the domain's DMARC policy");
      assert.deepEqual(r.logs, ['DMARC fail: domain=strict.example policy=reject pct=100 spf=fail aligned-spf=- aligned-dkim=- client=192.0.2.9']);
      const ok = await h.connect({ ip: '192.0.2.7', helo: 'mx.example.net' });
      await ok.mail('a@strict.example');
      await ok.rcpt('user@localhost');
      const a = await ok.message(mail('a@strict.example'));
      assert.equal(a.accepted?.disposition, 'deliver');
      assert.deepEqual(a.accepted?.headers, [['Authentication-Results', 'mx.portcullis.test; spf=pass smtp.mailfrom=strict.example; dkim=none; dmarc=pass (p=reject) header.from=strict.example']]);
    } finally {
      await h.close();
    }
  });

  it('p=quarantine: quarantined', async () => {
    const h = await loadRule(rule('dmarc-policy'), { config: CONFIG, dns: DNS, settings: { enabled: true } });
    try {
      const s = await h.connect({ ip: '192.0.2.9', helo: 'mx.example.net' });
      await s.mail('a@careful.example');
      await s.rcpt('user@localhost');
      const r = await s.message(mail('a@careful.example'));
      assert.equal(r.accepted?.disposition, 'quarantine');
      assert.equal(r.accepted?.reason, 'dmarc-quarantine');
    } finally {
      await h.close();
    }
  });
});
