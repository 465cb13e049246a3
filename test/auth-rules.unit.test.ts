/**
 * spf-check and dmarc-policy in the harness, over the fake DNS table: the exact verdicts
 * and replies, and the Authentication-Results header the host adds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fakeDns, loadRule } from '../host/testing/harness.js';
import { dmarcPolicyApplied, type DmarcPolicy } from '../sdk/index.js';

const rule = (name: string) => `rules/${name}.ts`;
const CONFIG = { hostname: 'mx.portcullis.test', localDomains: ['localhost'] };
const DNS = {
  ...fakeDns.spf('strict.example', 'v=spf1 ip4:192.0.2.7 -all'),
  ...fakeDns.spf('soft.example', 'v=spf1 ip4:192.0.2.7 ~all'),
  ...fakeDns.spf('careful.example', 'v=spf1 ip4:192.0.2.7 -all'),
  ...fakeDns.dmarc('strict.example', 'v=DMARC1; p=reject'),
  ...fakeDns.dmarc('careful.example', 'v=DMARC1; p=quarantine'),
  ...fakeDns.dmarc('sampled.example', 'v=DMARC1; p=reject; pct=0'),
  ...fakeDns.dmarc('half.example', 'v=DMARC1; p=reject; pct=50'),
  ...fakeDns.dmarc('sampled-quarantine.example', 'v=DMARC1; p=quarantine; pct=0'),
  ...fakeDns.dmarc('parent.example', 'v=DMARC1; p=quarantine; sp=reject; pct=100; adkim=s; aspf=s'),
  ...fakeDns.dmarc('typo.example', 'v=DMARC1; p=REJECT; pct=ten'),
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
      assert.deepEqual(r.logs, ['DMARC fail: header-from=strict.example p=reject sp=reject pct=100 adkim=r aspf=r disposition=reject dkim=none spf=fail:strict.example aligned-spf=- aligned-dkim=- client=192.0.2.9']);
      const ok = await h.connect({ ip: '192.0.2.7', helo: 'mx.example.net' });
      await ok.mail('a@strict.example');
      await ok.rcpt('user@localhost');
      const a = await ok.message(mail('a@strict.example'));
      assert.equal(a.accepted?.disposition, 'deliver');
      assert.deepEqual(a.accepted?.headers, [['Authentication-Results', 'mx.portcullis.test; spf=pass smtp.mailfrom=strict.example; dkim=none; dmarc=pass (p=reject) header.from=strict.example']]);
      assert.deepEqual(a.logs, ['DMARC pass: header-from=strict.example p=reject sp=reject pct=100 adkim=r aspf=r disposition=none dkim=none spf=pass:strict.example aligned-spf=strict.example aligned-dkim=- client=192.0.2.7'], 'a pass is logged for the report too');
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

  /** One failing message From `from` (no SPF record, no signature): the end-of-data step. */
  async function failing(from: string, dmarcSample?: number) {
    const h = await loadRule(rule('dmarc-policy'), { config: CONFIG, dns: DNS, settings: { enabled: true }, ...(dmarcSample === undefined ? {} : { dmarcSample }) });
    try {
      const s = await h.connect({ ip: '192.0.2.9', helo: 'mx.example.net' });
      await s.mail(`a@${from}`);
      await s.rcpt('user@localhost');
      return await s.message(mail(`a@${from}`));
    } finally {
      await h.close();
    }
  }

  it('pct=0: p=reject is applied as quarantine, p=quarantine as none, each logged as sampled_out (RFC 7489 §6.6.4)', async () => {
    const r = await failing('sampled.example');
    assert.equal(r.accepted?.disposition, 'quarantine');
    assert.equal(r.accepted?.reason, 'dmarc-quarantine');
    assert.deepEqual(r.logs, ['DMARC fail: header-from=sampled.example p=reject sp=reject pct=0 adkim=r aspf=r disposition=quarantine reason=sampled_out dkim=none spf=none:sampled.example aligned-spf=- aligned-dkim=- client=192.0.2.9']);
    const q = await failing('sampled-quarantine.example');
    assert.equal(q.accepted?.disposition, 'deliver');
    assert.deepEqual(q.logs, ['DMARC fail: header-from=sampled-quarantine.example p=quarantine sp=quarantine pct=0 adkim=r aspf=r disposition=none reason=sampled_out dkim=none spf=none:sampled-quarantine.example aligned-spf=- aligned-dkim=- client=192.0.2.9']);
  });

  it('pct=50: a message whose sample is 49 gets p=reject, one whose sample is 50 the next lower quarantine', async () => {
    assert.equal((await failing('half.example', 49)).reply, "550 5.7.26 Unauthenticated mail from half.example is not accepted due to the domain's DMARC policy");
    const q = await failing('half.example', 50);
    assert.equal(q.accepted?.disposition, 'quarantine');
    assert.match(q.logs[0] ?? '', / pct=50 adkim=r aspf=r disposition=quarantine reason=sampled_out /);
  });

  it('the harness refuses a dmarcSample outside 0–99', async () => {
    await assert.rejects(loadRule(rule('dmarc-policy'), { config: CONFIG, dns: DNS, dmarcSample: 100 }), /dmarcSample must be a whole number from 0 to 99, or null for a random one; got 100/);
  });

  it('pct=100 with sp=: a subdomain gets sp=reject, 550; the published p, sp, adkim and aspf are logged', async () => {
    const r = await failing('news.parent.example');
    assert.equal(r.reply, "550 5.7.26 Unauthenticated mail from news.parent.example is not accepted due to the domain's DMARC policy");
    assert.deepEqual(r.logs, ['DMARC fail: header-from=news.parent.example p=quarantine sp=reject pct=100 adkim=s aspf=s disposition=reject dkim=none spf=none:news.parent.example aligned-spf=- aligned-dkim=- client=192.0.2.9']);
  });

  it('a policy in capitals is honoured and a pct that is not a number is the default 100', async () => {
    const r = await failing('typo.example');
    assert.equal(r.reply, "550 5.7.26 Unauthenticated mail from typo.example is not accepted due to the domain's DMARC policy");
    assert.match(r.logs[0] ?? '', / p=reject sp=reject pct=100 /);
  });
});

describe('dmarcPolicyApplied', () => {
  /** How each of the 100 samples is treated under `policy` and `pct`. */
  const over100 = (policy: DmarcPolicy, pct: number) => {
    const n: Record<DmarcPolicy, number> = { none: 0, quarantine: 0, reject: 0 };
    for (let sample = 0; sample < 100; sample++) n[dmarcPolicyApplied({ policy, pct, sample })]++;
    return n;
  };

  it('applies the policy to exactly pct of the 100 samples and the next lower one to the rest', () => {
    assert.deepEqual(over100('reject', 100), { none: 0, quarantine: 0, reject: 100 });
    assert.deepEqual(over100('reject', 0), { none: 0, quarantine: 100, reject: 0 });
    assert.deepEqual(over100('reject', 50), { none: 0, quarantine: 50, reject: 50 });
    assert.deepEqual(over100('quarantine', 30), { none: 70, quarantine: 30, reject: 0 });
    assert.deepEqual(over100('none', 50), { none: 100, quarantine: 0, reject: 0 });
  });
});
