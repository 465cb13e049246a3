/**
 * The rule test harness (portcullis/sdk/testing) gives the verdicts the server gives:
 * same sandbox, same session logic, same combination of rules.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BUILTIN_RULES } from '../host/paths.js';
import { loadRule, loadRuleSet } from '../host/testing/harness.js';
import { rule, tempDir } from './helpers.js';

const dir = tempDir();
after(() => import('node:fs').then((fs) => fs.rmSync(dir, { recursive: true, force: true })));
function ruleFile(name: string, src: string): string {
  const f = join(dir, name);
  writeFileSync(f, src);
  return f;
}

describe('rule test harness', () => {
  it('reports reply lines, the deciding rule, headers, logs and tarpit delays', async () => {
    const h = await loadRule(ruleFile('t.ts', rule('tagger', `{
      helo: (ev, ctx) => { ctx.addHeader('X-HELO', ev.helo.name); ctx.delay(250); },
      rcpt: (ev, ctx) => { ctx.log('saw ' + ev.rcpt.address); return ev.rcpt.address.startsWith('no@') ? reject(550, 'No thanks') : next(); },
    }`)));
    try {
      const s = await h.connect({ ip: '203.0.113.9' });
      const helo = await s.helo('bot.example');
      assert.deepEqual([helo.reply, helo.headers, helo.delayMs], [null, [['X-HELO', 'bot.example']], 250]);
      await s.mail('a@example.net');
      const r = await s.rcpt('no@localhost');
      assert.deepEqual([r.reply, r.rule, r.verdict.action, r.logs], ['550 5.7.1 No thanks', 'tagger', 'reject', ['saw no@localhost']]);
      // Relay control applies as on the wire: 203.0.113.9 is not in the relay networks.
      assert.equal((await s.rcpt('x@elsewhere.example')).reply, '554 5.7.1 Relaying denied');
      const m = await s.message('Subject: hi\n\nbody\n');
      assert.deepEqual(m.accepted?.headers, [['X-HELO', 'bot.example']]);
      assert.deepEqual(h.ruleLogs('tagger'), ['saw no@localhost']);
    } finally {
      await h.close();
    }
  });

  it('reports the fields a rule removes (ctx.removeHeader), lower case and once each', async () => {
    const h = await loadRule(ruleFile('r.ts', rule('unspam', `{
      message: (ev, ctx) => { for (const [n] of ev.message.headers) if (/^x-spam-/i.test(n)) ctx.removeHeader(n); ctx.removeHeader('Subject'); ctx.addHeader('Subject', '[tag] hi'); },
    }`)));
    try {
      const s = await h.connect({ ip: '203.0.113.9', helo: 'mx.example.net' });
      await s.mail('a@example.net');
      await s.rcpt('user@localhost');
      const m = await s.message('Subject: hi\nX-Spam-Flag: NO\nx-spam-flag: NO\n\nbody\n');
      assert.deepEqual([m.accepted?.removedHeaders, m.accepted?.headers], [['x-spam-flag', 'subject'], [['Subject', '[tag] hi']]]);
    } finally {
      await h.close();
    }
  });

  it('shows a failing rule\'s outcome and its fail-policy reply', async () => {
    const h = await loadRule(ruleFile('f.ts', rule('fragile', `{ mail: () => { throw new Error('bug'); } }`)));
    try {
      const s = await h.connect({ helo: 'x.example' });
      const r = await s.mail('a@example.net');
      assert.equal(r.failure, 'error');
      // Reported at the rule's own file and line (through the source map), not the bundle's.
      assert.match(String(h.logs.find((l) => l.outcome === 'error')?.error), /^Error: bug \(at .*\/f\.ts:2:\d+\)$/);
      assert.match(r.reply ?? '', /^451 4\.3\.0 Temporary local problem, please try again later \(session [0-9a-f]+\)$/);
    } finally {
      await h.close();
    }
  });

  it('applies per-rule settings such as shadow mode, and validates options', async () => {
    const f = ruleFile('s.ts', rule('strict', `{ rcpt: () => reject(550, 'No') }`, "options: { type: 'object', properties: { level: { type: 'integer', maximum: 3 } } },"));
    const h = await loadRule(f, { settings: { action: 'shadow' } });
    try {
      const s = await h.connect({ helo: 'x.example' });
      await s.mail('a@example.net');
      assert.equal((await s.rcpt('u@localhost')).reply, null);
      assert.equal(await h.metrics.get('rule_verdicts_total', { rule: 'strict', phase: 'rcpt', action: 'reject', mode: 'shadow' }), 1);
    } finally {
      await h.close();
    }
    await assert.rejects(loadRule(f, { options: { level: 9 } }), /\/rules\/settings\/strict\/options\/level: must be <= 3/);
  });

  it('a preset blacklist entry refuses the client at connect', async () => {
    const h = await loadRule(join(BUILTIN_RULES, 'blacklist.ts'));
    try {
      h.store.blacklistAdd('198.51.100.7', 600, 'seen on a spam trap', 'admin', h.clock.now());
      const s = await h.connect({ ip: '198.51.100.7' });
      assert.equal(s.connected.reply, '554 5.7.1 Access denied: seen on a spam trap');
    } finally {
      await h.close();
    }
  });

  it('whole-ruleset mode runs the built-in rules with the admin\'s own, in priority order', async () => {
    const own = tempDir();
    writeFileSync(join(own, 'late.ts'), rule('late-reject', `{ rcpt: () => reject(550, 'late rule') }`, 'priority: 900,'));
    const h = await loadRuleSet({ rulesDirs: [own] });
    try {
      assert.equal(h.rules[0], 'blacklist');
      assert.equal(h.rules.at(-1), 'late-reject');
      assert.ok(h.rules.includes('null-sender-single-rcpt') && h.rules.includes('invalid-recipient'));
      const s = await h.connect({ helo: 'mx.example.net' });
      await s.mail('');
      assert.equal((await s.rcpt('u@localhost')).rule, 'late-reject');
    } finally {
      await h.close();
      import('node:fs').then((fs) => fs.rmSync(own, { recursive: true, force: true }));
    }
  });
});

describe('built-in rules', () => {
  it('import nothing but the SDK (they are the SDK\'s examples)', () => {
    for (const f of readdirSync(BUILTIN_RULES).filter((x) => x.endsWith('.ts'))) {
      const src = readFileSync(join(BUILTIN_RULES, f), 'utf8');
      const specifiers = [...src.matchAll(/\bfrom\s+['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]/g)].map((m) => m[1] ?? m[2]);
      for (const spec of specifiers) assert.ok(spec === 'portcullis/sdk' || spec!.startsWith('./'), `${f} imports ${spec}`);
    }
  });
});
