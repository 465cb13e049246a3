/**
 * The external checker over SMTP: real shell scripts as checkers, one per exit code,
 * one that prints headers, one that hangs (with a child of its own), one that is missing.
 */
import assert from 'node:assert/strict';
import { chmodSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { eventually, mailer, spooled, withHost, tempDir } from './helpers.js';

const dir = tempDir('portcullis-checker-');
after(() => rmSync(dir, { recursive: true, force: true }));

/** Writes an executable /bin/sh script; `$1` is the message file, then IP, sender, recipients. */
function script(name: string, body: string): string {
  const f = join(dir, name);
  writeFileSync(f, `#!/bin/sh\n${body}\n`);
  chmodSync(f, 0o755);
  return f;
}

async function send(port: number, subject: string): Promise<string> {
  try {
    return (await mailer(port).sendMail({ from: 'sender@example.org', to: ['user@localhost', 'other@localhost'], subject, text: 'hello\n' })).response;
  } catch (e) {
    return (e as { response?: string }).response ?? (e as Error).message;
  }
}

const checker = (command: string[], timeoutMs = 5000) => ({ config: { checker: { command, timeoutMs } } });

describe('external checker', () => {
  it('exit 0 accepts: the checker gets the message file, client IP, sender and recipients; its header lines are added', async () => {
    const seen = join(dir, 'seen');
    const ok = script('ok.sh', `cp "$1" "${seen}.eml"; shift; echo "$@" > "${seen}.args"\necho "X-Checked: clean by ok.sh"\necho "not a header line"\necho "X-Score: 0.1"`);
    await withHost(checker([ok]), async (h) => {
      assert.match(await send(h.port, 'checked'), /^250 2\.0\.0 Ok: queued as /);
      assert.equal(readFileSync(`${seen}.args`, 'utf8').trim(), '127.0.0.1 sender@example.org user@localhost other@localhost');
      assert.match(readFileSync(`${seen}.eml`, 'utf8'), /Subject: checked\r\n[\s\S]*\r\n\r\nhello\r\n$/);
      const [m] = spooled(h.dataDir);
      const head = m!.eml.toString().split('\r\n\r\n')[0]!;
      assert.match(head, /\r\nX-Checked: clean by ok\.sh\r\nX-Score: 0\.1\r\n/);
      assert.doesNotMatch(head, /not a header line/);
      assert.equal(await h.host.metrics.get('checker_results_total', { result: 'accept' }), 1);
    });
  });

  it('exit 1 rejects with 552 5.7.1 and nothing is spooled', async () => {
    await withHost(checker([script('reject.sh', 'exit 1')]), async (h) => {
      assert.equal(await send(h.port, 'spam'), '552 5.7.1 Message rejected by content filter');
      assert.equal(spooled(h.dataDir).length, 0);
    });
  });

  it('any other exit tempfails with 451 4.7.1; the checker\'s stderr is logged', async () => {
    await withHost(checker([script('broken.sh', 'echo "database unavailable" >&2; exit 3')]), async (h) => {
      assert.match(await send(h.port, 'broken'), /^451 4\.7\.1 Message could not be checked, please try again later \(session \w+\)$/);
      assert.equal(spooled(h.dataDir).length, 0);
      assert.ok(h.logs.some((l) => /external checker tempfail: exit 3/.test(String(l.msg))));
      assert.ok(h.logs.some((l) => /stderr: database unavailable/.test(String(l.msg))));
    });
  });

  it('a hanging checker is killed with everything it started at the timeout; the client gets 451 and the host keeps serving', async () => {
    const pids = join(dir, 'pids');
    const hang = script('hang.sh', `sleep 60 & echo $! > "${pids}"\nwait`);
    await withHost(checker([hang], 300), async (h) => {
      assert.match(await send(h.port, 'hang'), /^451 4\.7\.1 /);
      const child = Number(readFileSync(pids, 'utf8'));
      await eventually('the checker\'s child is killed too', () => {
        try {
          process.kill(child, 0);
          return false;
        } catch {
          return true;
        }
      });
      assert.ok(h.logs.some((l) => /timed out after 300 ms \(killed\)/.test(String(l.msg))));
      assert.match(await send(h.port, 'again'), /^451 4\.7\.1 /); // still answering
      assert.equal(spooled(h.dataDir).length, 0);
    });
  });

  it('a checker that cannot be started tempfails; the message file is never left behind', async () => {
    await withHost(checker([join(dir, 'no-such-checker')]), async (h) => {
      assert.match(await send(h.port, 'missing'), /^451 4\.7\.1 /);
      assert.ok(h.logs.some((l) => /could not start .*no-such-checker: spawn .* ENOENT/.test(String(l.msg))));
      assert.deepEqual(readdirSync(join(h.dataDir, 'checker')), []);
    });
  });
});
