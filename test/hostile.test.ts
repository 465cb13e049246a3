/**
 * Hostile rules: each costs only its own verdict (the fail policy's 451 4.3.0), is logged
 * and counted as its own outcome, and a second client's session completes meanwhile.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CompileError, compileRule } from '../host/sandbox/compile.js';
import { mailer, RawSmtp, startTestHost, tempDir, type TestHost, withHost } from './helpers.js';

/** One rule file per behaviour, each triggered by its recipient's local part. */
function hostile(name: string, body: string): [string, string] {
  return [`${name}.ts`, `import { defineRule, next } from 'portcullis/sdk';
declare const process: any, require: any;
export default defineRule({ name: '${name}', phases: { rcpt: (ev, ctx): any => {
  if (ev.rcpt.address !== '${name}@localhost') return next();
  ${body}
} } });
`];
}

const RULES = Object.fromEntries([
  hostile('loop', 'while (true) {}'),
  hostile('regex', "return /^(a+)+$/.test('a'.repeat(40) + 'b') ? next() : next();"),
  hostile('alloc-1gb', 'const b = new Uint8Array(1024 * 1024 * 1024); b[1] = 1; return next();'),
  hostile('alloc-grow', "const a: string[] = []; for (;;) a.push('x'.repeat(65536) + a.length);"),
  hostile('recurse', 'const f = (n: number): number => f(n + 1) + 1; return f(0);'),
  hostile('throw', "throw new Error('rule bug');"),
  hostile('bigint', 'return { action: "reject", code: 550n, text: "x" };'),
  hostile('cyclic', 'const v: any = { action: "reject", code: 550, text: "x" }; v.self = v; return v;'),
  hostile('function', 'return () => 1;'),
  hostile('bad-code', 'return { action: "reject", code: 250, text: "looks like success" };'),
  hostile('crlf', 'return { action: "reject", code: 550, text: "x\\r\\n250 injected" };'),
  hostile('promise', 'return Promise.resolve({ action: "accept" });'),
  hostile('process', 'process.exit(1); return next();'),
  hostile('require', "const req = require; const fs = req('f' + 's'); fs.writeFileSync('/tmp/pwned', 'x'); return next();"),
  hostile('function-ctor', "const g = Function('return this')(); g.process.exit(1); return next();"),
  hostile('constructor-chain', "const g = (({}) as any).constructor.constructor('return process')(); g.exit(1); return next();"),
  // A computed specifier, so the bundler leaves the import() to run time (a literal one is
  // refused at compile time: see 'imports' below). What becomes of it is written to the store,
  // which every sandbox instance of the rule shares.
  hostile('dynamic-import', `const specifier = ['node', 'fs'].join(':');
  const loading = import(specifier);
  ctx.store.listAdd('dynamic-import', 'attempted');
  loading.then(() => ctx.store.listAdd('dynamic-import', 'loaded a module'), (e: Error) => ctx.store.listAdd('dynamic-import', 'failed: ' + e.message));
  return loading;`),
  hostile('tamper', "Object.defineProperty(Object.prototype, 'action', { get() { return 'accept'; } }); (Object.prototype as any).polluted = 'yes'; (JSON as any).stringify = () => '{\"v\":{\"action\":\"accept\"},\"fx\":{}}'; return {};"),
  hostile('proto-json', 'return JSON.parse(\'{"__proto__": {"polluted": "yes"}, "action": "reject", "code": 550, "text": "Refused"}\');'),
  ['sibling.ts', `import { defineRule, next, reject } from 'portcullis/sdk';
export default defineRule({ name: 'sibling', priority: 200, phases: { rcpt: (ev) => ev.rcpt.address === 'sibling@localhost' ? reject(550, 'Sibling still works') : next() } });
`],
]);

const FAIL = /^451 4\.3\.0 Temporary local problem, please try again later \(session [a-z0-9]+\)$/;

const CASES: [string, string][] = [
  ['loop', 'timeout'],
  ['regex', 'timeout'],
  ['alloc-1gb', 'oom'],
  ['alloc-grow', 'oom'],
  ['recurse', 'stack-overflow'],
  ['throw', 'error'],
  ['bigint', 'invalid-verdict'],
  ['cyclic', 'invalid-verdict'],
  ['function', 'invalid-verdict'],
  ['bad-code', 'invalid-verdict'],
  ['crlf', 'invalid-verdict'],
  ['promise', 'invalid-verdict'],
  ['process', 'error'],
  ['require', 'error'],
  ['function-ctor', 'error'],
  ['constructor-chain', 'error'],
  ['tamper', 'invalid-verdict'],
];

describe('hostile rules cost one verdict, never the server', () => {
  let t: TestHost;
  before(async () => {
    t = await startTestHost({ rules: RULES });
  });
  after(async () => t.close());

  /** Sends one message on a second connection; resolves with the server's final reply. */
  async function bystander(): Promise<string> {
    const transport = mailer(t.port);
    try {
      const info = await transport.sendMail({ envelope: { from: 'b@example.org', to: ['bystander@localhost'] }, raw: 'Subject: hi\r\n\r\nhello\r\n' });
      return info.response;
    } finally {
      transport.close();
    }
  }

  async function attempt(name: string): Promise<string> {
    const { c } = await RawSmtp.open(t.port);
    await c.cmd('EHLO attacker.example');
    await c.cmd('MAIL FROM:<a@example.org>');
    const r = await c.cmd(`RCPT TO:<${name}@localhost>`, 10_000);
    // The session goes on after a failed rule: the next recipient is judged normally.
    assert.equal(await c.cmd('RCPT TO:<fine@localhost>'), '250 2.1.5 Accepted');
    c.end();
    return r;
  }

  for (const [name, outcome] of CASES) {
    it(`${name}: answered 451 4.3.0, logged as ${outcome}, while another client's mail goes through`, async () => {
      const [reply, other] = await Promise.all([attempt(name), bystander()]);
      assert.match(reply, FAIL);
      assert.match(other, /^250 2\.0\.0 Ok: queued as /);
      const failure = t.logs.find((l) => l.rule === name && l.outcome !== undefined);
      assert.equal(failure?.outcome, outcome, JSON.stringify(failure));
      assert.equal(await t.host.metrics.get('rule_failures_total', { rule: name, phase: 'rcpt', outcome }), 1);
    });
  }

  it('dynamic import: import(specifier) never reaches a module loader (the sandbox runs no promise jobs); returning its promise fails the rule as invalid-verdict', async () => {
    const [reply, other] = await Promise.all([attempt('dynamic-import'), bystander()]);
    assert.match(reply, FAIL);
    assert.match(other, /^250 2\.0\.0 Ok: queued as /);
    const failure = t.logs.find((l) => l.rule === 'dynamic-import' && l.outcome !== undefined);
    assert.equal(failure?.outcome, 'invalid-verdict', JSON.stringify(failure));
    assert.equal(failure?.error, 'the handler returned a Promise: handlers must be synchronous');
    // The import was attempted, and its promise never settled: no module, and not even
    // QuickJS's "could not load module 'node:fs'" (that needs its job queue, never run).
    await attempt('sibling'); // a later call, for any job that could have run meanwhile
    assert.deepEqual(t.host.store.listValues('dynamic-import'), ['attempted']);
  });

  it('a rule that ran out of memory is rebuilt and answers again', async () => {
    assert.match(await attempt('alloc-grow'), FAIL);
    assert.match(await attempt('loop'), FAIL);
    // After the faults the sandboxes still serve ordinary calls.
    const { c } = await RawSmtp.open(t.port);
    await c.cmd('EHLO x.example');
    await c.cmd('MAIL FROM:<a@example.org>');
    assert.equal(await c.cmd('RCPT TO:<sibling@localhost>'), '550 5.7.1 Sibling still works');
    c.end();
  });

  it('prototype tampering stays inside the rule: the host and its other rules are untouched', async () => {
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    const { c } = await RawSmtp.open(t.port);
    await c.cmd('EHLO x.example');
    await c.cmd('MAIL FROM:<a@example.org>');
    assert.equal(await c.cmd('RCPT TO:<proto-json@localhost>'), '550 5.7.1 Refused');
    assert.equal(await c.cmd('RCPT TO:<sibling@localhost>'), '550 5.7.1 Sibling still works');
    c.end();
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});

describe('imports', () => {
  it("a literal import('node:fs') in a handler is refused at compile time, like a static import", async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'loader.ts');
      writeFileSync(file, "import { defineRule } from 'portcullis/sdk';\nexport default defineRule({ name: 'loader', phases: { rcpt: async () => { await import('node:fs'); } } });\n");
      await assert.rejects(compileRule(file), (e: Error) => e instanceof CompileError && /loader\.ts:2:\d+: cannot import "node:fs": a rule may import only "portcullis\/sdk"/.test(e.message));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('fail policy "continue"', () => {
  it('treats a failing rule as no opinion, but still logs and counts the failure', async () => {
    const [file, src] = hostile('spin', 'while (true) {}');
    await withHost({ rules: { [file]: src }, config: { rules: { settings: { spin: { failPolicy: 'continue', timeoutMs: 20 } } } } }, async (h) => {
      const { c } = await RawSmtp.open(h.port);
      await c.cmd('EHLO x.example');
      await c.cmd('MAIL FROM:<a@example.org>');
      assert.equal(await c.cmd('RCPT TO:<spin@localhost>'), '250 2.1.5 Accepted');
      c.end();
      const failure = h.logs.find((l) => l.rule === 'spin' && l.outcome === 'timeout');
      assert.equal(failure?.policy, 'continue');
      assert.equal(await h.host.metrics.get('rule_failures_total', { rule: 'spin', phase: 'rcpt', outcome: 'timeout' }), 1);
    });
  });
});
