/**
 * The access map over real SMTP (the built-in rule turned on with entries in the config,
 * or lines added to the running host's store with `portcullis access`), and the
 * `portcullis access` command over a real SQLite file.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { usageOf } from '../host/cli/main.js';
import { SqliteBackend } from '../host/store/sqlite.js';
import { MemoryStore } from '../host/store/store.js';
import { cli, eventually, RawSmtp, scratchDirs, withHost } from './helpers.js';

const scratch = scratchDirs();

async function greeting(port: number, ip: string): Promise<string> {
  const { c, greeting } = await RawSmtp.open(port, ip);
  c.end();
  return greeting;
}

it('access: a refused client hears 554 at the greeting; a closed mailbox 550 at RCPT; others pass', async () => {
  const entries = ['Connect:127.0.0.51 REJECT Go away', 'To:closed@localhost REJECT This mailbox is closed'];
  await withHost({ builtin: true, config: { rules: { settings: { access: { enabled: true, options: { entries } } } } } }, async (h) => {
    const refused = await RawSmtp.open(h.port, '127.0.0.51');
    assert.equal(refused.greeting, '554 5.7.1 Go away');
    refused.c.end();
    const { c, greeting } = await RawSmtp.open(h.port, '127.0.0.52');
    assert.match(greeting, /^220 /);
    await c.cmd('EHLO mx.example.net');
    await c.cmd('MAIL FROM:<a@example.net>');
    assert.equal(await c.cmd('RCPT TO:<closed@localhost>'), '550 5.7.1 This mailbox is closed');
    assert.equal(await c.cmd('RCPT TO:<open@localhost>'), '250 2.1.5 Accepted');
    c.end();
  });
});

it('delayChecks: the refused client is greeted, and its refusal comes at RCPT, except for a whitelisted recipient', async () => {
  const entries = ['Connect:127.0.0.53 REJECT Go away', 'To:postmaster@localhost OK'];
  await withHost({ builtin: true, config: { delayChecks: true, rules: { settings: { access: { enabled: true, options: { entries } } } } } }, async (h) => {
    const { c, greeting } = await RawSmtp.open(h.port, '127.0.0.53');
    assert.match(greeting, /^220 /);
    assert.match(await c.cmd('EHLO mx.example.net'), /^250/);
    assert.equal(await c.cmd('MAIL FROM:<a@example.net>'), '250 2.1.0 Accepted');
    assert.equal(await c.cmd('RCPT TO:<user@localhost>'), '554 5.7.1 Go away');
    assert.equal(await c.cmd('RCPT TO:<postmaster@localhost>'), '250 2.1.5 Accepted');
    c.end();
    assert.ok(h.logs.some((l) => l.msg === 'holding the refusal of connect from 127.0.0.53 until RCPT (delayChecks): 554 5.7.1 Go away'));
  });
});

it('portcullis access add reaches the running host: the next connection from that client hears the line\'s reply, others still get in', async () => {
  await withHost({ builtin: true, config: { rules: { settings: { access: { enabled: true } } } } }, async (h) => {
    // As `portcullis start` does: the CLI finds this process through status.json and sends SIGHUP.
    const onHup = () => void h.host.reload('SIGHUP');
    process.on('SIGHUP', onHup);
    try {
      const line = 'Connect:127.0.0.9 REJECT No thanks';
      const add = cli(h.dir, ['access', 'add', line, '--config', h.configFile]);
      assert.deepEqual([add.status, add.stdout, add.stderr], [0, `added ${line}\ntold the running host (pid ${process.pid}) to re-read it\n`, '']);
      await eventually('the host re-read the store', () => h.host.store.listHas('access', line));
      assert.equal(await greeting(h.port, '127.0.0.9'), '554 5.7.1 No thanks');
      assert.match(await greeting(h.port, '127.0.0.10'), /^220 /);
      const remove = cli(h.dir, ['access', 'remove', line, '--config', h.configFile]);
      assert.equal(remove.stdout, `removed ${line}\ntold the running host (pid ${process.pid}) to re-read it\n`);
      await eventually('the host re-read the store', () => !h.host.store.listHas('access', line));
      assert.match(await greeting(h.port, '127.0.0.9'), /^220 /);
    } finally {
      process.off('SIGHUP', onHup);
    }
  });
});

describe('portcullis access over the store file', () => {
  /** A data dir with a database, as `portcullis start` leaves it, and a config beside it; `run` is `portcullis access ARGS --config …`. */
  async function site(access: Record<string, unknown> = {}) {
    const dir = scratch();
    await (await SqliteBackend.open(join(dir, 'data', 'portcullis.db'))).close();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ dataDir: 'data', rules: { settings: { access: { enabled: true, ...access } } } }));
    return {
      run: (...args: string[]) => cli(dir, ['access', ...args, '--config', 'config.json']),
      /** The store list's values on disk. */
      async stored(list = 'access'): Promise<string[]> {
        const s = await MemoryStore.open(await SqliteBackend.open(join(dir, 'data', 'portcullis.db')));
        const values = s.listValues(list);
        await s.close();
        return values;
      },
    };
  }

  it('add, list and remove lines; the same line again is not added twice; removing one not there says so and exits 1', async () => {
    const { run, stored } = await site({ options: { entries: ['Connect:192.0.2.7 OK'] } });
    assert.deepEqual(run('add', 'Connect:192.0.2.9 REJECT No thanks', 'From:Spammer.Example   DISCARD'), { status: 0, stdout: 'added Connect:192.0.2.9 REJECT No thanks\nadded From:spammer.example DISCARD\n', stderr: '' });
    assert.deepEqual(run('add', ' Connect:192.0.2.9  REJECT No thanks'), { status: 0, stdout: 'already listed: Connect:192.0.2.9 REJECT No thanks\n', stderr: '' });
    // In the rule's order: the config's lines first, then the store's as added.
    assert.deepEqual(run('list'), { status: 0, stdout: 'Connect:192.0.2.7 OK\t(config)\nConnect:192.0.2.9 REJECT No thanks\nFrom:spammer.example DISCARD\n', stderr: '' });
    assert.deepEqual(run('remove', 'From:spammer.example DISCARD'), { status: 0, stdout: 'removed From:spammer.example DISCARD\n', stderr: '' });
    assert.deepEqual(run('remove', 'From:spammer.example DISCARD'), { status: 1, stdout: '', stderr: 'portcullis access remove: "From:spammer.example DISCARD" is not listed\n' });
    assert.deepEqual(await stored(), ['Connect:192.0.2.9 REJECT No thanks']);
  });

  it('a line that is not an access line is refused, saying what is wrong, with the usage (exit 64); nothing is added', async () => {
    const { run, stored } = await site();
    const bad = run('add', 'Connect:192.0.2.10 OK', 'Conect:192.0.2.1 REJECT');
    assert.deepEqual([bad.status, bad.stdout, bad.stderr], [64, '', `portcullis access: "Conect:192.0.2.1 REJECT" is not an access line: "Conect:192.0.2.1" is not a key: a line starts with Connect:, From:, To: and a value\n${usageOf('access')}`]);
    const unquoted = run('add', 'Connect:192.0.2.1', 'REJECT', 'Go', 'away');
    assert.equal(unquoted.status, 64);
    assert.ok(unquoted.stderr.startsWith('portcullis access: "Connect:192.0.2.1" is not an access line: no action after the keys: give one of OK, REJECT, TEMPFAIL, DISCARD, SPF-PASS (each LINE is one argument: quote it, as in \'Connect:192.0.2.1 REJECT Go away\')\n'), unquoted.stderr);
    assert.deepEqual(await stored(), []);
  });

  it('writes the list the config\'s storeList names, and refuses when it is null', async () => {
    const named = await site({ options: { storeList: 'mx1-access' } });
    assert.equal(named.run('add', 'To:closed@localhost REJECT Closed').status, 0);
    assert.deepEqual([await named.stored('mx1-access'), await named.stored()], [['To:closed@localhost REJECT Closed'], []]);
    const none = await site({ options: { storeList: null } });
    assert.deepEqual(none.run('add', 'To:closed@localhost REJECT Closed'), { status: 1, stdout: '', stderr: 'portcullis access: the access rule reads no store list here (rules.settings.access.options.storeList is null in the config)\n' });
  });
});
