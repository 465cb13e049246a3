/**
 * The published package, as an admin gets it: `npm pack` of a checkout with no dist/
 * (the pack builds it), installed from the tarball into a project of the admin's own
 * outside the checkout, then the authoring loop there: scaffold, check, the rule's tests
 * under `portcullis test` and plain `node --test`, and `tsc` on the admin's rules and
 * tests against the package's emitted declarations.
 *
 * Then the host itself, started from that install with the shipped systemd unit's
 * ExecStart line (deploy/portcullis.service) and the shipped production config
 * (deploy/config.json) pointed at test ports and directories: it takes mail for the next
 * hop behind it, refuses with the admin's rule, and stops cleanly on the unit's signal.
 *
 * No network: the scratch project gets a lockfile made from ours (the versions this
 * checkout was installed and tested with), so `npm ci --offline` takes every dependency
 * from the npm cache, as `npm ci` filled it.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from '../host/paths.js';
import { mailer, tempDir } from './helpers.js';
import { startNextHop } from './nexthop.js';

const npmMissing = spawnSync('npm', ['--version']).error !== undefined;

function run(cwd: string, cmd: string, args: string[]): SpawnSyncReturns<string> {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // the scratch project's `node --test` is a run of its own
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env, timeout: 120_000 });
  if (r.error) throw r.error;
  return r;
}

/** What `npm pack` of a fresh checkout makes: our files without dist/, data/ or node_modules (linked). */
function packFreshCheckout(into: string): string {
  const src = join(into, 'checkout');
  const skip = new Set(['node_modules', 'dist', 'data', 'tmp', '.git']);
  cpSync(ROOT, src, { recursive: true, filter: (p) => !skip.has(p.slice(ROOT.length + 1).split('/')[0]!) });
  symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
  const r = run(src, 'npm', ['pack', '--pack-destination', into]);
  assert.equal(r.status, 0, r.stderr);
  return join(into, readdirSync(into).find((f) => f.endsWith('.tgz'))!);
}

/**
 * An admin's project depending on the tarball (and @types/node, for its tests), with a
 * lockfile from ours: every dependency at the version we test with, found in the cache.
 */
function scratchProject(dir: string, tarball: string): void {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, Record<string, unknown>> };
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
  const tgz = `file:${tarball}`;
  const typesNode = lock.packages['node_modules/@types/node']!.version as string;
  const manifest = { name: 'admin-rules', private: true, type: 'module', dependencies: { portcullis: tgz }, devDependencies: { '@types/node': typesNode } };
  const packages: Record<string, unknown> = {
    ...lock.packages,
    '': { name: manifest.name, dependencies: manifest.dependencies, devDependencies: manifest.devDependencies },
    'node_modules/portcullis': {
      version: pkg.version, resolved: tgz, integrity: `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`,
      dependencies: pkg.dependencies, bin: pkg.bin, engines: pkg.engines,
    },
  };
  // Our own development tools are not the admin's: npm would install them as extraneous.
  for (const name of Object.keys(pkg.devDependencies!)) if (name !== '@types/node') delete packages[`node_modules/${name}`];
  writeFileSync(join(dir, 'package.json'), JSON.stringify(manifest, null, 2));
  writeFileSync(join(dir, 'package-lock.json'), JSON.stringify({ name: manifest.name, lockfileVersion: 3, requires: true, packages }, null, 2));
}

describe('the npm package', { skip: npmMissing && 'npm is not installed: cannot pack or install the package' }, () => {
  let tmp = '';
  let admin = '';
  before(() => {
    tmp = tempDir('portcullis-package-');
    admin = join(tmp, 'admin');
    mkdirSync(admin);
    scratchProject(admin, packFreshCheckout(tmp));
    // --ignore-scripts: sqlite3's install would compile SQLite (minutes; only `start` and
    // the store commands load it) and esbuild's only checks its binary.
    const r = run(admin, 'npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund']);
    assert.equal(r.status, 0, `npm ci --offline failed (is the npm cache filled by npm ci of the checkout?):\n${r.stderr}`);
    const scaffold = run(admin, 'npx', ['portcullis', 'new-rule', 'no-blockme', '--dir', 'rules']);
    assert.equal(scaffold.status, 0, scaffold.stderr);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('checks the admin\'s rule: compiled, loaded, type-checked against the SDK', () => {
    const r = run(admin, 'npx', ['portcullis', 'check', '--rules', 'rules']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`\nok: rule no-blockme \\(${join(admin, 'rules', 'no-blockme.ts')}\\) priority 100, phases rcpt\n`));
  });

  it('runs the rule\'s TypeScript test with portcullis test', () => {
    const r = run(admin, 'npx', ['portcullis', 'test', 'rules']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /\n# pass 2\n# fail 0\n/);
  });

  it('runs a rule test under plain node --test, importing portcullis/sdk/testing', () => {
    // JavaScript: Node 20 cannot load .ts itself (`portcullis test` strips the types for it).
    mkdirSync(join(admin, 'test'));
    writeFileSync(join(admin, 'test', 'plain.test.mjs'), `import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadRule } from 'portcullis/sdk/testing';
test('refuses blockme@localhost', async () => {
  const h = await loadRule(new URL('../rules/no-blockme.ts', import.meta.url));
  try {
    const s = await h.connect({ ip: '203.0.113.9', helo: 'mx.example.net' });
    await s.mail('someone@example.net');
    assert.equal((await s.rcpt('blockme@localhost')).reply, '550 5.1.1 Mailbox unavailable');
  } finally {
    await h.close();
  }
});
`);
    const r = run(admin, process.execPath, ['--test', 'test/']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /\n# pass 1\n# fail 0\n/);
  });

  it('replays a recorded session fixture under plain node --test, with loadRecordedSession from portcullis/sdk/testing', () => {
    // What `portcullis replay --save-fixtures` writes: this one was refused by the admin's rule.
    mkdirSync(join(admin, 'replayed'));
    const t = Date.UTC(2026, 11, 1, 6, 0, 0);
    const ok = { reply: null, rule: null };
    writeFileSync(join(admin, 'replayed', 'blockme.json'), JSON.stringify({
      v: 1, id: 'fixture1', ruleSet: 1, client: { ip: '203.0.113.9', port: 40000, ptr: null, localIp: '127.0.0.1', localPort: 25 }, blacklist: null, wellBehaved: false, dns: false, facts: {},
      steps: [{ cmd: 'connect', t, ...ok }, { cmd: 'helo', t, verb: 'EHLO', name: 'mx.example.net', ...ok }, { cmd: 'mail', t, address: 'someone@example.net', args: {}, ...ok }, { cmd: 'rcpt', t, address: 'blockme@localhost', args: {}, reply: '550 5.1.1 Mailbox unavailable', rule: 'no-blockme' }, { cmd: 'close', t, ...ok }],
    }));
    writeFileSync(join(admin, 'replayed', 'fixture.test.mjs'), `import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadRecordedSession, loadRule } from 'portcullis/sdk/testing';
test('the recorded refusal stands', async () => {
  const h = await loadRule(new URL('../rules/no-blockme.ts', import.meta.url));
  try {
    const r = await h.replay(loadRecordedSession(new URL('./blockme.json', import.meta.url)));
    assert.deepEqual(r.changes, []);
    assert.equal(r.replies[3], '550 5.1.1 Mailbox unavailable');
  } finally {
    await h.close();
  }
});
`);
    const r = run(admin, process.execPath, ['--test', 'replayed/']);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /\n# pass 1\n# fail 0\n/);
  });

  it('type-checks the admin\'s rules and tests with tsc, declarations included (no skipLibCheck)', () => {
    const r = run(admin, 'npx', ['tsc', '-p', 'rules', '--skipLibCheck', 'false']);
    assert.equal(r.stdout + r.stderr, '');
    assert.equal(r.status, 0);
  });

  it('serves mail when started from the install with the systemd unit\'s ExecStart line and the shipped config', async () => {
    // The unit's command line, with the install's binary and a config in the scratch project.
    const unit = readFileSync(join(ROOT, 'deploy', 'portcullis.service'), 'utf8');
    const execStart = /^ExecStart=(.+)$/m.exec(unit)![1]!.trim().split(/\s+/);
    assert.deepEqual(execStart, ['/usr/local/bin/portcullis', 'start', '--config', '/etc/portcullis/config.json']);
    const next = await startNextHop();
    const state = join(admin, 'state'); // the unit's WorkingDirectory and StateDirectory
    mkdirSync(state);
    const shipped = JSON.parse(readFileSync(join(ROOT, 'deploy', 'config.json'), 'utf8')) as Record<string, unknown> & { delivery: { nextHop: Record<string, unknown> } };
    const { tls: _tls, dns: _dns, ...config } = shipped; // no certificate or resolver here
    writeFileSync(join(admin, 'config.json'), JSON.stringify({
      ...config, listen: ['127.0.0.1:0'], admin: { listen: '127.0.0.1:0' }, dataDir: state, reverseDns: false,
      rules: { builtin: true, dirs: [join(admin, 'rules')], settings: { 'no-blockme': { options: { blocked: ['blockme@example.org'] } } } },
      delivery: { ...config.delivery, nextHop: { ...config.delivery.nextHop, port: next.port } },
    }));
    // sqlite3 as npm built it for the checkout (the install above skipped its compile).
    cpSync(join(ROOT, 'node_modules', 'sqlite3', 'build'), join(admin, 'node_modules', 'sqlite3', 'build'), { recursive: true });
    const argv = execStart.map((a) => (a === '/usr/local/bin/portcullis' ? join(admin, 'node_modules', '.bin', 'portcullis') : a === '/etc/portcullis/config.json' ? join(admin, 'config.json') : a));
    const host = spawn(argv[0]!, argv.slice(1), { cwd: state, stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((ok) => host.on('exit', (code) => ok(code)));
    try {
      let out = '';
      const port = await new Promise<number>((ok, fail) => {
        const t = setTimeout(() => fail(new Error(`the host did not start: ${out}`)), 30_000);
        const seen = (d: Buffer): void => {
          out += d.toString();
          const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
          if (m) {
            clearTimeout(t);
            ok(Number(m[1]));
          }
        };
        host.stdout!.on('data', seen);
        host.stderr!.on('data', seen);
        void exited.then((code) => fail(new Error(`the host exited (${code}) before listening: ${out}`)));
      });
      const sent = await mailer(port).sendMail({ from: 'someone@example.net', to: 'user@example.org', subject: 'from the package', text: 'hello', date: new Date() });
      assert.match(sent.response, /^250 /);
      await assert.rejects(mailer(port).sendMail({ from: 'someone@example.net', to: 'blockme@example.org', subject: 'x', text: 'x' }), (e: { response?: string }) => e.response === '550 5.1.1 Mailbox unavailable');
      // Delivered to the next hop behind it, as in front of Postfix.
      const deadline = Date.now() + 10_000;
      while (!next.received.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(next.received.map((m) => m.to), [['user@example.org']]);
      assert.match(next.received[0]!.raw.toString(), /\r\nSubject: from the package\r\n/);
    } finally {
      host.kill('SIGTERM'); // the unit's KillSignal
      assert.equal(await exited, 0);
      await next.close();
    }
  });
});
