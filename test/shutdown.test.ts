/**
 * Graceful stop (RFC 5321 §3.8), against `portcullis start` as a child process and
 * SIGTERM as systemd sends it: clients waiting between commands get the 421 at once
 * (not after a grace period), a client in the middle of DATA finishes and gets its 250,
 * and every message that got a 250 is in the spool when the process has exited.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { envelopeOn, RawSmtp, spawnHost, spooled, tempDir } from './helpers.js';

const BYE = '421 4.3.2 mx.shutdown.test Service shutting down';

it('SIGTERM: idle clients get 421 at once, a message in the middle of DATA is finished and spooled, the process exits', { timeout: 30_000 }, async (t) => {
  const dir = tempDir();
  const cfg = join(dir, 'config.json');
  writeFileSync(cfg, JSON.stringify({
    listen: ['127.0.0.1:0'], admin: { listen: '127.0.0.1:0' }, hostname: 'mx.shutdown.test', dataDir: join(dir, 'data'), reverseDns: false, watch: false,
    rules: { builtin: false }, delivery: { queue: { hold: true } },
    // Far longer than this test may take: only clients with a reply owed may be waited for.
    limits: { shutdownGraceMs: 120_000 },
  }));
  let host: Awaited<ReturnType<typeof spawnHost>>;
  try {
    host = await spawnHost(['--config', cfg]);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const { child, port } = host;
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  try {
    // Before the stop: one message accepted, its client still connected and idle.
    const { c: done } = await RawSmtp.open(port);
    await envelopeOn(done);
    assert.equal(await done.cmd('DATA'), '354 End data with <CR><LF>.<CR><LF>');
    const first = await done.cmd('Subject: before\r\n\r\nsent before the stop\r\n.');
    const firstId = /^250 2\.0\.0 Ok: queued as (\S+)$/.exec(first)?.[1];
    assert.ok(firstId, first);
    // An idle client: EHLO only.
    const { c: idle } = await RawSmtp.open(port);
    await idle.cmd('EHLO idle.example');
    // A client half-way through its message.
    const { c: sending } = await RawSmtp.open(port);
    await envelopeOn(sending);
    assert.equal(await sending.cmd('DATA'), '354 End data with <CR><LF>.<CR><LF>');
    sending.write('Subject: during\r\n\r\nfirst half, before the stop\r\n');

    const t0 = Date.now();
    child.kill('SIGTERM');
    assert.equal(await idle.reply(10_000), BYE);
    assert.equal(await done.reply(10_000), BYE);
    assert.ok(await idle.waitClosed(), 'the idle connection is closed after the 421');

    sending.write('second half, after it\r\n.\r\n');
    const second = await sending.reply(10_000);
    const secondId = /^250 2\.0\.0 Ok: queued as (\S+)$/.exec(second)?.[1];
    assert.ok(secondId, `the message in flight is accepted: ${second}`);
    assert.equal(await sending.reply(10_000), BYE, 'then the 421');

    assert.equal(await exited, 0);
    t.diagnostic(`exited ${Date.now() - t0} ms after SIGTERM`);
    assert.match(stdout, /SIGTERM: closing connections and stopping/);
    const ids = spooled(join(dir, 'data')).map((m) => m.id).sort();
    assert.deepEqual(ids, [firstId, secondId].sort(), 'both messages that got a 250 are in the spool');
    const during = spooled(join(dir, 'data')).find((m) => m.id === secondId)!;
    assert.match(during.eml.toString(), /\r\n\r\nfirst half, before the stop\r\nsecond half, after it\r\n$/);
  } finally {
    child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
});
