/** The admin's CLI: check, new-rule, test and try, through the real `portcullis` binary. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from '../host/paths.js';
import { cli, rule, tempDir } from './helpers.js';

/**
 * A working directory of its own for each describe, removed after it; `scaffold` puts in
 * what `portcullis new-rule no-blockme --dir mine` writes (mine/no-blockme.ts and its test).
 */
function workDir(opts: { scaffold: boolean }): () => string {
  let dir = '';
  before(() => {
    dir = tempDir();
    if (!opts.scaffold) return;
    const r = cli(dir, ['new-rule', 'no-blockme', '--dir', 'mine']);
    assert.equal(r.status, 0, r.stderr);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  return () => dir;
}

describe('portcullis new-rule', () => {
  const dir = workDir({ scaffold: false });

  it('scaffolds a rule and its test, and never overwrites', () => {
    const r = cli(dir(), ['new-rule', 'no-blockme', '--dir', 'mine']);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(join(dir(), 'mine', 'no-blockme.ts')));
    assert.match(readFileSync(join(dir(), 'mine', 'no-blockme.test.ts'), 'utf8'), /loadRule\(new URL\('\.\/no-blockme\.ts', import\.meta\.url\)\)/);
    assert.equal(cli(dir(), ['new-rule', 'no-blockme', '--dir', 'mine']).status, 73);
    assert.equal(cli(dir(), ['new-rule', 'Bad Name']).status, 64);
  });
});

describe('portcullis test', () => {
  const dir = workDir({ scaffold: true });

  it('runs the scaffolded test green, and a failing test red', () => {
    const green = cli(dir(), ['test', 'mine']);
    assert.equal(green.status, 0, green.stdout + green.stderr);
    assert.match(green.stdout, /# pass 2/);
    writeFileSync(join(dir(), 'mine', 'wrong.test.ts'), `import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadRule } from 'portcullis/sdk/testing';
test('expects the wrong reply', async () => {
  const h = await loadRule('mine/no-blockme.ts');
  try {
    const s = await h.connect({ helo: 'x.example' });
    await s.mail('a@example.net');
    assert.equal((await s.rcpt('blockme@localhost')).reply, '250 2.1.5 Accepted');
  } finally { await h.close(); }
});
`);
    const red = cli(dir(), ['test', 'mine/wrong.test.ts']);
    assert.equal(red.status, 1);
    assert.match(red.stdout, /550 5\.1\.1 Mailbox unavailable/);
    rmSync(join(dir(), 'mine', 'wrong.test.ts'));
  });

  it('says so when there is nothing to run', () => {
    const empty = tempDir();
    try {
      const r = cli(empty, ['test']);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /no test files/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('portcullis check', () => {
  const dir = workDir({ scaffold: true });

  it('lists every rule and exits 0 when all is well', () => {
    const r = cli(dir(), ['check', '--rules', 'mine']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^ok: config \(embedded defaults\)\nok: rule blacklist .*priority 0, phases connect\n(ok: rule .*\n)*ok: rule no-blockme \(.*mine\/no-blockme\.ts\) priority 100, phases rcpt\n(ok: rule .*\n)*(off: rule .*: ships off; rules\.settings\.[a-z-]+\.enabled: true turns it on\n)*$/);
    assert.match(r.stdout, /\nok: rule null-sender-single-rcpt .*priority 50, phases rcpt\n/);
  });

  it('prints an off: line for a rule that ships off, saying how to turn it on', () => {
    const off = join(dir(), 'off');
    mkdirSync(off);
    writeFileSync(join(off, 'strict.ts'), rule('strict', "{ rcpt: () => reject(550, 'no') }", 'enabled: false,'));
    const r = cli(dir(), ['check', '--rules', off]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\noff: rule strict \(.*off\/strict\.ts\): ships off; rules\.settings\.strict\.enabled: true turns it on\n$/);
  });

  it('says where a rule kept to some mail runs (only / except)', () => {
    const cfg = join(dir(), 'placed.json');
    writeFileSync(cfg, JSON.stringify({ rules: { settings: { 'suspicious-helo': { except: { clients: ['192.0.2.0/24'] } }, 'subject-spam': { only: { recipients: ['sales.example.org'] } } } } }));
    const r = cli(dir(), ['check', '--config', cfg]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\nok: rule suspicious-helo .*phases helo, skips authenticated clients, except clients 192\.0\.2\.0\/24\n/);
    assert.match(r.stdout, /\nok: rule subject-spam .*, only recipients sales\.example\.org\n/);
  });

  it('reports every problem, with file:line:col or JSON path, and exits 1', () => {
    const bad = join(dir(), 'bad');
    mkdirSync(bad);
    writeFileSync(join(bad, 'broken.ts'), "import { defineRule } from 'portcullis/sdk';\nexport default defineRule({ name: 'broken', phases: { rcpt: () => { return ) } } });\n");
    writeFileSync(join(bad, 'opts.ts'), rule('opts', '{ rcpt: () => next() }', "options: { type: 'object', properties: { max: { type: 'integer' } } },"));
    writeFileSync(join(bad, 'config.json'), JSON.stringify({ rules: { settings: { opts: { options: { max: 'ten' } } } } }));
    const r = cli(dir(), ['check', '--config', join(bad, 'config.json'), '--rules', bad]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /error: .*broken\.ts:2:76: Unexpected "\)"/);
    assert.match(r.stderr, /error: \/rules\/settings\/opts\/options\/max: must be integer/);
    const c = cli(dir(), ['check', '--config', join(bad, 'nope.json')]);
    assert.equal(c.status, 1);
    assert.match(c.stderr, /^error: config .*nope\.json: cannot read the file: ENOENT: no such file or directory/);
  });

  it('reports an invalid config by JSON path', () => {
    writeFileSync(join(dir(), 'bad.json'), JSON.stringify({ limits: { maxClients: 0 } }));
    const r = cli(dir(), ['check', '--config', 'bad.json']);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, 'error: config bad.json: /limits/maxClients: must be >= 1\n');
  });
});

describe('portcullis try', () => {
  const dir = workDir({ scaffold: true });

  it('shows the score each rule adds and the score header of the message', () => {
    const rules = join(dir(), 'scoring');
    mkdirSync(rules, { recursive: true });
    writeFileSync(join(rules, 'scorer.ts'), rule('scorer', "{ rcpt: (ev, ctx) => { if (ev.rcpt.address.startsWith('trap')) ctx.score('trap', 5); } }"));
    const config = join(rules, 'config.json');
    writeFileSync(config, JSON.stringify({ rules: { builtin: false }, scores: { tag: 3 } }));
    const r = cli(dir(), ['try', '--config', config, '--rules', rules], 'EHLO mx.example.net\nMAIL FROM:<a@example.net>\nRCPT TO:<trap@localhost>\nDATA\nSubject: hi\n\nhello\n.\nQUIT\n');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\n>>> RCPT TO:<trap@localhost>\n {4}\+ score trap 5\n<<< 250 2\.1\.5 Accepted\n/);
    assert.match(r.stdout, /\n<<< 250 2\.0\.0 Ok: not queued \(try mode; would deliver\)\n {4}\+ header X-Portcullis-Score: 5 tag=yes \(trap=5\)\n/);
  });

  it('shows a rule marking the client well-behaved', () => {
    const rules = join(dir(), 'marking');
    mkdirSync(rules, { recursive: true });
    writeFileSync(join(rules, 'marker.ts'), rule('marker', '{ mail: (ev, ctx) => { ctx.markWellBehaved(3600); } }'));
    const r = cli(dir(), ['try', '--rules', rules], 'EHLO mx.example.net\nMAIL FROM:<a@example.net>\nQUIT\n');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\n>>> MAIL FROM:<a@example\.net>\n {4}\+ well-behaved 3600 s by marker\n<<< 250 /);
  });

  it('shows a RCPT refused by the score with the total and its symbols (scores.phases rcpt)', () => {
    const rules = join(dir(), 'scoring-rcpt');
    mkdirSync(rules, { recursive: true });
    writeFileSync(join(rules, 'scorer.ts'), rule('scorer', "{ rcpt: (ev, ctx) => { if (ev.rcpt.address.startsWith('trap')) ctx.score('trap', 5); } }"));
    const config = join(rules, 'config.json');
    writeFileSync(config, JSON.stringify({ rules: { builtin: false }, scores: { reject: 5, phases: ['rcpt'] } }));
    const r = cli(dir(), ['try', '--config', config, '--rules', rules], 'EHLO mx.example.net\nMAIL FROM:<a@example.net>\nRCPT TO:<trap@localhost>\nQUIT\n');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\n>>> RCPT TO:<trap@localhost>\n {4}\+ score trap 5\n {4}score 5 at rcpt is at or over 5: trap=5\n<<< 550 5\.7\.1 Message refused: its spam score 5 is at or over 5\n/);
  });

  it('replays a transcript: each reply, and the rule behind each decision', () => {
    const transcript = 'EHLO bot.example\nMAIL FROM:<a@example.net>\nRCPT TO:<blockme@localhost>\nRCPT TO:<user@localhost>\nDATA\nSubject: hi\n\nhello\n.\nQUIT\n';
    const r = cli(dir(), ['try', '--rules', 'mine', '--ip', '203.0.113.9'], transcript);
    assert.equal(r.status, 0, r.stderr);
    const [first, ...rest] = r.stdout.split('\n');
    assert.match(first!, /^>>> connect from 203\.0\.113\.9 to port 25 \(rules: blacklist, .*no-blockme.*\)$/);
    assert.equal(rest.join('\n'), [
      '<<< 220 localhost ESMTP Portcullis',
      '>>> EHLO bot.example',
      '<<< 250 localhost Nice to meet you',
      '>>> MAIL FROM:<a@example.net>',
      '<<< 250 2.1.0 Accepted',
      '>>> RCPT TO:<blockme@localhost>',
      '    no-blockme logged: refusing blockme@localhost',
      '    rule no-blockme decided reject (reason no-blockme)',
      '<<< 550 5.1.1 Mailbox unavailable',
      '>>> RCPT TO:<user@localhost>',
      '<<< 250 2.1.5 Accepted',
      '>>> DATA',
      '<<< 354 End data with <CR><LF>.<CR><LF>',
      '>>> (message: 3 lines, 22 bytes)',
      '<<< 250 2.0.0 Ok: not queued (try mode; would deliver)',
      '>>> QUIT',
      '<<< 221 2.0.0 Bye',
      '',
    ].join('\n'));
  });

  it('shows relay control and a drop ending the session', () => {
    const rules = join(dir(), 'dropper');
    mkdirSync(rules);
    writeFileSync(join(rules, 'dropper.ts'), rule('dropper', `{ helo: (ev) => ev.helo.name === 'evil.example' ? drop('Go away') : next() }`));
    const r = cli(dir(), ['try', '--rules', 'dropper'], 'EHLO ok.example\nMAIL FROM:<a@example.net>\nRCPT TO:<x@elsewhere.example>\nEHLO evil.example\nMAIL FROM:<b@example.net>\n');
    assert.match(r.stdout, />>> RCPT TO:<x@elsewhere\.example>\n<<< 554 5\.7\.1 Relaying denied\n/);
    assert.match(r.stdout, />>> EHLO evil\.example\n    rule dropper decided drop \(reason dropper\)\n<<< 421 4\.7\.0 Go away\n\(connection closed\)\n$/);
  });
});

describe('portcullis reload and status', () => {
  it('reload makes the running host re-read its rules (SIGHUP); status shows the version and the last error', async () => {
    const { spawn } = await import('node:child_process');
    const run = tempDir();
    const rules = join(run, 'rules');
    mkdirSync(rules);
    writeFileSync(join(rules, 'r.ts'), rule('r', `{ rcpt: () => next() }`));
    const cfg = join(run, 'config.json');
    writeFileSync(cfg, JSON.stringify({ listen: ['127.0.0.1:0'], admin: { listen: '127.0.0.1:0' }, dataDir: join(run, 'data'), reverseDns: false, watch: false, rules: { dirs: [rules] } }));
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), 'start', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await new Promise<void>((ok, fail) => {
        let out = '';
        const t = setTimeout(() => fail(new Error(`host did not start: ${out}`)), 20_000);
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('listening on')) {
            clearTimeout(t);
            ok();
          }
        });
      });
      const st = cli(run, ['status', '--config', cfg]);
      assert.equal(st.status, 0, st.stderr);
      assert.match(st.stdout, /^pid \d+, started .*\nrule set version 1: blacklist, .*\br\b.*\nreloads: 0 ok, 0 failed\n$/);
      writeFileSync(join(rules, 'r.ts'), 'export default {;\n');
      const bad = cli(run, ['reload', '--config', cfg]);
      assert.equal(bad.status, 1);
      assert.match(bad.stdout, /last reload FAILED at .*; version 1 keeps serving:\n  .*r\.ts:1:17: Expected identifier but found ";"/);
      writeFileSync(join(rules, 'r.ts'), rule('r', `{ rcpt: () => undefined }`));
      const good = cli(run, ['reload', '--config', cfg]);
      assert.equal(good.status, 0, good.stdout + good.stderr);
      assert.match(good.stdout, /rule set version 3: blacklist, .*\br\b.*\nreloads: 1 ok, 1 failed\nlast reload: version 3 at .* in \d+ ms \(rule r changed\)\n$/);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(run, { recursive: true, force: true });
    }
  });
});
