/**
 * What an admin sees from the `portcullis` binary when something is off: help for every
 * command, a config found from another directory, a store command pointed at the wrong
 * place, a second host on one data directory, AUTH in `try` against the real host, an
 * external checker that is not there, a config that is not JSON.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import getTLSOptions from 'smtp-server/lib/tls-options.js';
import { usageOf } from '../host/cli/main.js';
import { hashPassword } from '../host/password.js';
import { ROOT } from '../host/paths.js';
import { cli, eventually, RawSmtp, scratchDirs, withHost } from './helpers.js';

const scratch = scratchDirs();

describe('portcullis <command> --help', () => {
  it('prints that command\'s usage and exits 0, for every command main.ts dispatches', () => {
    // The commands as main.ts dispatches them: a new command without usage text fails here.
    const commands = [...readFileSync(join(ROOT, 'host', 'cli', 'main.ts'), 'utf8').matchAll(/case '([a-z][a-z-]*)':/g)].map((m) => m[1]!).filter((c) => c !== 'help');
    assert.ok(commands.length >= 10, `found the commands: ${commands.join(', ')}`);
    const dir = scratch();
    for (const cmd of commands) {
      const r = cli(dir, [cmd, '--help']);
      assert.deepEqual([r.status, r.stderr], [0, ''], `${cmd} --help`);
      assert.ok(r.stdout.startsWith(`usage:\n  portcullis ${cmd} `), `${cmd} --help prints its own usage:\n${r.stdout}`);
      assert.equal(r.stdout, usageOf(cmd));
    }
  });

  it('-h and `portcullis help COMMAND` print the same, with the options the command takes', () => {
    const dir = scratch();
    const expected = [
      'usage:',
      '  portcullis blacklist [--config FILE] [--data-dir DIR] list | add IP [--ttl SECONDS] [--reason TEXT] | remove IP | reset',
      '      the internal blacklist (reset also makes the host re-read its config)',
      '',
      'options:',
      '  --config FILE        JSON config (see schemas/config.schema.json)',
      '  --data-dir DIR       spool and state under DIR',
      '',
    ].join('\n');
    for (const args of [['blacklist', '-h'], ['blacklist', 'add', '192.0.2.1', '--help'], ['help', 'blacklist']]) {
      const r = cli(dir, args);
      assert.deepEqual([r.status, r.stdout, r.stderr], [0, expected, ''], args.join(' '));
    }
    // After `--`, -h is an argument (here the transcript file try reads), not a request for help.
    assert.equal(cli(dir, ['try', '--', '-h']).stderr, "portcullis: ENOENT: no such file or directory, open '-h'\n");
  });

  it('a wrong subcommand says what is wrong, then that command\'s usage, and exits 64', () => {
    const r = cli(scratch(), ['mailbox', 'purge']);
    assert.equal(r.status, 64);
    assert.equal(r.stderr, `portcullis mailbox: "purge" is not list, add or remove\n${usageOf('mailbox')}`);
  });
});

describe('store commands and the data directory', () => {
  it('refuse to create a database where none is, naming the path looked for', () => {
    const dir = scratch();
    const r = cli(dir, ['blacklist', 'add', '192.0.2.7', '--data-dir', 'nowhere']);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `portcullis blacklist: no database at ${join(dir, 'nowhere', 'portcullis.db')} (\`portcullis start\` creates it there); is --config or --data-dir the one the host runs with?\n`);
    assert.equal(existsSync(join(dir, 'nowhere')), false, 'nothing created');
    // A relative dataDir in a config file is the file's directory's, not the working directory's.
    mkdirSync(join(dir, 'other', 'site'), { recursive: true });
    writeFileSync(join(dir, 'other', 'site', 'config.json'), JSON.stringify({ dataDir: 'state' }));
    const m = cli(dir, ['mailbox', 'list', '--config', 'other/site/config.json']);
    assert.equal(m.status, 1);
    assert.equal(m.stderr, `portcullis mailbox: no database at ${join(dir, 'other', 'site', 'state', 'portcullis.db')} (\`portcullis start\` creates it there); is --config or --data-dir the one the host runs with?\n`);
    assert.equal(existsSync(join(dir, 'data')), false, 'no ./data');
  });

  it('one host per data directory: a second start is refused naming the pid; a dead host\'s is taken over with a warning', async () => {
    const work = scratch();
    const elsewhere = scratch();
    const site = join(work, 'site');
    mkdirSync(site);
    // dataDir relative to the config file: the same directory from any working directory.
    writeFileSync(join(site, 'config.json'), JSON.stringify({ listen: ['127.0.0.1:0'], admin: { listen: '127.0.0.1:0' }, dataDir: 'data', reverseDns: false, watch: false, rules: { builtin: false } }));
    const dataDir = join(site, 'data');
    const first = await startCli(work, ['start', '--config', 'site/config.json']);
    try {
      const second = cli(elsewhere, ['start', '--config', join(site, 'config.json')]);
      assert.equal(second.status, 1);
      assert.equal(second.stderr, `portcullis: the data dir ${dataDir} is in use by another Portcullis host (pid ${first.child.pid}): stop it first, or give this one its own dataDir\n`);
      // The store commands find the same database from anywhere, and reach the host.
      const add = cli(elsewhere, ['blacklist', 'add', '192.0.2.7', '--config', join(site, 'config.json')]);
      assert.equal(add.stdout, 'blacklisted 192.0.2.7 (the running host applied it)\n');
      assert.match(cli(work, ['blacklist', 'list', '--data-dir', 'site/data']).stdout, /^192\.0\.2\.7\tadmin\t60 min left\tadded by the administrator\n$/);
      assert.equal(existsSync(join(work, 'data')) || existsSync(join(elsewhere, 'data')), false, 'no ./data anywhere');
    } finally {
      await first.kill('SIGKILL');
    }
    const again = await startCli(work, ['start', '--config', 'site/config.json']);
    try {
      const warning = JSON.parse(again.out().split('\n').find((l) => l.includes('took over')) ?? '{}') as { level?: number; msg?: string };
      assert.deepEqual(warning, { ...warning, level: 40, msg: `took over the data dir: the process that held it is gone (removed its stale ${dataDir}/control.sock)` });
    } finally {
      await again.kill('SIGTERM');
    }
    assert.equal(existsSync(join(dataDir, 'control.sock')), false, 'a stopped host lets go of the data dir');
  });
});

/** `portcullis …` running until killed; resolves once it listens. */
async function startCli(cwd: string, args: string[]) {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((r) => child.once('exit', r));
  await eventually('the host listens', () => out.includes('Portcullis listening on'), 20_000);
  return {
    child,
    out: () => out,
    kill: async (sig: NodeJS.Signals) => {
      child.kill(sig);
      await exited;
    },
  };
}

describe('portcullis try and AUTH', () => {
  /** The reply to one AUTH line: from a real host on the wire, and from `try` with the same config. */
  async function bothAnswers(config: Record<string, unknown>, auth: string): Promise<{ host: string; tried: string }> {
    let answers = { host: '', tried: '' };
    await withHost({ config }, async (h) => {
      const { c } = await RawSmtp.open(h.port);
      await c.cmd('EHLO client.example');
      const host = await c.cmd(auth);
      const r = cli(h.dir, ['try', '--config', h.configFile], `EHLO client.example\n${auth}\nQUIT\n`);
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.split('\n');
      answers = { host, tried: (lines[lines.indexOf(`>>> ${auth}`) + 1] ?? '').replace(/^<<< /, '') };
      await c.cmd('QUIT');
      await c.waitClosed();
    });
    return answers;
  }
  const plain = (user: string, pass: string) => `AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`;

  it('AUTH off in the config: the same refusal as the host', async () => {
    assert.deepEqual(await bothAnswers({}, plain('alice', 'pw')), { host: '500 5.5.2 Error: command not recognized', tried: '500 5.5.2 Error: command not recognized' });
  });

  it('a certificate and no STARTTLS yet: the same refusal as the host', async () => {
    const dir = scratch();
    const hash = await hashPassword('pw');
    const { key, cert } = getTLSOptions();
    writeFileSync(join(dir, 'key.pem'), String(key));
    writeFileSync(join(dir, 'cert.pem'), String(cert));
    const config = { auth: { users: { alice: hash } }, tls: { key: join(dir, 'key.pem'), cert: join(dir, 'cert.pem') } };
    assert.deepEqual(await bothAnswers(config, plain('alice', 'pw')), { host: '538 5.7.0 Error: Must issue a STARTTLS command first', tried: '538 5.7.0 Error: Must issue a STARTTLS command first' });
  });

  it('AUTH on: a wrong password is refused and the right one accepted, as on the host', async () => {
    const config = { auth: { users: { alice: await hashPassword('pw') } } };
    assert.deepEqual(await bothAnswers(config, plain('alice', 'wrong')), { host: '535 5.7.8 Authentication credentials invalid', tried: '535 5.7.8 Authentication credentials invalid' });
    assert.deepEqual(await bothAnswers(config, plain('alice', 'pw')), { host: '235 2.7.0 Authentication successful', tried: '235 2.7.0 Authentication successful' });
  });
});

describe('portcullis check and the external checker', () => {
  it('reports a checker program that is not there or cannot run, with its path, and exits 1', () => {
    const dir = scratch();
    mkdirSync(join(dir, 'site', 'bin'), { recursive: true });
    const config = (command: string[]) => writeFileSync(join(dir, 'site', 'config.json'), JSON.stringify({ checker: { command }, rules: { builtin: false } }));
    const check = () => cli(dir, ['check', '--config', 'site/config.json']);
    const filter = join(dir, 'site', 'bin', 'filter.sh');
    config(['bin/filter.sh', '--strict']); // relative to the config file
    let r = check();
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `error: config site/config.json: /checker/command/0: ${filter} does not exist\n`);
    writeFileSync(filter, '#!/bin/sh\nexit 0\n');
    chmodSync(filter, 0o644);
    r = check();
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `error: config site/config.json: /checker/command/0: ${filter} is not executable (chmod +x?)\n`);
    chmodSync(filter, 0o755);
    r = check();
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^ok: config site\/config\.json\n/);
    config(['no-such-filter-program']);
    r = check();
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `error: config site/config.json: /checker/command/0: "no-such-filter-program" was not found in PATH (${process.env.PATH}); give its full path\n`);
  });
});

describe('a config that is not JSON', () => {
  it('is reported once, as a sentence at file:line:col, by check and by start', () => {
    const dir = scratch();
    writeFileSync(join(dir, 'mx.json'), '{\n  "hostname": "mx.example.org"\n  "localDomains": ["example.org"]\n}\n');
    const c = cli(dir, ['check', '--config', 'mx.json']);
    assert.deepEqual([c.status, c.stdout, c.stderr], [1, '', 'error: config mx.json:3:3: not valid JSON: a comma is missing before "localDomains"\n']);
    const s = cli(dir, ['start', '--config', 'mx.json']);
    assert.deepEqual([s.status, s.stdout, s.stderr], [78, '', 'portcullis: invalid config mx.json:3:3: not valid JSON: a comma is missing before "localDomains"\n']);
  });
});
