/**
 * README's "Change a rule safely" walkthrough, run as written: its config, its commands
 * (the host started from its start line, on a free port), its fixtures test. The only
 * liberties: `--listen 127.0.0.1:0 --admin off` on the start line (test files run in
 * parallel), the mail that arrives is sent by nodemailer, the edit of step 2 is made by
 * the test, and each `ID` is the session the step is about.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import type { RecordedSession } from '../sdk/index.js';
import { ROOT } from '../host/paths.js';
import { cli, eventually, tempDir } from './helpers.js';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const section = readme.slice(readme.indexOf('\n## Change a rule safely\n'), readme.indexOf('\n## Configuration\n'));
const block = (lang: string): string => [...section.matchAll(/```(\w+)\n([\s\S]*?)```/g)].find((m) => m[1] === lang)![2]!;
/** The walkthrough's commands, each as the arguments of `portcullis`. */
const commands = block('sh').split('\n').filter((l) => l.startsWith('npx portcullis ')).map((l) => l.replace(/#.*$/, '').trim().split(/\s+/).slice(2));

async function send(port: number, to: string): Promise<void> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 10000 });
  try {
    await t.sendMail({ from: 'someone@example.net', to, subject: 'hello', text: 'hello\n' }).catch(() => undefined);
  } finally {
    t.close();
  }
}

describe('README: Change a rule safely', () => {
  const dir = tempDir();
  let host: ChildProcess | undefined;
  after(async () => {
    if (host && host.exitCode === null) {
      const exited = new Promise((ok) => host!.once('exit', ok));
      host.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('records, replays the edit, shows a session, saves fixtures that pass, and ships', async () => {
    assert.deepEqual(commands.map((c) => c[0]), ['start', 'replay', 'replay', 'replay', 'test', 'reload']);
    assert.equal(cli(dir, ['new-rule', 'no-blockme', '--dir', 'myrules']).status, 0);
    writeFileSync(join(dir, 'portcullis.json'), block('json'));
    writeFileSync(join(dir, 'myrules', 'recorded.test.ts'), block('ts'));

    // 1. record
    host = spawn(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), ...commands[0]!, '--listen', '127.0.0.1:0', '--admin', 'off'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    host.stdout!.on('data', (d: Buffer) => void (log += d.toString()));
    host.stderr!.on('data', (d: Buffer) => void (log += d.toString()));
    await eventually(`the host listens (${log})`, () => /listening on 127\.0\.0\.1:\d+/.test(log), 20_000);
    const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(log)![1]);
    for (const to of ['user@localhost', 'info@localhost', 'blockme@localhost']) await send(port, to);
    const records = () => {
      const d = join(dir, 'data', 'record');
      if (!existsSync(d)) return [];
      return readdirSync(d).flatMap((f) => readFileSync(join(d, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as RecordedSession));
    };
    await eventually('three sessions recorded', () => records().length === 3);
    const id = Object.fromEntries(records().map((r) => [(r.steps.find((s) => s.cmd === 'rcpt') as { address: string }).address, r.id]));

    // 2. edit
    const rule = join(dir, 'myrules', 'no-blockme.ts');
    writeFileSync(rule, readFileSync(rule, 'utf8').replace("default: ['blockme@localhost']", "default: ['blockme@localhost', 'info@localhost']"));

    // 3. replay
    const replay = cli(dir, commands[1]!);
    assert.equal(replay.status, 0, replay.stderr);
    assert.match(replay.stdout, /^replayed 3 sessions recorded /);
    assert.ok(replay.stdout.includes(`\n1 session would change:\n  rule no-blockme now refuses: 1 session, 1 recipient (e.g. ${id['info@localhost']})\nchanged sessions:\n`), replay.stdout);
    assert.ok(replay.stdout.includes('\n    RCPT TO:<info@localhost>: ok → 550 5.1.1 Mailbox unavailable (rule no-blockme)\n'), replay.stdout);

    // 4. one session side by side
    const show = cli(dir, commands[2]!.map((a) => (a === 'ID' ? id['info@localhost']! : a)));
    assert.equal(show.status, 0, show.stderr);
    assert.match(show.stdout, /\nRCPT TO:<info@localhost> +ok +550 5\.1\.1 Mailbox unavailable \(rule no-blockme\) +<- changed\n/);

    // 5. fixtures: the customer's mail stays accepted, blockme@ stays refused
    const pinned = [id['user@localhost']!, id['blockme@localhost']!];
    const save = cli(dir, commands[3]!.map((a) => (a === 'ID' ? pinned.shift()! : a)));
    assert.equal(save.status, 0, save.stderr);
    assert.deepEqual(readdirSync(join(dir, 'myrules', 'fixtures')).sort(), [`${id['blockme@localhost']}.json`, `${id['user@localhost']}.json`].sort());
    const test = cli(dir, commands[4]!);
    assert.equal(test.status, 0, test.stdout + test.stderr);
    assert.match(test.stdout, /\n# pass 3\n# fail 0\n/);

    // 6. ship
    const reload = cli(dir, commands[5]!);
    assert.equal(reload.status, 0, reload.stdout + reload.stderr);
  });
});
