/**
 * Writing a rule: type errors are caught (`portcullis check` fails, hot reload warns but
 * loads), and `portcullis test` runs TypeScript tests in place: paths relative to the
 * test file, failures at the .ts line, Node's runner flags passed through.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { cli, eventually, rcptReply, tempDir, withHost } from './helpers.js';

/** A rule that reads `ev.message.subject`, which the event does not have (line 6, column 53). */
const MISTYPED = `import { defineRule, next, reject } from 'portcullis/sdk';
export default defineRule({
  name: 'mistyped',
  phases: {
    rcpt: (ev) => reject(550, 'Loaded anyway'),
    message: (ev) => { const x: number = ev.message.subject; return x > 0 ? next() : next(); },
  },
});
`;
const TS2339 = "TS2339: Property 'subject' does not exist on type";
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

function withDir(fn: (dir: string) => void | Promise<void>): () => Promise<void> {
  return async () => {
    const dir = tempDir();
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

describe('type errors in a rule', () => {
  it('portcullis check reports file:line:col and the TypeScript message, and exits 1', withDir((dir) => {
    writeFileSync(join(dir, 'mistyped.ts'), MISTYPED);
    // A JavaScript rule beside it is loaded, not type-checked.
    writeFileSync(join(dir, 'plain.js'), "import { defineRule, next } from 'portcullis/sdk';\nexport default defineRule({ name: 'plain', phases: { rcpt: () => next() } });\n");
    const r = cli(dir, ['check', '--rules', dir]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`^error: ${esc(join(dir, 'mistyped.ts'))}:6:53: ${esc(TS2339)} '.*'\\.\\n$`));
    assert.doesNotMatch(r.stdout, /ok: rule mistyped/);
    assert.match(r.stdout, /\nok: rule plain \(.*plain\.js\) priority 100, phases rcpt\n/);
  }));

  it('a syntax error is reported once, by the compiler that loads rules', withDir((dir) => {
    writeFileSync(join(dir, 'broken.ts'), "import { defineRule } from 'portcullis/sdk';\nexport default defineRule({ name: 'broken', phases: { rcpt: () => { return ) } } });\n");
    const r = cli(dir, ['check', '--rules', dir]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `error: ${join(dir, 'broken.ts')}:2:76: Unexpected ")"\n`);
  }));

  it('hot reload takes the rule live and logs each type error as a warning naming file:line:col', async () => {
    await withHost({ watch: true }, async (h) => {
      const file = join(h.rulesDir, 'mistyped.ts');
      writeFileSync(file, MISTYPED);
      await eventually('the rule is live', async () => (await rcptReply(h.port, 'x@localhost')) === '550 5.7.1 Loaded anyway');
      await eventually('the type error is logged', () => h.logs.some((l) => l.level === 40 && String(l.msg).includes(TS2339)), 15_000);
      const warn = h.logs.find((l) => String(l.msg).includes(TS2339))!;
      assert.match(String(warn.msg), new RegExp(`^type error \\(the rule is loaded; portcullis check fails on it\\): ${esc(file)}:6:53: ${esc(TS2339)} `));
      assert.equal(h.host.status().reloads.failed, 0);
    });
  });
});

const FAILING = `import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadRule } from 'portcullis/sdk/testing';

type Reply = string | null; // types only: gone from the JavaScript, so lines would shift without a source map

test('expects the wrong reply', async () => {
  const h = await loadRule(new URL('./no-blockme.ts', import.meta.url));
  try {
    const s = await h.connect({ helo: 'x.example' });
    await s.mail('a@example.net');
    const reply: Reply = (await s.rcpt('blockme@localhost')).reply;
    assert.equal(reply, '250 2.1.5 Accepted');
  } finally {
    await h.close();
  }
});
`;

describe('portcullis test', () => {
  it('runs a test in place: its rule found by new URL(…, import.meta.url), its ./x.js import of x.ts, from any working directory', withDir((dir) => {
    mkdirSync(join(dir, 'deep'));
    assert.equal(cli(dir, ['new-rule', 'no-blockme', '--dir', 'deep']).status, 0);
    writeFileSync(join(dir, 'deep', 'recipients.ts'), "export const BLOCKED: string = 'blockme@localhost';\n");
    writeFileSync(join(dir, 'deep', 'helper.test.ts'), `import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadRule } from 'portcullis/sdk/testing';
import { BLOCKED } from './recipients.js';
test('refuses the blocked recipient', async () => {
  const h = await loadRule(new URL('./no-blockme.ts', import.meta.url));
  const s = await h.connect({ helo: 'x.example' });
  await s.mail('a@example.net');
  assert.equal((await s.rcpt(BLOCKED)).reply, '550 5.1.1 Mailbox unavailable');
  await h.close();
});
`);
    const r = cli(tmpdir(), ['test', join(dir, 'deep')]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /\n# pass 3\n# fail 0\n/);
  }));

  it('a failing assertion points at the .ts file and line', withDir((dir) => {
    assert.equal(cli(dir, ['new-rule', 'no-blockme', '--dir', '.']).status, 0);
    writeFileSync(join(dir, 'wrong.test.ts'), FAILING);
    const r = cli(dir, ['test', 'wrong.test.ts']);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /\+ '550 5\.1\.1 Mailbox unavailable'\n\s+- '250 2\.1\.5 Accepted'/);
    assert.match(r.stdout, new RegExp(`\\(${esc(join(dir, 'wrong.test.ts'))}:13:12\\)\\n`));
  }));

  it('passes --test-name-pattern to node: only the named test runs', withDir((dir) => {
    assert.equal(cli(dir, ['new-rule', 'no-blockme', '--dir', '.']).status, 0);
    const r = cli(dir, ['test', '.', '--test-name-pattern', 'accepts other']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /\n# pass 1\n# fail 0\n/);
    assert.match(r.stdout, /\n {4}ok \d+ - accepts other recipients\n/);
    assert.doesNotMatch(r.stdout, /ok \d+ - refuses a blocked recipient\n/); // skipped (# SKIP) or not listed
  }));
});
