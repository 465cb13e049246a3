/**
 * Regressions of issue 11: where the rules between layers were written down twice and
 * the copies disagreed, clients got wrong replies. Each test asserts the exact line the
 * client gets (through the harness, which drives the server's own session logic, or on
 * the wire), and failed on the code before the redesign.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sqlite3 from 'sqlite3';
import { BUILTIN_RULES } from '../host/paths.js';
import { CACHE_PREFIX } from '../host/store/ports.js';
import { fakeDns, loadRule, loadRuleSet, type Harness } from '../host/testing/harness.js';
import { RawSmtp, rule, startTestHost, tempDir, type TestHost } from './helpers.js';

/** A rules directory holding these files. */
function rulesDir(files: Record<string, string>): string {
  const dir = join(tempDir(), 'rules');
  mkdirSync(dir);
  for (const [name, src] of Object.entries(files)) writeFileSync(join(dir, name), src);
  return dir;
}

describe('a shadow rule never changes what the client hears', () => {
  const refuse = rule('b-refuse', `{ rcpt: (ev) => ev.session.notes['shadow-was-here'] ? next() : reject(550, 'Refused by the rule after the shadow one') }`, 'priority: 20,');
  const shadow = (phases: string) => rule('a-shadow', phases, 'priority: 10,');
  const harness = (shadowPhases: string) =>
    loadRuleSet({
      config: { rules: { builtin: false, defaults: { timeoutMs: 50 }, settings: { 'a-shadow': { action: 'shadow' } } } },
      rulesDirs: [rulesDir({ 'a-shadow.ts': shadow(shadowPhases), 'b-refuse.ts': refuse })],
    });

  for (const [what, phases] of [
    ['throws', `{ rcpt: () => { throw new Error('broken shadow rule'); } }`],
    ['times out', `{ rcpt: () => { for (;;) {} } }`],
  ] as const) {
    it(`a shadow rule that ${what} lets the later rule refuse: 550 5.7.1`, async () => {
      const h = await harness(phases);
      try {
        const s = await h.connect({ helo: 'mx.example.org' });
        await s.mail('a@example.org');
        const r = await s.rcpt('user@localhost');
        assert.equal(r.reply, '550 5.7.1 Refused by the rule after the shadow one');
        assert.equal(r.rule, 'b-refuse');
      } finally {
        await h.close();
      }
    });
  }

  it('a shadow rule\'s notes do not reach the later rule', async () => {
    const h = await harness(`{ rcpt: (ev, ctx) => { ctx.note.session('shadow-was-here', true); } }`);
    try {
      const s = await h.connect({ helo: 'mx.example.org' });
      await s.mail('a@example.org');
      assert.equal((await s.rcpt('user@localhost')).reply, '550 5.7.1 Refused by the rule after the shadow one');
      assert.deepEqual(s.notes.session, {});
    } finally {
      await h.close();
    }
  });
});

describe('dnsbl: any list name its schema allows', () => {
  for (const name of ['Zen', 'my_list']) {
    it(`a client listed by "${name}" gets the configured 550, not 451`, async () => {
      const h = await loadRule(join(BUILTIN_RULES, 'dnsbl.ts'), {
        options: { lists: [{ name, zone: 'bl.example' }] },
        dns: fakeDns.listed('bl.example', '192.0.2.9', '127.0.0.2'),
      });
      try {
        const s = await h.connect({ ip: '192.0.2.9', helo: 'mx.example.org' });
        await s.mail('a@example.org');
        const r = await s.rcpt('user@localhost');
        assert.equal(r.reply, `550 5.7.1 Mail refused: 192.0.2.9 is listed by ${name}`);
        assert.equal(r.failure, null);
        assert.equal(r.verdict.action === 'reject' && r.verdict.reason, `dnsbl-${name.toLowerCase()}`);
      } finally {
        await h.close();
      }
    });
  }
});

describe('sender-domain with its documented code: 450', () => {
  it('answers 450 4.1.8 for a domain with no MX and no address', async () => {
    const h = await loadRule(join(BUILTIN_RULES, 'sender-domain.ts'), { options: { code: 450 }, dns: {} });
    try {
      const s = await h.connect({ helo: 'mx.example.org' });
      assert.equal((await s.mail('someone@nowhere.example')).reply, '450 4.1.8 Sender address rejected: Domain nowhere.example not found');
    } finally {
      await h.close();
    }
  });
});

describe('a JavaScript rule that gets the code class wrong', () => {
  it('fails at its own line with a log that says why, and the client gets 451 4.3.0', async () => {
    const dir = rulesDir({ 'js-450.js': `import { defineRule, reject } from 'portcullis/sdk';\nexport default defineRule({ name: 'js-450', phases: {\n  mail: () => reject(450, 'Later'),\n} });\n` });
    const h = await loadRule(join(dir, 'js-450.js'));
    try {
      const s = await h.connect({ helo: 'mx.example.org' });
      const r = await s.mail('a@example.org');
      assert.match(String(r.reply), /^451 4\.3\.0 Temporary local problem, please try again later \(session \S+\)$/);
      const failure = h.logs.find((l) => l.rule === 'js-450' && l.outcome === 'error');
      assert.match(String(failure?.error), /RangeError: reject\(\) takes one of 521, 550, 551, 552, 553, 554, 556, got 450 \(a 4xx is tempfail\(\)\) \(at .*js-450\.js:3:\d+\)/);
    } finally {
      await h.close();
    }
  });
});

describe('the blacklist rules and legitimate senders', () => {
  let h: Harness;
  let n = 0;
  const ip = () => `203.0.113.${++n}`;
  before(async () => {
    h = await loadRuleSet({ config: { localDomains: ['localhost'], mailboxes: ['alice@localhost']} });
  });
  after(() => h.close());

  it('an MTA whose recipients get 5xx is not a connect flood: its 11th session gets 220', async () => {
    const addr = ip();
    for (let i = 0; i < 10; i++) {
      const s = await h.connect({ ip: addr, ptr: 'mta.example.org', helo: 'mta.example.org' });
      await s.mail('bounces@example.org');
      assert.equal((await s.rcpt('someone@elsewhere.example')).reply, '554 5.7.1 Relaying denied');
      await s.close();
      h.clock.advance(5_000);
    }
    assert.equal((await h.connect({ ip: addr })).connected.reply, null);
  });

  it('a blacklisted client reconnecting does not shorten its 3-hour block', async () => {
    const addr = ip();
    const entry = h.store.blacklistAdd(addr, 3 * 3600, 'AUTH brute force', 'auth-brute-force', h.clock.now());
    for (let i = 0; i < 8; i++) {
      const s = await h.connect({ ip: addr });
      assert.equal(s.connected.reply, '554 5.7.1 Access denied: AUTH brute force');
      await s.close();
      h.clock.advance(1_000);
    }
    assert.equal(h.store.blacklistGet(addr, h.clock.now())?.expires, entry.expires);
  });

  it('a client blocked for 1 minute that keeps retrying gets in once the minute is over', async () => {
    const addr = ip();
    h.store.blacklistAdd(addr, 60, 'test block', 'admin', h.clock.now());
    for (let i = 0; i < 8; i++) {
      assert.equal((await h.connect({ ip: addr })).connected.reply, '554 5.7.1 Access denied: test block');
      h.clock.advance(5_000);
    }
    h.clock.advance(30_000);
    assert.equal((await h.connect({ ip: addr })).connected.reply, null);
  });

  it('a rule never shortens a longer block another rule set', async () => {
    const addr = ip();
    const early = await h.connect({ ip: addr, ptr: 'mx.example.org', helo: 'mx.example.org' }); // connected before the block
    const guesser = await h.connect({ ip: addr, helo: 'mx.example.org' });
    let r;
    for (let i = 0; i < 6; i++) r = await guesser.auth('alice', { success: false });
    assert.equal(r?.reply, '421 4.7.0 Too many failed authentication attempts');
    const threeHours = h.store.blacklistGet(addr, h.clock.now())!.expires;
    // The early session now earns subject-spam's 60-minute block.
    await early.mail('a@example.org');
    await early.rcpt('nobody@localhost');
    const m = await early.message({ headers: { Date: 'Mon, 5 Jan 2026 10:00:00 +0000', Subject: 'You have won the lottery' }, body: 'x' });
    assert.equal(m.reply, '421 4.7.0 Message refused');
    assert.equal(h.store.blacklistGet(addr, h.clock.now())?.expires, threeHours);
  });

  it('a client that authenticates after EHLO gets no X-HELO (the X-HELO is withdrawn at AUTH)', async () => {
    const s = await h.connect({ ip: ip(), helo: 'desktop' });
    assert.deepEqual((await s.helo('desktop')).headers, [['X-HELO', 'unqualified name desktop']]);
    assert.equal((await s.auth('alice')).reply, null);
    await s.mail('alice@localhost');
    await s.rcpt('alice@localhost');
    const m = await s.message({ headers: { Date: 'Mon, 5 Jan 2026 10:00:00 +0000', Subject: 'hi' }, body: 'x' });
    assert.deepEqual(m.accepted?.headers, []);
  });

  it('a client that does not authenticate keeps its X-HELO', async () => {
    const s = await h.connect({ ip: ip(), ptr: 'desktop.example.org', helo: 'desktop' });
    await s.mail('a@example.org');
    await s.rcpt('alice@localhost');
    const m = await s.message({ headers: { Date: 'Mon, 5 Jan 2026 10:00:00 +0000', Subject: 'hi' }, body: 'x' });
    assert.deepEqual(m.accepted?.headers, [['X-HELO', 'unqualified name desktop']]);
  });
});

describe('notes live with the session', () => {
  const writer = rule('note-writer', `{
    helo: (ev, ctx) => { ctx.note.session('greeted', ev.helo.name); },
    rcpt: (ev, ctx) => { ctx.note.tx('rcpts', Number(ev.envelope.notes.rcpts ?? 0) + 1); },
  }`, 'priority: 10,');
  const reader = rule('note-reader', `{
    rcpt: (ev) => (Number(ev.envelope.notes.rcpts ?? 0) > 2 ? reject(552, 'Only two recipients after ' + ev.session.notes.greeted) : next()),
  }`, 'priority: 20,');
  let h: Harness;
  before(async () => {
    h = await loadRuleSet({ config: { rules: { builtin: false } }, rulesDirs: [rulesDir({ 'note-writer.ts': writer, 'note-reader.ts': reader })] });
  });
  after(() => h.close());

  it('a later rule and a later phase read what an earlier rule noted; RSET drops the transaction notes', async () => {
    const s = await h.connect({ helo: 'mx.example.org' });
    await s.mail('a@example.org');
    assert.equal((await s.rcpt('one@localhost')).reply, null);
    assert.equal((await s.rcpt('two@localhost')).reply, null);
    // The writer runs first in each phase, so the reader already counts this recipient.
    assert.equal((await s.rcpt('three@localhost')).reply, '552 5.7.1 Only two recipients after mx.example.org');
    s.rset();
    assert.deepEqual(s.notes, { session: { greeted: 'mx.example.org' }, tx: {} });
    await s.mail('a@example.org');
    assert.equal((await s.rcpt('one@localhost')).reply, null);
  });
});

describe('no per-session state reaches the store', () => {
  let t: TestHost;
  before(async () => {
    t = await startTestHost({
      builtin: true,
      config: { localDomains: ['localhost'], mailboxes: ['alice@localhost'], reverseDns: false, rules: { settings: { 'invalid-recipient': { options: { noPtrIsSign: false } } } } },
    });
  });
  after(() => t.close());

  it('1,000 sessions with unqualified HELOs and invalid recipients leave no row in the store but the day\'s route statistics', async () => {
    const session = async (i: number) => {
      const { c } = await RawSmtp.open(t.port, `127.0.0.${2 + (i % 200)}`);
      await c.cmd(i % 2 ? 'EHLO bot' : `EHLO mx${i}.example.org`);
      await c.cmd('MAIL FROM:<sender@example.org>');
      await c.cmd('RCPT TO:<nobody@localhost>');
      if (i % 10 === 0) {
        // Every tenth also sends a message, for the rules of the later phases.
        assert.equal(await c.cmd('RCPT TO:<alice@localhost>'), '250 2.1.5 Accepted');
        assert.equal(await c.cmd('DATA'), '354 End data with <CR><LF>.<CR><LF>');
        assert.match(await c.cmd('Date: Mon, 5 Jan 2026 10:00:00 +0000\r\nSubject: hello\r\n\r\nhi\r\n.'), /^250 2\.0\.0 Ok: queued as /);
      }
      await c.cmd('QUIT');
    };
    for (let i = 0; i < 1000; i += 20) await Promise.all(Array.from({ length: 20 }, (_, k) => session(i + k)));
    t.host.stats.flush(); // the route statistics, written every few seconds
    await t.host.store.flush();
    const db = new sqlite3.Database(join(t.dataDir, 'portcullis.db'));
    const count = (table: string, where = '') => new Promise<number>((ok, fail) => db.get(`SELECT COUNT(*) AS n FROM ${table} ${where}`, (e, row: { n: number }) => (e ? fail(e) : ok(row.n))));
    try {
      // One row per day and recipient domain is the route statistics' (smtpf's, 31 days), not a session's.
      const routes = `WHERE key LIKE '${CACHE_PREFIX.routes}%'`;
      assert.deepEqual({ watch: await count('watch_hits'), lists: await count('lists'), blacklist: await count('blacklist'), cache: await count('cache', `WHERE key NOT LIKE '${CACHE_PREFIX.routes}%'`), routes: await count('cache', routes) }, { watch: 0, lists: 0, blacklist: 0, cache: 0, routes: 1 });
    } finally {
      db.close();
    }
  });
});

describe('every internal error is logged and counted, whatever the phase', () => {
  for (const phase of ['helo', 'data'] as const) {
    it(`an internal error at ${phase.toUpperCase()} answers 451 4.3.0 with the session id, logs it and counts it`, async () => {
      const t = await startTestHost({ rules: { 'any.ts': rule('any', `{ helo: () => next(), data: () => next() }`) } });
      try {
        const sandbox = t.host.sandbox as unknown as { callPhase: (...a: unknown[]) => Promise<unknown> };
        const real = sandbox.callPhase.bind(sandbox);
        // The one fault injected here: the sandbox fails for this phase's event.
        sandbox.callPhase = (version, chain, event) => ((event as { phase: string }).phase === phase ? Promise.reject(new Error('injected fault')) : real(version, chain, event));
        const { c } = await RawSmtp.open(t.port);
        let reply = await c.cmd('EHLO mx.example.org');
        if (phase === 'data') {
          await c.cmd('MAIL FROM:<a@example.org>');
          await c.cmd('RCPT TO:<user@localhost>');
          reply = await c.cmd('DATA');
        }
        const m = /^451 4\.3\.0 Internal error, please try again later \(session (\S+)\)$/.exec(reply);
        assert.ok(m, reply);
        const line = t.logs.find((l) => l.session === m[1] && String(l.msg).startsWith('internal error'));
        assert.match(String(line?.msg), /injected fault/);
        assert.equal(await t.host.metrics.get('internal_errors_total'), 1);
        c.end();
      } finally {
        await t.close();
      }
    });
  }
});
