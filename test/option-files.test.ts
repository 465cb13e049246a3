/**
 * Rule options from plain-text files (`rules.settings.<name>.optionFiles`): the access map
 * kept as a list an admin edits, one entry per line, reloaded when the file changes.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { eventually, RawSmtp, startTestHost, tempDir } from './helpers.js';

async function greeting(port: number, ip: string): Promise<string> {
  const { c, greeting } = await RawSmtp.open(port, ip);
  c.end();
  return greeting;
}

it('the access map from a file: comments and blank lines skipped, and an edit takes effect without a restart', async () => {
  const dir = tempDir();
  const file = join(dir, 'access');
  writeFileSync(file, '# our access map\n\nConnect:127.0.0.71 REJECT Go away\n');
  const h = await startTestHost({ builtin: true, watch: true, config: { rules: { settings: { access: { enabled: true, optionFiles: { entries: file } } } } } });
  try {
    assert.equal(await greeting(h.port, '127.0.0.71'), '554 5.7.1 Go away');
    assert.match(await greeting(h.port, '127.0.0.72'), /^220 /);
    writeFileSync(file, '# our access map\nConnect:127.0.0.71 REJECT Go away\nConnect:127.0.0.72 REJECT You too\n');
    await eventually('the edited map is in force', async () => (await greeting(h.port, '127.0.0.72')) === '554 5.7.1 You too');
  } finally {
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

it('an option file that cannot be read, or an option given twice, stops the start with its config path', async () => {
  const missing = startTestHost({ builtin: true, config: { rules: { settings: { access: { enabled: true, optionFiles: { entries: '/nonexistent/access' } } } } } });
  await assert.rejects(missing, /\/rules\/settings\/access\/optionFiles\/entries: cannot read \/nonexistent\/access: ENOENT/);
  const twice = startTestHost({ builtin: true, config: { rules: { settings: { access: { enabled: true, options: { entries: [] }, optionFiles: { entries: '/nonexistent/access' } } } } } });
  await assert.rejects(twice, /\/rules\/settings\/access\/optionFiles\/entries: options\.entries is given in the config too; say it in one place/);
});

it('a line of an option file that its rule refuses stops the start, naming the file and the line', async () => {
  const dir = tempDir();
  const file = join(dir, 'access');
  writeFileSync(file, '# our access map\nConnect:192.0.2.1 REJECT\n\nConnect:192.0.2.2 MAYBE\n');
  try {
    const start = startTestHost({ builtin: true, config: { rules: { settings: { access: { enabled: true, optionFiles: { entries: file } } } } } });
    await assert.rejects(start, new RegExp(`/rules/settings/access/optionFiles/entries: ${file} line 4: "Connect:192\\.0\\.2\\.2 MAYBE": must match pattern`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
