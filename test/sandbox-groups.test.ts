/**
 * Rules that share one QuickJS module (a group, as the built-in rules do) behave as rules
 * in modules of their own: each has its own deadline, outcome and fail policy, the rules
 * after a failing one still run, and notes reach the rules after the writer.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { EventParts } from '../host/sandbox/chain.js';
import { compileRule } from '../host/sandbox/compile.js';
import { SandboxPool } from '../host/sandbox/pool.js';
import type { ChainLink, RuleCode } from '../host/sandbox/protocol.js';
import { tempDir } from './helpers.js';

/** One rule per behaviour, picked by the recipient's local part. */
const RULES: Record<string, string> = {
  thrower: `rcpt: (ev) => { if (ev.rcpt.address.startsWith('throw@')) throw new Error('boom'); }`,
  spinner: `rcpt: (ev) => { if (ev.rcpt.address.startsWith('spin@')) for (;;) {} }`,
  noter: `rcpt: (ev, ctx) => { ctx.note.session('noter.saw', ev.rcpt.address); }`,
  mutator: `rcpt: (ev) => { try { ev.rcpt.address = 'changed@x'; } catch (e) { return reject(550, 'event is frozen'); } }`,
  judge: `rcpt: (ev) => reject(550, 'judged ' + ev.rcpt.address + ' after ' + (ev.session.notes['noter.saw'] ?? 'nothing'))`,
};

const link = (name: string): ChainLink => ({ id: `1:${name}`, afterVerdict: 'stop', afterFailure: 'go-on', effects: 'apply' });
const event = (rcpt: string): EventParts => ({ sid: `s-${rcpt}`, time: Date.now(), session: '{"notes":{}}', envelope: '{"notes":{}}', rest: JSON.stringify({ phase: 'rcpt', rcpt: { address: rcpt, args: {} }, dns: { dnsbl: {}, rhsbl: {} } }) });

let pool: SandboxPool;
before(async () => {
  const dir = tempDir();
  const codes: RuleCode[] = [];
  for (const [name, phases] of Object.entries(RULES)) {
    const file = join(dir, `${name}.ts`);
    writeFileSync(file, `import { defineRule, reject } from 'portcullis/sdk';\nexport default defineRule({ name: '${name}', phases: { ${phases} } });\n`);
    const { code, map } = await compileRule(file);
    codes.push({ id: `1:${name}`, file, code, map, optionsJson: '{}', limits: { timeoutMs: 50, memoryMb: 32, stackKb: 512 }, group: 'shared' });
  }
  pool = new SandboxPool({ workers: 1 });
  await pool.install(1, codes);
});
after(() => pool.close());

const run = (rcpt: string, ...names: string[]) => pool.dispatch(1, 'rcpt', names.map(link), event(rcpt), 1000);

describe('rules sharing a module', () => {
  it('live in one module per worker', async () => {
    assert.deepEqual((await pool.stats()).workers.map((w) => w.modules), [1]);
  });

  it('a rule that throws is its own failure; the rule after it still decides', async () => {
    const r = await run('throw@localhost', 'thrower', 'judge');
    assert.deepEqual(r.map((x) => x.outcome), ['error', 'ok']);
    assert.match(String(r[0]!.error), /^Error: boom \(at .*thrower\.ts:2:\d+\)$/);
    assert.deepEqual(r[1]!.verdict, { action: 'reject', code: 550, text: 'judged throw@localhost after nothing' });
  });

  it('a rule that spins times out at its own deadline; the rule after it still decides', async () => {
    const r = await run('spin@localhost', 'spinner', 'judge');
    assert.deepEqual(r.map((x) => x.outcome), ['timeout', 'ok']);
    assert.equal(r[1]!.verdict.action, 'reject');
  });

  it('a note reaches the rule after the writer', async () => {
    const r = await run('n@localhost', 'noter', 'judge');
    assert.deepEqual(r[1]!.verdict, { action: 'reject', code: 550, text: 'judged n@localhost after n@localhost' });
  });

  it('the event they share is frozen: one rule cannot change what the next one sees', async () => {
    const r = await run('m@localhost', 'mutator', 'judge');
    assert.deepEqual(r[0]!.verdict, { action: 'reject', code: 550, text: 'event is frozen' });
  });
});
