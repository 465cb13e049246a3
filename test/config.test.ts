/**
 * Bad input gets a clear error, through the real CLI and host: a rule with a syntax error
 * (file:line:col), a rule that fails at load, bad rule options; the CLI exits non-zero
 * before listening. The config's own validation: config.unit.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { cli as runCli, rule, scratchDirs } from './helpers.js';

const scratch = scratchDirs();

function configFile(content: unknown): string {
  const f = join(scratch(), 'config.json');
  writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content));
  return f;
}

/** The real binary, run from this process's working directory. */
const cli = (...args: string[]) => runCli(process.cwd(), args);

describe('portcullis start refuses to run on bad input', () => {
  it('exits 78 on an invalid config, printing each problem, before listening', () => {
    const r = cli('start', '--config', configFile({ limits: { maxClients: 'many' } }));
    assert.equal(r.status, 78);
    assert.match(r.stderr, /invalid config .*config\.json:\n  \/limits\/maxClients: must be integer/);
  });

  it('exits 78 when a rule has a syntax error, naming file:line:col', () => {
    const dir = scratch();
    mkdirSync(join(dir, 'rules'));
    const file = join(dir, 'rules', 'broken.ts');
    writeFileSync(file, "import { defineRule } from 'portcullis/sdk';\nexport default defineRule({ name: 'broken', phases: { rcpt: () => { return ) } } });\n");
    const r = cli('start', '--listen', '127.0.0.1:0', '--admin', 'off', '--data-dir', join(dir, 'data'), '--rules', join(dir, 'rules'));
    assert.equal(r.status, 78);
    assert.ok(r.stderr.includes(`${file}:2:76: Unexpected ")"`), r.stderr);
  });

  it('exits 71 with a plain message when the port is taken or the data dir cannot be made', async () => {
    const { createServer } = await import('node:net');
    const busy = createServer();
    await new Promise<void>((ok) => busy.listen(0, '127.0.0.1', () => ok()));
    const port = (busy.address() as { port: number }).port;
    try {
      const r = cli('start', '--listen', `127.0.0.1:${port}`, '--admin', 'off', '--data-dir', join(scratch(), 'data'));
      assert.equal(r.status, 71);
      assert.equal(r.stderr, `portcullis: cannot listen on 127.0.0.1:${port}: address already in use\n`);
    } finally {
      busy.close();
    }
    const file = join(scratch(), 'a-file');
    writeFileSync(file, 'x');
    const r = cli('start', '--listen', '127.0.0.1:0', '--admin', 'off', '--data-dir', join(file, 'data'));
    assert.equal(r.status, 71);
    assert.match(r.stderr, /^portcullis: ENOTDIR: not a directory, mkdir '.*a-file\/data'\n$/);
  });

  it('exits 64 with usage on an unknown flag', () => {
    const r = cli('start', '--bogus');
    assert.equal(r.status, 64);
    assert.match(r.stderr, /Unknown option '--bogus'/);
  });
});

describe('rules that cannot load', () => {
  async function loadError(files: Record<string, string>, settings: Record<string, unknown> = {}): Promise<string> {
    const { startTestHost } = await import('./helpers.js');
    try {
      const h = await startTestHost({ rules: files, config: { rules: { settings } } });
      await h.close();
    } catch (e) {
      return (e as Error).message;
    }
    assert.fail('rules loaded');
  }

  it('a rule importing a Node module is refused at compile time', async () => {
    const msg = await loadError({ 'fs.ts': "import { readFileSync } from 'node:fs';\nexport default { name: 'fs', phases: { connect: () => readFileSync('/etc/passwd') } };\n" });
    assert.match(msg, /fs\.ts:1:30: cannot import "node:fs": a rule may import only "portcullis\/sdk"/);
  });

  it('top-level code that loops is stopped and reported', async () => {
    assert.match(await loadError({ 'spin.ts': 'while (true) {}\nexport default {};\n' }), /spin\.ts: top-level code ran past 1000 ms while loading/);
  });

  it('a default export that is not a rule is reported', async () => {
    assert.match(await loadError({ 'x.ts': "export default { name: 'Bad Name', phases: {} };\n" }), /x\.ts: TypeError: name must be a kebab-case string/);
    assert.match(await loadError({ 'y.ts': "export default { name: 'y', phases: { rcp: () => 1 } };\n" }), /phases\.rcp is not a phase; phases are connect, helo, auth, mail, rcpt, data, message, close/);
  });

  it('options are validated against the rule\'s own schema, with the config path', async () => {
    const src = rule('limits', '{ rcpt: () => next() }', "options: { type: 'object', additionalProperties: false, properties: { max: { type: 'integer', minimum: 1, default: 5 } } },");
    assert.match(await loadError({ 'l.ts': src }, { limits: { options: { max: 0 } } }), /\/rules\/settings\/limits\/options\/max: must be >= 1/);
  });

  it('a settings entry for a rule that is not there is a warning, not a refusal to start', async () => {
    const { startTestHost } = await import('./helpers.js');
    const h = await startTestHost({ rules: { 'l.ts': rule('here', '{ rcpt: () => next() }') }, config: { rules: { settings: { nosuch: { enabled: false } } } } });
    try {
      const warning = `/rules/settings/nosuch: no rule named "nosuch" was found in ${h.rulesDir}; the entry is ignored`;
      assert.deepEqual(h.host.status().rules, ['here']);
      assert.deepEqual(h.host.status().warnings, [warning]);
      assert.ok(h.logs.some((l) => l.level === 40 && l.msg === warning), 'logged as a warning');
    } finally {
      await h.close();
    }
  });

  it('a rule that ships off (enabled: false) runs only where the config turns it on; the config can turn any rule off', async () => {
    const { startTestHost, rcptReply } = await import('./helpers.js');
    const rules = {
      'strict.ts': rule('strict', "{ rcpt: () => reject(550, 'Strict says no') }", 'enabled: false,'),
      'plain.ts': rule('plain', "{ rcpt: (ev) => ev.rcpt.address.startsWith('plain@') ? reject(550, 'Plain says no') : next() }"),
    };
    const shipped = await startTestHost({ rules });
    try {
      assert.deepEqual(shipped.host.status().rules, ['plain']);
      assert.equal(await rcptReply(shipped.port, 'user@localhost'), '250 2.1.5 Accepted');
      assert.ok(shipped.logs.some((l) => l.msg === 'not running: strict (ships off; rules.settings.strict.enabled: true turns it on)'));
    } finally {
      await shipped.close();
    }
    // Options alone do not turn a rule on: only `enabled: true` does.
    const turned = await startTestHost({ rules, config: { rules: { settings: { strict: { enabled: true }, plain: { enabled: false } } } } });
    try {
      assert.deepEqual(turned.host.status().rules, ['strict']);
      assert.equal(await rcptReply(turned.port, 'user@localhost'), '550 5.7.1 Strict says no');
      assert.ok(turned.logs.some((l) => l.msg === 'not running: plain (turned off by the config)'));
    } finally {
      await turned.close();
    }
  });

  it('a top-level file that is not a rule is reported, saying where helpers go', async () => {
    assert.match(await loadError({ 'util.ts': 'export function isBad(a: string): boolean { return a.length > 3; }\n' }),
      /util\.ts: TypeError: the rule file must default-export defineRule\(\{ \.\.\. \}\) \(a helper module goes in a subdirectory such as lib\/: only the top-level files of a rules directory are rules\)/);
  });

  it('two rules with the same name are refused', async () => {
    assert.match(await loadError({ 'a.ts': rule('same', '{}'), 'b.ts': rule('same', '{}') }), /b\.ts: rule name "same" is already used by .*a\.ts/);
  });
});
