/** The data directory lock: who counts as still holding it, and what a taker says. */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { DataDirInUseError, LOCK_FILE, lockDataDir, type LockHolder } from '../host/datadir-lock.js';
import { tempDir } from './helpers.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh data directory (not created yet: the lock makes it). */
function dataDir(): string {
  const d = tempDir();
  dirs.push(d);
  return join(d, 'data');
}

const held = (dir: string): LockHolder => JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')) as LockHolder;

describe('the data directory lock', () => {
  it('refuses a second holder while the first runs (even in the same process), and is free again once released', () => {
    const dir = dataDir();
    const first = lockDataDir(dir, () => assert.fail('nothing stale'));
    assert.equal(held(dir).pid, process.pid);
    assert.throws(() => lockDataDir(dir, () => undefined), {
      message: `the data directory ${dir} is in use by another Portcullis host (pid ${process.pid}): stop it first, or give this one its own dataDir`,
    });
    first.release();
    assert.equal(existsSync(join(dir, LOCK_FILE)), false);
    lockDataDir(dir, () => assert.fail('nothing stale')).release();
  });

  it('takes over a lock whose pid now belongs to another process (after a reboot, in a container), with a warning', (t) => {
    if (!existsSync('/proc/self/stat')) return t.skip('needs /proc');
    const dir = dataDir();
    const mine = lockDataDir(dir, () => undefined);
    const ours = held(dir);
    mine.release();
    // Our own pid, but another start time: the process that wrote it is gone.
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ ...ours, started: '1' }));
    const warnings: string[] = [];
    const taken = lockDataDir(dir, (m) => warnings.push(m));
    assert.deepEqual(warnings, [`took over the stale lock ${join(dir, LOCK_FILE)}: the host that held it (pid ${process.pid}) is gone`]);
    assert.notEqual(held(dir).started, '1');
    taken.release();
  });

  it('takes over a dead pid\'s lock and an unreadable one', () => {
    const dir = dataDir();
    const warnings: string[] = [];
    lockDataDir(dir, () => undefined).release();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: 2 ** 22 + 1, host: hostname(), boot: null, started: null }));
    lockDataDir(dir, (m) => warnings.push(m)).release();
    writeFileSync(join(dir, LOCK_FILE), 'not a lock');
    lockDataDir(dir, (m) => warnings.push(m)).release();
    assert.deepEqual(warnings, [
      `took over the stale lock ${join(dir, LOCK_FILE)}: the host that held it (pid ${2 ** 22 + 1}) is gone`,
      `took over the stale lock ${join(dir, LOCK_FILE)}: it was unreadable`,
    ]);
  });

  it('a lock written on another machine cannot be checked from here: it counts as held, naming the machine', () => {
    const dir = dataDir();
    lockDataDir(dir, () => undefined).release();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: 4711, host: 'mx2.example.org', boot: null, started: null }));
    assert.throws(() => lockDataDir(dir, () => undefined), (e: unknown) => e instanceof DataDirInUseError && /\(pid 4711 on mx2\.example\.org\)/.test(e.message));
  });

  it('release leaves a lock that is not ours', () => {
    const dir = dataDir();
    const mine = lockDataDir(dir, () => undefined);
    const other = JSON.stringify({ pid: 4711, host: 'mx2.example.org', boot: null, started: null });
    writeFileSync(join(dir, LOCK_FILE), other);
    mine.release();
    assert.equal(readFileSync(join(dir, LOCK_FILE), 'utf8'), other);
  });
});
