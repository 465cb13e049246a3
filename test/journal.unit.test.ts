/**
 * The spool's journal: one fdatasync for the messages that arrive together, and after a
 * crash every acknowledged message back in the spool, with real files in a temp dir.
 */
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import { Journal, parse } from '../host/spool/journal.js';
import { Spool, type SpoolEnvelope } from '../host/spool/spool.js';
import { tempDir } from './helpers.js';

const env = (id: string): SpoolEnvelope => ({ id, receivedAt: '2026-11-30T12:00:00.000Z', client: { ip: '192.0.2.1', port: 1, helo: 'c.example', ptr: null, user: null }, mailFrom: 'a@example.org', rcptTo: ['b@localhost'] });
const msg = (n: number) => Buffer.from(`Subject: ${n}\r\n\r\nbody ${n}\r\n`);
const segments = (dataDir: string) => readdirSync(join(dataDir, 'spool', 'journal')).filter((f) => f.endsWith('.jnl'));

describe('journal records', () => {
  const rec = (id: string, b: Buffer) => Buffer.concat([Buffer.from(`M ${id} ${b.length} ${(crc32(b) >>> 0).toString(16)}\n`), b, Buffer.from('\n')]);
  const data = Buffer.concat([rec('X1', Buffer.from('one\n')), Buffer.from('D X1\n'), rec('X2', Buffer.from('two'))]);

  it('are read back: messages with their bytes, and removals', () => {
    assert.deepEqual(parse(data).map((r) => (r.kind === 'M' ? [r.kind, r.id, r.bytes.toString()] : [r.kind, r.id])), [['M', 'X1', 'one\n'], ['D', 'X1'], ['M', 'X2', 'two']]);
  });

  it('end at a record cut short by a crash', () => {
    assert.deepEqual(parse(data.subarray(0, data.length - 2)).map((r) => r.id), ['X1', 'X1']);
  });

  it('end at a record whose CRC does not match', () => {
    const bad = Buffer.from(data);
    bad[bad.length - 3]! ^= 1;
    assert.deepEqual(parse(bad).map((r) => r.id), ['X1', 'X1']);
  });
});

describe('the spool after a crash', () => {
  it('restores every message the journal acknowledged whose file is missing or short, and nothing removed', async () => {
    const dir = tempDir();
    const spool = new Spool(dir);
    for (let i = 1; i <= 4; i++) await spool.store('spool', env(`M${i}`), [msg(i)]);
    await spool.remove('spool', 'M4'); // delivered
    // The crash: no close() (no checkpoint); a file the OS had not written yet, one half written.
    const file = (id: string) => join(dir, 'spool', 'new', `${id}.msg`);
    const want = readFileSync(file('M2'));
    rmSync(file('M1'));
    truncateSync(file('M2'), 10);
    assert.ok(segments(dir).length > 0);

    const after = new Spool(dir);
    assert.equal(await after.recover(), 2);
    assert.deepEqual((await after.list('spool')).sort(), ['M1', 'M2', 'M3']);
    assert.deepEqual(readFileSync(file('M2')), want);
    assert.deepEqual((await after.read('spool', 'M1')).message, msg(1));
    await after.close();
    assert.deepEqual(segments(dir), [], 'a clean close checkpoints and deletes every segment');
  });

  it('a journal whose last record was cut short by the crash still gives back the ones before it', async () => {
    const dir = tempDir();
    const spool = new Spool(dir);
    await spool.store('spool', env('T1'), [msg(1)]);
    const [seg] = segments(dir);
    appendFileSync(join(dir, 'spool', 'journal', seg!), 'M T2 999 0\npartial');
    rmSync(join(dir, 'spool', 'new', 'T1.msg'));
    const after = new Spool(dir);
    assert.equal(await after.recover(), 1);
    assert.deepEqual(await after.list('spool'), ['T1']);
    await after.close();
    await spool.close();
  });

  it('a removal the journal holds is final: a file the crash brought back is removed at start, not delivered again', async () => {
    const dir = tempDir();
    const spool = new Spool(dir);
    await spool.store('spool', env('R1'), [msg(1)]);
    await spool.store('spool', env('R2'), [msg(2)]);
    const file = join(dir, 'spool', 'new', 'R1.msg');
    const bytes = readFileSync(file);
    assert.equal(await spool.discard('spool', 'R1'), true, 'resolves once the removal is on disk');
    assert.equal(await spool.discard('spool', 'R1'), false, 'nothing left to remove');
    // The crash: no close, and the unlink undone (it had not reached the disk).
    writeFileSync(file, bytes);
    const after = new Spool(dir);
    assert.equal(await after.recover(), 0);
    assert.deepEqual(await after.list('spool'), ['R2']);
    await after.close();
  });

  it('release moves a quarantined message into the spool as it is, once', async () => {
    const dir = tempDir();
    const spool = new Spool(dir);
    await spool.store('quarantine', env('Q1'), [msg(1)]);
    const bytes = readFileSync(join(dir, 'quarantine', 'new', 'Q1.msg'));
    assert.equal(await spool.release('Q1'), true);
    assert.equal(await spool.release('Q1'), false);
    assert.deepEqual(await spool.list('quarantine'), []);
    assert.deepEqual(readFileSync(join(dir, 'spool', 'new', 'Q1.msg')), bytes);
    await spool.close();
  });

  it('a checkpoint makes the files durable and deletes the segment; a message delivered before it is never fsync\'ed', async () => {
    const dir = tempDir();
    const synced: string[][] = [];
    const j = new Journal(join(dir, 'j'), async (ids) => void synced.push(ids));
    await j.append('C1', [Buffer.from('one')]);
    await j.append('C2', [Buffer.from('two')]);
    j.removed('C1');
    await j.close();
    assert.deepEqual(synced, [['C2']]);
    assert.equal(existsSync(join(dir, 'j', '0000000000.jnl')), false);
  });
});

