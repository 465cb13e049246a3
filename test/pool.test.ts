/**
 * The sandbox pool's scheduling: calls queued behind a stuck call are handed to another
 * worker (and run once), and a suspect client's calls stay in their own lane.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { EventParts } from '../host/sandbox/chain.js';
import { compileRule } from '../host/sandbox/compile.js';
import { SandboxPool } from '../host/sandbox/pool.js';
import type { ChainLink } from '../host/sandbox/protocol.js';
import { rcptReply, rule, tempDir, withHost } from './helpers.js';

/** Spins for `rest` "spin:N" milliseconds of busy work, then says its label. */
const SRC = rule('worker-probe', `{ rcpt: (ev, ctx) => {
  const m = /^spin(\\d+)@/.exec(ev.rcpt.address);
  if (m) { const end = Date.now() + Number(m[1]); while (Date.now() < end) {} }
  ctx.log(ev.rcpt.address);
} }`);

function parts(sid: string, rcpt: string): EventParts {
  return { sid, time: Date.now(), session: '{"notes":{}}', envelope: '', rest: JSON.stringify({ phase: 'rcpt', rcpt: { address: rcpt, args: {} } }) };
}

const chain: ChainLink[] = [{ id: '1:worker-probe', afterVerdict: 'stop', afterFailure: 'stop', effects: 'apply' }];
let pool: SandboxPool;

before(async () => {
  const dir = tempDir();
  const file = join(dir, 'probe.ts');
  writeFileSync(file, SRC);
  pool = new SandboxPool({ workers: 2 });
  const { code } = await compileRule(file);
  await pool.install(1, [{ id: '1:worker-probe', file, code, optionsJson: '{}', limits: { timeoutMs: 2000, memoryMb: 32, stackKb: 512 } }]);
});
after(() => pool.close());

describe('sandbox pool scheduling', () => {
  it('hands the calls queued behind a stuck call to the other worker, and runs each call once', async () => {
    const order: string[] = [];
    const run = (sid: string, rcpt: string) => pool.dispatch(1, 'rcpt', chain, parts(sid, rcpt), 2000).then((r) => {
      order.push(rcpt);
      return r;
    });
    await run('s1', 'warm@x'); // session s1 now sticks to one worker
    const stealsBefore = (await pool.stats()).steals;
    // Same turn of the event loop, same session: one batch to one worker, a and b queued behind the spin.
    const slow = run('s1', 'spin600@x');
    const queued = Promise.all([run('s1', 'a@x'), run('s1', 'b@x')]);
    const [a, b] = await queued;
    assert.deepEqual(order.slice(1), ['a@x', 'b@x']); // stolen: done while spin600 still runs
    // A later call of the same session is sent straight to a worker that is not stuck.
    await run('s1', 'c@x');
    assert.deepEqual(order.slice(1), ['a@x', 'b@x', 'c@x']);
    const spin = await slow;
    assert.deepEqual(order.slice(1), ['a@x', 'b@x', 'c@x', 'spin600@x']);
    // (stats waits for every worker, so it is asked only now)
    assert.equal((await pool.stats()).steals, stealsBefore + 2);
    // Each call ran exactly once: one result (and one log line) per call.
    assert.deepEqual([a, b, spin].map((r) => r.map((x) => x.effects.logs)), [[['a@x']], [['b@x']], [['spin600@x']]]);
  });

  it('keeps suspect calls in the last worker\'s lane, never stolen', async () => {
    const order: string[] = [];
    const run = (sid: string, rcpt: string, suspect: boolean) => pool.dispatch(1, 'rcpt', chain, parts(sid, rcpt), 2000, suspect).then(() => order.push(rcpt));
    const stealsBefore = (await pool.stats()).steals;
    const spin = run('bad', 'spin400@x', true);
    await new Promise((r) => setTimeout(r, 20));
    const behind = run('bad2', 'next-bad@x', true); // another suspect: waits behind the spin
    const innocent = run('good', 'good@x', false); // not suspect: another worker answers at once
    await innocent;
    assert.deepEqual(order, ['good@x']);
    await Promise.all([spin, behind]);
    assert.deepEqual(order, ['good@x', 'spin400@x', 'next-bad@x']);
    assert.equal((await pool.stats()).steals, stealsBefore);
  });
});

describe('store channel', () => {
  it('a late answer to a store call that timed out is never taken as the answer to the next call', async () => {
    // The rule's first store call waits on a main thread we keep busy past the worker's
    // 500 ms store wait; it catches the timeout and asks `blacklisted`. The late answer to
    // the first call (a count) must not be read as the blacklist entry.
    const src = rule('late-store', `{ rcpt: (ev, ctx) => {
      let first = 'answered';
      try { ctx.store.hit('slow-key', 60); } catch (e) { first = 'timed out'; }
      return reject(550, first + ', blacklisted=' + JSON.stringify(ctx.store.blacklisted(ev.session.client.ip)));
    } }`, '').replace("import { defineRule", "import { reject, defineRule");
    await withHost({ rules: { 'late-store.ts': src }, config: { rules: { settings: { 'late-store': { timeoutMs: 5000 } } } } }, async (h) => {
      const store = h.host.store;
      const hit = store.watchHit.bind(store);
      store.watchHit = (key, windowSeconds, now) => {
        if (key === 'slow-key') for (const end = Date.now() + 800; Date.now() < end; ); // the main thread is busy
        return hit(key, windowSeconds, now);
      };
      assert.equal(await rcptReply(h.port, 'user@localhost'), '550 5.7.1 timed out, blacklisted=null');
    });
  });
});
