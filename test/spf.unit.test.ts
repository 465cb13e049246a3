/**
 * The SPF fact with DNS from a table (the same checker and mailauth as the server, a table
 * instead of a resolver): which events carry it, and what is cached.
 * test/spf.test.ts runs it against a real resolver, and the rules using it over SMTP.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { tableBackend, type DnsTable } from '../host/dns/backend.js';
import { DnsChecker } from '../host/dns/checker.js';
import { Metrics } from '../host/metrics.js';
import { MemoryStore } from '../host/store/store.js';
import { fakeDns, loadRule } from '../host/testing/harness.js';
import { rule, tempDir } from './helpers.js';

const dir = tempDir();
after(() => rmSync(dir, { recursive: true, force: true }));

/** A rule that logs the SPF fact it sees at each phase (`needs` as given). */
function spfLogger(needs: string): string {
  const f = join(dir, `spf-logger-${needs ? 'needs' : 'none'}.ts`);
  const show = `(ev, ctx) => void ctx.log(ev.phase + ' ' + JSON.stringify(ev.dns.spf ?? null))`;
  writeFileSync(f, rule('spf-logger', `{ connect: ${show}, helo: ${show}, mail: ${show}, rcpt: ${show}, data: ${show} }`, needs));
  return f;
}

describe('the spf need', () => {
  const dns = fakeDns.spf('partner.example', 'v=spf1 ip4:192.0.2.7 -all');

  it('puts ev.dns.spf in the MAIL event and every later one, never before MAIL', async () => {
    await using h = await loadRule(spfLogger("needs: ['spf'],"), { dns });
    const s = await h.connect({ ip: '192.0.2.7', helo: 'mx.partner.example' });
    await s.mail('news@partner.example');
    await s.rcpt('user@localhost');
    await s.data();
    const pass = '{"result":"pass","domain":"partner.example","identity":"mailfrom"}';
    assert.deepEqual(h.ruleLogs('spf-logger'), ['connect null', 'helo null', `mail ${pass}`, `rcpt ${pass}`, `data ${pass}`]);
  });

  it('a rule that does not declare it sees no SPF fact, and nothing is looked up', async () => {
    await using h = await loadRule(spfLogger(''), { dns });
    const s = await h.connect({ ip: '192.0.2.7', helo: 'mx.partner.example' });
    await s.mail('news@partner.example');
    assert.deepEqual(h.ruleLogs('spf-logger'), ['connect null', 'helo null', 'mail null']);
    assert.equal(await h.metrics.get('dns_lookups_total', { kind: 'spf' }), 0);
  });

  it('the null sender is checked against the HELO name', async () => {
    await using h = await loadRule(spfLogger("needs: ['spf'],"), { dns });
    const s = await h.connect({ ip: '192.0.2.7', helo: 'partner.example' });
    await s.mail('');
    assert.equal(h.ruleLogs('spf-logger').at(-1), 'mail {"result":"pass","domain":"partner.example","identity":"helo"}');
  });
});

describe('DnsChecker.spf caching', () => {
  const checker = (table: DnsTable, metrics: Metrics) =>
    new DnsChecker({ backend: tableBackend(table), cache: new MemoryStore(), metrics, log: pino({ level: 'silent' }), ttlSeconds: 1800, timeoutMs: 2000 });

  it("a policy that reads the local part (%{l}) holds for that sender only: it is not cached for the domain", async () => {
    const metrics = new Metrics();
    const c = checker({ 'per-user.example': { TXT: ['v=spf1 exists:%{l}.users.per-user.example -all'] }, 'alice.users.per-user.example': { A: ['127.0.0.2'] } }, metrics);
    const now = Date.now();
    assert.equal((await c.spf('192.0.2.9', 'alice@per-user.example', null, now)).result, 'pass');
    assert.equal((await c.spf('192.0.2.9', 'bob@per-user.example', null, now)).result, 'fail');
    assert.equal((await c.spf('192.0.2.9', 'alice@per-user.example', null, now)).result, 'pass');
    assert.equal(await metrics.get('dns_cache_hits_total', { kind: 'spf' }), 0);
  });

  it('a permerror is cached like any answer; a temperror (SERVFAIL) is not, and is counted', async () => {
    const metrics = new Metrics();
    const c = checker({ 'broken.example': { TXT: ['v=spf1 redirect=a.example redirect=b.example'] }, 'down.example': 'ESERVFAIL' }, metrics);
    const now = Date.now();
    for (let i = 0; i < 2; i++) {
      assert.equal((await c.spf('192.0.2.9', 'x@broken.example', null, now)).result, 'permerror');
      assert.equal((await c.spf('192.0.2.9', 'x@down.example', null, now)).result, 'temperror');
    }
    assert.equal(await metrics.get('dns_cache_hits_total', { kind: 'spf' }), 1);
    assert.equal(await metrics.get('dns_lookups_total', { kind: 'spf' }), 3);
    assert.equal(await metrics.get('dns_errors_total', { zone: 'spf', code: 'ESERVFAIL' }), 2);
  });
});
