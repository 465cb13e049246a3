/**
 * The built-in SmtpEvt rules over real SMTP: each behaviour's reply, header, store row
 * or spool content; the store surviving a restart; the admin's blacklist and mailbox
 * commands against a running host.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sqlite3 from 'sqlite3';
import { ROOT } from '../host/paths.js';
import { eventually, RawSmtp, spooled, startTestHost, tempDir, testPasswordHash, withHost, type TestHost } from './helpers.js';

const DATE = 'Date: Mon, 05 Jan 2026 10:00:00 +0000\r\n';
const BASE = {
  localDomains: ['localhost', 'open.example'],
  mailboxes: ['alice@localhost'],
  auth: { users: { alice: await testPasswordHash('pw') }, allowInsecure: true },
};

async function session(port: number, helo = 'mx.example.org'): Promise<RawSmtp> {
  const { c } = await RawSmtp.open(port);
  await c.cmd(`EHLO ${helo}`);
  return c;
}

async function data(c: RawSmtp, text: string): Promise<string> {
  const r = await c.cmd('DATA');
  if (!r.startsWith('354')) return r;
  return c.cmd(`${text}\r\n.`);
}

/** The greeting a new connection gets (the connection is closed again). */
async function greeting(port: number): Promise<string> {
  const { c, greeting: g } = await RawSmtp.open(port);
  c.end();
  return g;
}

function dbRows<T>(file: string, sql: string): Promise<T[]> {
  return new Promise((ok, fail) => {
    const db = new sqlite3.Database(file, sqlite3.OPEN_READONLY, (e) => {
      if (e) return fail(e);
      db.all(sql, (err, rows) => db.close(() => (err ? fail(err) : ok(rows as T[]))));
    });
  });
}

describe('SmtpEvt rules over SMTP', () => {
  let t: TestHost;
  before(async () => {
    t = await startTestHost({
      builtin: true,
      config: {
        ...BASE,
        // Loopback has no reverse DNS here; and every test connection comes from 127.0.0.1.
        rules: { settings: { 'invalid-recipient': { options: { noPtrIsSign: false } }, 'connect-flood': { options: { watchlistCount: 1000 } } } },
      },
    });
  });
  after(() => t.close());
  const clear = () => t.host.store.blacklistClear();

  it('suspicious-helo: an unqualified HELO is tagged in the spooled message', async () => {
    const c = await session(t.port, 'mailhost');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<alice@localhost>');
    const r = await data(c, `Subject: hi\r\n${DATE}\r\nhello`);
    c.end();
    const id = /queued as (\S+)/.exec(r)?.[1];
    const m = spooled(t.dataDir).find((x) => x.id === id);
    assert.match(m?.eml.toString() ?? '', /\r\nX-HELO: unqualified name mailhost\r\n/);
  });

  it('invalid-recipient: a bounce to a missing local mailbox is refused 550 5.1.1', async () => {
    const c = await session(t.port);
    await c.cmd('MAIL FROM:<>');
    assert.equal(await c.cmd('RCPT TO:<nobody@localhost>'), '550 5.1.1 No such user here: nobody@localhost');
    assert.equal(await c.cmd('RCPT TO:<alice@localhost>'), '250 2.1.5 Accepted');
    c.end();
  });

  it('missing-date-bulk: no Date to an invalid recipient drops; Precedence: bulk is accepted and not spooled', async () => {
    const c = await session(t.port);
    await c.cmd('MAIL FROM:<a@example.org>');
    assert.equal(await c.cmd('RCPT TO:<nobody@localhost>'), '250 2.1.5 Accepted');
    assert.equal(await data(c, 'Subject: no date\r\n\r\nx'), '421 4.7.0 Message refused: no Date header');
    assert.equal(await c.waitClosed(), true);
    const before = spooled(t.dataDir).length;
    const d = await session(t.port);
    await d.cmd('MAIL FROM:<news@example.org>');
    await d.cmd('RCPT TO:<nobody@localhost>');
    assert.match(await data(d, `Subject: offers\r\n${DATE}Precedence: bulk\r\n\r\nx`), /^250 2\.0\.0 Ok: queued as /);
    d.end();
    assert.equal(spooled(t.dataDir).length, before);
  });

  it('bad-local-sender: drops, and the attempt is counted in the store', async () => {
    const c = await session(t.port);
    assert.equal(await c.cmd('MAIL FROM:<nobody@localhost>'), '421 4.7.0 Sender address rejected: no such local mailbox');
    await t.host.store.flush();
    const rows = await dbRows<{ n: number }>(join(t.dataDir, 'portcullis.db'), "SELECT count(*) AS n FROM watch_hits WHERE key = 'bad-local-sender:127.0.0.1'");
    assert.equal(rows[0]!.n >= 1, true);
    clear();
  });

  it('identical-sender-rcpt: X-Identical and X-Blocked in the spooled message', async () => {
    const c = await session(t.port);
    await c.cmd('MAIL FROM:<self@open.example>');
    await c.cmd('RCPT TO:<self@open.example>');
    const id = /queued as (\S+)/.exec(await data(c, `Subject: note to self\r\n${DATE}\r\nx`))?.[1];
    c.end();
    const text = spooled(t.dataDir).find((x) => x.id === id)?.eml.toString() ?? '';
    assert.match(text, /\r\nX-Identical: From and Rcpt identical\r\n/);
    assert.match(text, /\r\nX-Blocked: identical-sender-rcpt\r\n/);
  });

  it('mass-mailing: a local user\'s 6 MB message to 11 recipients is refused at DATA', async () => {
    const c = await session(t.port);
    assert.equal(await c.cmd(`AUTH PLAIN ${Buffer.from('\0alice\0pw').toString('base64')}`), '235 2.7.0 Authentication successful');
    await c.cmd('MAIL FROM:<alice@localhost> SIZE=6000000');
    for (let i = 0; i < 11; i++) await c.cmd(`RCPT TO:<r${i}@example.com>`);
    assert.equal(await c.cmd('DATA'), '552 5.3.4 Too large a message for 11 recipients; send it to fewer at a time');
    c.end();
  });

  it('subject-spam: a spam subject to an invalid recipient drops and blacklists', async () => {
    const c = await session(t.port);
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<nobody@localhost>');
    assert.equal(await data(c, `Subject: You have WON the lottery\r\n${DATE}\r\nx`), '421 4.7.0 Message refused');
    assert.equal(t.host.store.blacklistGet('127.0.0.1')?.rule, 'subject-spam');
    const { greeting } = await RawSmtp.open(t.port);
    assert.equal(greeting, '554 5.7.1 Access denied: spam subject to an invalid recipient');
    clear();
  });
});

describe('watchlists over SMTP', () => {
  it('auth-brute-force: the sixth failed AUTH drops and blacklists the client', async () => {
    await withHost({ builtin: true, config: BASE }, async (h) => {
      const c = await session(h.port);
      const bad = `AUTH PLAIN ${Buffer.from('\0alice\0wrong').toString('base64')}`;
      for (let i = 0; i < 5; i++) assert.equal(await c.cmd(bad), '535 5.7.8 Authentication credentials invalid');
      assert.equal(await c.cmd(bad), '421 4.7.0 Too many failed authentication attempts');
      const { greeting } = await RawSmtp.open(h.port);
      assert.equal(greeting, '554 5.7.1 Access denied: AUTH brute force');
    });
  });

  it('connect-flood: connections without mail blacklist the client', async () => {
    await withHost({ builtin: true, config: { ...BASE, rules: { settings: { 'connect-flood': { options: { watchlistCount: 3 } } } } } }, async (h) => {
      for (let i = 0; i < 3; i++) {
        const { c } = await RawSmtp.open(h.port);
        assert.equal(await c.cmd('QUIT'), '221 2.0.0 Bye');
        await c.waitClosed();
      }
      await eventually('blacklisted', () => h.host.store.blacklistGet('127.0.0.1') !== undefined);
      const { greeting } = await RawSmtp.open(h.port);
      assert.equal(greeting, '554 5.7.1 Access denied: connect flood');
    });
  });
});

describe('the store', () => {
  it('a blacklisted client is still refused after a restart; expired entries are gone', async () => {
    const dataDir = join(tempDir(), 'data');
    const h1 = await startTestHost({ builtin: true, config: { ...BASE, dataDir } });
    h1.host.store.blacklistAdd('127.0.0.1', 3600, 'kept across restarts', 'admin');
    h1.host.store.blacklistAdd('192.0.2.50', 5, 'long expired', 'admin', Date.now() - 60_000);
    await h1.host.close();
    const h2 = await startTestHost({ builtin: true, config: { ...BASE, dataDir } });
    try {
      const { greeting } = await RawSmtp.open(h2.port);
      assert.equal(greeting, '554 5.7.1 Access denied: kept across restarts');
      assert.deepEqual(h2.host.store.blacklistList().map((e) => e.ip), ['127.0.0.1']);
    } finally {
      await h2.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('a corrupt database stops the start with a clear error', () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'data'));
    writeFileSync(join(dir, 'data', 'portcullis.db'), 'this is not a database '.repeat(100));
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), 'start', '--listen', '127.0.0.1:0', '--admin', 'off', '--data-dir', join(dir, 'data')], { encoding: 'utf8', timeout: 30_000 });
    rmSync(dir, { recursive: true, force: true });
    assert.equal(r.status, 71);
    assert.match(r.stderr, /^portcullis: cannot use the store .*portcullis\.db: the file is not a valid SQLite database \(corrupt\?\)\n$/);
  });
});

describe('portcullis blacklist, mailbox and stats against a running host', () => {
  it('changes reach the running host; stats shows the rules\' counters', async () => {
    const dir = tempDir();
    const cfg = join(dir, 'config.json');
    // The polling below opens many connections without mail: keep connect-flood out of it.
    writeFileSync(cfg, JSON.stringify({ ...BASE, listen: ['127.0.0.1:0'], admin: { listen: '127.0.0.1:0' }, dataDir: join(dir, 'data'), reverseDns: false, watch: false, rules: { settings: { 'connect-flood': { options: { watchlistCount: 100000 } } } } }));
    const cli = (...args: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), ...args, '--config', cfg], { encoding: 'utf8', timeout: 30_000 });
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), 'start', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const port = await new Promise<number>((ok, fail) => {
        let out = '';
        const timer = setTimeout(() => fail(new Error(out)), 20_000);
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            ok(Number(m[1]));
          }
        });
      });
      // A mailbox added on the command line makes the rules know bob.
      assert.match(cli('mailbox', 'add', 'bob@localhost').stdout, /^added bob@localhost\ntold the running host \(pid \d+\) to re-read it\n$/);
      assert.equal(cli('mailbox', 'list').stdout, 'alice@localhost (config)\nbob@localhost\n');
      await eventually('host re-read the mailboxes', async () => {
        const c = await session(port);
        await c.cmd('MAIL FROM:<>');
        const r = await c.cmd('RCPT TO:<bob@localhost>');
        c.end();
        return r === '250 2.1.5 Accepted';
      });
      // The blacklist: add, list, and the running host refuses us.
      assert.equal(cli('blacklist', 'add', '127.0.0.1', '--ttl', '600', '--reason', 'testing').status, 0);
      assert.match(cli('blacklist', 'list').stdout, /^127\.0\.0\.1\tadmin\t10 min left\ttesting\n$/);
      await eventually('host refuses', async () => (await greeting(port)) === '554 5.7.1 Access denied: testing');
      assert.equal(cli('blacklist', 'reset').status, 0);
      await eventually('host forgot', async () => (await greeting(port)) === '220 localhost ESMTP Portcullis');
      // Counters reach `portcullis stats` through status.json (written every 10 s, and on reload).
      cli('blacklist', 'reset');
      await eventually('stats', () => /rule_verdicts_total\{rule="blacklist",phase="connect",action="reject",mode="enforce"\} [1-9]/.test(cli('stats').stdout), 15_000);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
