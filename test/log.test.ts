/**
 * Where the host's log goes (issue 16): a file logrotate can rotate (reopened on SIGUSR1),
 * pretty lines for a person at a terminal, and a config that asks for both refused.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../host/config/config.js';
import { eventually, mailer, spawnHost, tempDir } from './helpers.js';

const ROOT = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

/** The JSON records of a log file (none while it does not exist yet). */
const records = (file: string): Record<string, unknown>[] =>
  existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) : [];

async function stop(child: ChildProcess): Promise<void> {
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill('SIGTERM');
  await exited;
}

describe('log destination', () => {
  it('log.file: JSON lines in the file; after logrotate moves it, SIGUSR1 makes the host write a new one', async () => {
    const dir = tempDir();
    const file = join(dir, 'log', 'portcullis.log');
    const cfg = join(dir, 'config.json');
    writeFileSync(cfg, JSON.stringify({ listen: ['127.0.0.1:0'], dataDir: './data', rules: { builtin: false }, log: { file: './log/portcullis.log' } }));
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), 'start', '--config', cfg], { stdio: 'ignore' });
    try {
      await eventually('the host listening (in its log file)', () => records(file).some((r) => String(r.msg).startsWith('Portcullis listening on')), 20_000);
      const port = Number(/:(\d+)$/.exec(String(records(file).find((r) => String(r.msg).startsWith('Portcullis listening on'))!.msg))![1]);
      await mailer(port).sendMail({ envelope: { from: 'a@example.org', to: ['user@localhost'] }, raw: 'Subject: one\r\n\r\n1\r\n' });
      await eventually('the first transaction line', () => records(file).some((r) => r.tx === 'accepted'));
      renameSync(file, `${file}.1`); // what logrotate does before its postrotate
      child.kill('SIGUSR1');
      await eventually('a new log file', () => existsSync(file));
      await mailer(port).sendMail({ envelope: { from: 'b@example.org', to: ['user@localhost'] }, raw: 'Subject: two\r\n\r\n2\r\n' });
      await eventually('the second transaction line in the new file', () => records(file).some((r) => r.tx === 'accepted' && r.from === 'b@example.org'));
      assert.deepEqual(records(`${file}.1`).filter((r) => r.tx).map((r) => r.from), ['a@example.org']);
    } finally {
      await stop(child);
    }
  });

  it('--log-format pretty: one readable line per record, level and message, no JSON', async () => {
    const dir = tempDir();
    const { child, port } = await spawnHost(['--listen', '127.0.0.1:0', '--data-dir', join(dir, 'data'), '--log-format', 'pretty']);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await mailer(port).sendMail({ envelope: { from: 'a@example.org', to: ['user@localhost'] }, raw: 'Subject: hi\r\n\r\nhi\r\n' });
      await eventually('the transaction line on stdout', () => out.includes('tx accepted: from=<a@example.org>'));
      const line = out.split('\n').find((l) => l.includes('tx accepted'))!;
      assert.match(line, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: tx accepted: from=<a@example\.org> to=<user@localhost> size=\d+ client=/);
    } finally {
      await stop(child);
    }
  });

  it('a log file in pretty format is refused: a file is for tools', () => {
    const dir = tempDir();
    const cfg = join(dir, 'config.json');
    writeFileSync(cfg, JSON.stringify({ log: { format: 'pretty', file: '/var/log/portcullis.log' } }));
    assert.throws(() => loadConfig(cfg), (e: Error & { problems?: string[] }) => {
      assert.deepEqual(e.problems, ['/log/format: "pretty" is for a terminal; a log file is written as JSON lines (read it with: npx pino-pretty < FILE)']);
      return true;
    });
  });
});
