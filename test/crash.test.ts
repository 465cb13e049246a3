/**
 * Crash safety: the host runs as a child process under concurrent load and is killed with
 * SIGKILL at random moments; after each restart the queue carries on. Every message whose
 * client got a 250 must reach the next hop (or still be in the spool); a message may
 * arrive twice only as at-least-once allows: a crash after the next hop's 250 and before
 * the spool file is removed. At most queue.concurrency deliveries are in flight at a
 * crash, so no more than that many duplicates per kill. In relay mode the 250 comes after
 * the next hop's, so a message is there or was never acknowledged, and never twice.
 */
import assert from 'node:assert/strict';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { it } from 'node:test';
import { eventually, mailer, spawnHost, tempDir } from './helpers.js';
import { startNextHop } from './nexthop.js';

const ROUNDS = 3;
const CLIENTS = 6;
const CONCURRENCY = 4;

for (const mode of ['spool', 'relay'] as const) it(`${mode} mode: every message that got a 250 survives ${ROUNDS} kill -9s under load, duplicated at most as at-least-once allows`, async (t) => {
  const dir = tempDir();
  const next = await startNextHop();
  const cfg = join(dir, 'config.json');
  writeFileSync(cfg, JSON.stringify({
    listen: ['127.0.0.1:0'], admin: { listen: '127.0.0.1:0' }, dataDir: join(dir, 'data'), reverseDns: false, watch: false, rules: { builtin: false },
    delivery: { mode, nextHop: { host: '127.0.0.1', port: next.port, starttls: 'off' }, queue: { retryBaseMs: 20, retryMaxMs: 200, concurrency: CONCURRENCY } },
  }));
  const acked = new Set<number>();
  let seq = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const { child, port } = await spawnHost(['--config', cfg]);
      let stop = false;
      const clients = Array.from({ length: CLIENTS }, async () => {
        while (!stop) {
          const n = seq++;
          const transport = mailer(port);
          try {
            const info = await transport.sendMail({ envelope: { from: 'a@example.org', to: ['u@localhost'] }, raw: `Subject: crash-${n}\r\n\r\nmessage ${n}\r\n` });
            if (/^250 /.test(info.response)) acked.add(n);
          } catch {
            // killed mid-session: no 250, no promise made
          } finally {
            transport.close();
          }
        }
      });
      await new Promise((r) => setTimeout(r, 150 + Math.random() * 350));
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
      stop = true;
      await Promise.all(clients);
    }
    assert.ok(acked.size > 10, `enough load: ${acked.size} messages acknowledged`);
    // A last start with no load: the queue delivers what the crashes left.
    const { child } = await spawnHost(['--config', cfg]);
    try {
      // (File names only: the queue removes files while we look.)
      await eventually('the queue empties the spool', () => readdirSync(join(dir, 'data', 'spool', 'new')).length === 0, 15_000);
      for (const area of ['spool', 'mailbox']) assert.deepEqual(readdirSync(join(dir, 'data', area, 'tmp')), [], `nothing partial left in ${area}/tmp`);
      assert.deepEqual(readdirSync(join(dir, 'data', 'spool', 'state')), [], 'no retry state left');
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    const seen = new Map<number, number>();
    for (const m of next.received) {
      const n = Number(/^Subject: crash-(\d+)\r$/m.exec(m.raw.toString())?.[1]);
      seen.set(n, (seen.get(n) ?? 0) + 1);
    }
    const lost = [...acked].filter((n) => !seen.has(n));
    assert.deepEqual(lost, [], 'no acknowledged message is lost');
    const duplicates = [...seen.values()].reduce((a, c) => a + c - 1, 0);
    const allowed = mode === 'spool' ? ROUNDS * CONCURRENCY : 0;
    assert.ok(duplicates <= allowed, `${duplicates} duplicates, at most ${allowed} allowed`);
    t.diagnostic(`${acked.size} acknowledged, ${seen.size} delivered (some unacknowledged ones too), ${duplicates} duplicate(s)`);
  } finally {
    await next.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
