/**
 * The admin API (issue 16; smtpf's CONN, KILL, STAT, blacklist commands over HTTP), over
 * real HTTP against a host serving real SMTP clients from distinct 127.0.0.x addresses.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { RawSmtp, rule, tempDir, withHost, type TestHost } from './helpers.js';

const BIN = join(dirname(dirname(dirname(fileURLToPath(import.meta.url)))), 'bin', 'portcullis.js');

const PICKY = rule('picky', `{ rcpt: (ev) => ev.rcpt.address.startsWith('nobody@') ? reject(550, 'No such user here', { status: '1.1' }) : next() }`);
const SHADOWED = rule('would-refuse', `{ mail: (ev) => ev.mail.address.endsWith('@spam.example') ? reject(550, 'Spam sender') : next() }`);

async function call(h: TestHost, path: string, method = 'GET', headers: Record<string, string> = method === 'GET' ? {} : { 'X-Portcullis-Admin': '1' }) {
  const res = await fetch(`http://127.0.0.1:${h.host.adminAddress!.port}${path}`, { method, headers });
  return { status: res.status, body: (await res.json()) as unknown };
}

describe('admin API', () => {
  it('GET /api/sessions lists a live session; POST /api/sessions/kill ends it with 421', async () => {
    await withHost({}, async (h) => {
      const { c } = await RawSmtp.open(h.port, '127.0.0.51');
      await c.cmd('EHLO idle.example.org');
      await c.cmd('MAIL FROM:<a@example.org>');
      const { body } = await call(h, '/api/sessions');
      const [s] = body as { id: string; ip: string; helo: string; mailFrom: string }[];
      assert.deepEqual([s?.ip, s?.helo, s?.mailFrom], ['127.0.0.51', 'idle.example.org', 'a@example.org']);
      assert.deepEqual(await call(h, `/api/sessions/kill?id=${s!.id}`, 'POST'), { status: 200, body: { killed: s!.id } });
      assert.equal(await c.reply(), '421 4.7.0 localhost Connection closed by the administrator');
      assert.equal(await c.waitClosed(), true);
      assert.deepEqual((await call(h, `/api/sessions/kill?id=${s!.id}`, 'POST')).status, 404);
    });
  });

  it('a changing request without X-Portcullis-Admin is refused (403) and changes nothing', async () => {
    await withHost({}, async (h) => {
      const r = await call(h, '/api/blacklist?ip=192.0.2.9', 'POST', {});
      assert.deepEqual(r, { status: 403, body: { error: 'send the header X-Portcullis-Admin: 1 with a request that changes something' } });
      assert.deepEqual((await call(h, '/api/blacklist')).body, []);
    });
  });

  it('blacklist: add over the API refuses the client at connect (the built-in blacklist rule); remove lets it in again', async () => {
    await withHost({ builtin: true }, async (h) => {
      const added = await call(h, '/api/blacklist?ip=127.0.0.52&ttl=600&reason=testing', 'POST');
      assert.equal(added.status, 200);
      assert.deepEqual((await call(h, '/api/blacklist')).body, [{ ...(added.body as object) }]);
      const refused = await RawSmtp.open(h.port, '127.0.0.52');
      assert.match(refused.greeting, /^554 /);
      assert.deepEqual(await call(h, '/api/blacklist?ip=127.0.0.52', 'DELETE'), { status: 200, body: { removed: '127.0.0.52' } });
      const again = await RawSmtp.open(h.port, '127.0.0.52');
      assert.match(again.greeting, /^220 /);
      again.c.end();
    });
  });

  it('GET /api/stats counts the minute\'s transactions and refusals by rule; /api/routes per recipient domain', async () => {
    await withHost({ rules: { 'p.ts': PICKY } }, async (h) => {
      const { c } = await RawSmtp.open(h.port, '127.0.0.53');
      await c.cmd('EHLO mx.example.org');
      await c.cmd('MAIL FROM:<a@example.org>');
      await c.cmd('RCPT TO:<nobody@localhost>');
      await c.cmd('RCPT TO:<user@localhost>');
      await c.cmd('DATA');
      await c.cmd('Subject: hi\r\n\r\nhello\r\n.');
      const { body } = (await call(h, '/api/stats')) as { body: { window: { accepted: number; rcptRefused: number; refusedBy: Record<string, number> }[]; topRefused: unknown[] } };
      const now = body.window.at(-1)!;
      assert.deepEqual([now.accepted, now.rcptRefused, now.refusedBy], [1, 1, { picky: 1 }]);
      assert.deepEqual(body.topRefused, [{ ip: '127.0.0.53', refusals: 1 }]);
      const day = new Date().toISOString().slice(0, 10);
      assert.deepEqual((await call(h, '/api/routes')).body, [{ day, domain: 'localhost', accepted: 1, refused: 1, kb: 1 }]);
      c.end();
    });
  });

  it('GET /api/shadow: what a shadow rule would have refused, with the sample', async () => {
    await withHost({ rules: { 's.ts': SHADOWED }, config: { rules: { settings: { 'would-refuse': { action: 'shadow' } } } } }, async (h) => {
      const { c } = await RawSmtp.open(h.port, '127.0.0.54');
      await c.cmd('EHLO mx.example.org');
      assert.equal(await c.cmd('MAIL FROM:<x@spam.example>'), '250 2.1.0 Accepted');
      const [r] = (await call(h, '/api/shadow')).body as { rule: string; sessions: number; refusals: number; samples: { ip: string; phase: string; would: string }[] }[];
      assert.deepEqual([r?.rule, r?.sessions, r?.refusals], ['would-refuse', 1, 1]);
      assert.deepEqual([r?.samples[0]?.ip, r?.samples[0]?.phase, r?.samples[0]?.would], ['127.0.0.54', 'mail', '550 Spam sender']);
      c.end();
    });
  });

  it('GET /api/rules: the version, each rule with its options; GET /api/queue: what is spooled', async () => {
    await withHost({ rules: { 'p.ts': PICKY } }, async (h) => {
      const rules = (await call(h, '/api/rules')).body as { version: number; rules: { name: string; action: string; options: object }[]; lastError: unknown };
      assert.equal(rules.version, 1);
      assert.deepEqual(rules.rules.map((r) => [r.name, r.action, r.options]), [['picky', 'enforce', {}]]);
      assert.equal(rules.lastError, null);
      assert.deepEqual((await call(h, '/api/queue')).body, { spool: 0, quarantine: 0 });
    });
  });
});

describe('portcullis conn, kill and stats --window (through the admin API)', () => {
  /** The CLI as a child process, asynchronously: the host answering it runs in this process. */
  async function portcullis(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const run = promisify(execFile);
    return run(process.execPath, [BIN, ...args]).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
  }

  it('conn lists the live session, kill ends it, stats --window shows the minute', async () => {
    await withHost({}, async (h) => {
      const { c } = await RawSmtp.open(h.port, '127.0.0.55');
      await c.cmd('EHLO cli.example.org');
      const listed = await portcullis(['conn', '--config', h.configFile]);
      assert.equal(listed.code, 0, listed.stderr);
      const m = /^(\S+) unknown\[127\.0\.0\.55\] helo=cli\.example\.org since \S+ transactions=0\n$/.exec(listed.stdout);
      assert.ok(m, listed.stdout);
      const killed = await portcullis(['kill', '--config', h.configFile, m[1]!]);
      assert.deepEqual([killed.code, killed.stdout], [0, `ended session ${m[1]}\n`]);
      assert.equal(await c.reply(), '421 4.7.0 localhost Connection closed by the administrator');
      const window = await portcullis(['stats', '--window', '--config', h.configFile]);
      assert.equal(window.stdout.split('\n').filter(Boolean).length, 60);
      assert.match(window.stdout.split('\n').at(-2)!, / conn 1 accepted 0 refused 0 abandoned 0 rcpt 0\/0 KB 0$/);
    });
  });

  it('with no host running, conn says so and exits 1', async () => {
    const dir = tempDir();
    const config = join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ dataDir: join(dir, 'data'), admin: { listen: '127.0.0.1:1' } }));
    const r = await portcullis(['conn', '--config', config]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^portcullis conn: no host answers at http:\/\/127\.0\.0\.1:1 \(.*\): is it running with this config\?\n$/);
  });
});
