/**
 * The session record's writer with real files in a temp dir: one file per UTC day,
 * retention and the size cap, and a disk that cannot keep up or fails dropping sessions
 * (counted and logged), never throwing at the caller.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { Metrics } from '../host/metrics.js';
import { readRecords, recordFiles } from '../host/record/reader.js';
import { RecordWriter, type WriterOptions } from '../host/record/writer.js';
import { tempDir } from './helpers.js';

const NOW = Date.UTC(2026, 11, 1, 6, 0, 0);
const DAY = 86_400_000;

function writer(dir: string, o: Partial<WriterOptions> = {}) {
  const logs: { msg: string }[] = [];
  const sink = new Writable({ write: (c: Buffer, _e, cb) => (logs.push(...c.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string })), cb()) });
  const metrics = new Metrics();
  const w = new RecordWriter({ dir, retentionDays: 7, maxBytes: 1 << 20, queueSessions: 100, log: pino(sink), metrics, now: () => NOW, ...o });
  return { w, logs, metrics };
}

describe('the session record writer', () => {
  const dirs: string[] = [];
  const dir = () => {
    const d = tempDir('portcullis-record-');
    dirs.push(d);
    return d;
  };
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('appends each session as one JSON line to the file of the day it started (UTC)', async () => {
    const d = dir();
    const { w, metrics } = writer(d);
    w.push(NOW - DAY, { id: 'yesterday' });
    w.push(NOW, { id: 'one' });
    w.push(NOW + 1, { id: 'two' });
    await w.flush();
    assert.deepEqual(readdirSync(d).sort(), ['sessions-2026-11-30.jsonl', 'sessions-2026-12-01.jsonl']);
    assert.equal(readFileSync(join(d, 'sessions-2026-12-01.jsonl'), 'utf8'), '{"id":"one"}\n{"id":"two"}\n');
    assert.equal(await metrics.get('record_sessions_total'), 3);
  });

  it('deletes the files of days past retentionDays, and the oldest past maxBytes', async () => {
    const d = dir();
    writeFileSync(join(d, 'sessions-2026-11-20.jsonl'), 'x'.repeat(10)); // 11 days old: past retention
    writeFileSync(join(d, 'sessions-2026-11-28.jsonl'), 'x'.repeat(600));
    writeFileSync(join(d, 'sessions-2026-11-29.jsonl'), 'x'.repeat(600));
    writeFileSync(join(d, 'notes.txt'), 'not a record file: left alone');
    const { w, logs } = writer(d, { maxBytes: 1205 });
    w.push(NOW, { id: 'today' });
    await w.flush();
    assert.deepEqual(readdirSync(d).sort(), ['notes.txt', 'sessions-2026-11-29.jsonl.gz', 'sessions-2026-12-01.jsonl']); // the day before yesterday, compressed
    assert.deepEqual(logs.map((l) => l.msg), [
      'deleted the session record sessions-2026-11-20.jsonl (older than 7 days)',
      'deleted the session record sessions-2026-11-28.jsonl (the records exceed record.maxBytes 1205)',
    ]);
  });

  it('compresses a finished day; the reader reads it, a second gzip member of late sessions and a compressed file cut short', async () => {
    const d = dir();
    const rec = (id: string, t: number) => ({ v: 1, id, ruleSet: 1, client: { ip: '192.0.2.7', port: 1, ptr: null, localIp: '192.0.2.25', localPort: 25 }, blacklist: null, wellBehaved: false, dns: false, steps: [{ cmd: 'connect', t, reply: null, rule: null }], facts: {} });
    const old = NOW - 3 * DAY;
    writeFileSync(join(d, 'sessions-2026-11-28.jsonl'), `${JSON.stringify(rec('a', old))}\n${JSON.stringify(rec('b', old + 1))}\n`);
    const { w } = writer(d);
    w.push(NOW, rec('today', NOW));
    await w.flush();
    assert.deepEqual(readdirSync(d).sort(), ['sessions-2026-11-28.jsonl.gz', 'sessions-2026-12-01.jsonl']);
    // A session of that day written late is compressed the next time, as another gzip member.
    writeFileSync(join(d, 'sessions-2026-11-28.jsonl'), `${JSON.stringify(rec('late', old + 2))}\n`);
    const next = writer(d, { now: () => NOW + DAY });
    next.w.push(NOW + DAY, rec('tomorrow', NOW + DAY));
    await next.w.flush();
    const range = { from: 0, to: NOW + 2 * DAY };
    const read = async (files: string[]) => {
      const warnings: string[] = [];
      const ids: string[] = [];
      for await (const s of readRecords(files, range, (x) => warnings.push(x))) ids.push(s.id);
      return { ids, warnings };
    };
    assert.deepEqual(await read(recordFiles(d, range)), { ids: ['a', 'b', 'late', 'today', 'tomorrow'], warnings: [] });
    const gz = readFileSync(join(d, 'sessions-2026-11-28.jsonl.gz'));
    const cut = join(d, 'cut.jsonl.gz');
    writeFileSync(cut, gz.subarray(0, gz.length - 30)); // a copy cut short
    const r = await read([cut]);
    assert.ok(r.ids.length < 3);
    assert.ok(r.warnings.every((x) => x.startsWith(`${cut}:`)), r.warnings.join('\n'));
  });

  it('gives each cluster worker its own files: a worker prunes and compresses only its own, a replay reads them all', async () => {
    const rec = (id: string, t: number) => ({ v: 1, id, ruleSet: 1, client: { ip: '192.0.2.7', port: 1, ptr: null, localIp: '192.0.2.25', localPort: 25 }, blacklist: null, wellBehaved: false, dns: false, steps: [{ cmd: 'connect', t, reply: null, rule: null }], facts: {} });
    const d = dir();
    writeFileSync(join(d, 'sessions-2026-11-28.w2.jsonl'), `${JSON.stringify(rec('w2-old', NOW - 3 * DAY))}\n`);
    const first = writer(d, { maxBytes: 1 << 20 });
    const second = writer(d, { tag: 'w2', maxBytes: 1 << 20 });
    first.w.push(NOW, rec('one', NOW));
    second.w.push(NOW, rec('two', NOW + 1));
    await Promise.all([first.w.flush(), second.w.flush()]);
    // Worker 1 left worker 2's finished day alone; worker 2 compressed it.
    assert.deepEqual(readdirSync(d).sort(), ['sessions-2026-11-28.w2.jsonl.gz', 'sessions-2026-12-01.jsonl', 'sessions-2026-12-01.w2.jsonl']);
    const range = { from: 0, to: NOW + DAY };
    const ids: string[] = [];
    for await (const s of readRecords(recordFiles(d, range), range, () => undefined)) ids.push(s.id);
    assert.deepEqual(ids.sort(), ['one', 'two', 'w2-old']);
  });

  it('drops sessions past maxBytes when today\'s file alone fills it, counted', async () => {
    const d = dir();
    writeFileSync(join(d, 'sessions-2026-12-01.jsonl'), 'x'.repeat(1000));
    const { w, metrics, logs } = writer(d, { maxBytes: 1010 });
    w.push(NOW, { id: 'too much for the cap' });
    await w.flush();
    assert.equal(readFileSync(join(d, 'sessions-2026-12-01.jsonl'), 'utf8').length, 1000);
    assert.equal(await metrics.get('record_dropped_total', { reason: 'max-bytes' }), 1);
    assert.match(logs.at(-1)!.msg, /^session recording dropped 1 session\(s\): the records reached record\.maxBytes \(1010 bytes\) with today's file alone/);
  });

  it('drops what does not fit the queue rather than hold it, and writes the rest', async () => {
    const d = dir();
    const { w, metrics } = writer(d, { queueSessions: 2 });
    for (let i = 0; i < 5; i++) w.push(NOW, { i });
    await w.flush();
    assert.equal(readFileSync(join(d, 'sessions-2026-12-01.jsonl'), 'utf8'), '{"i":0}\n{"i":1}\n');
    assert.equal(await metrics.get('record_dropped_total', { reason: 'queue-full' }), 3);
  });

  it('counts a failed write as dropped sessions and goes on with the next batch', async () => {
    const d = dir();
    mkdirSync(join(d, 'sessions-2026-12-01.jsonl')); // today's "file" cannot be appended to
    const { w, metrics, logs } = writer(d);
    w.push(NOW, { id: 'lost' });
    await w.flush();
    assert.equal(await metrics.get('record_dropped_total', { reason: 'write-failed' }), 1);
    assert.match(logs.at(-1)!.msg, /^session recording dropped 1 session\(s\): writing to .* failed: EISDIR/);
    w.push(NOW - DAY, { id: 'kept' });
    await w.flush();
    assert.ok(existsSync(join(d, 'sessions-2026-11-30.jsonl')));
  });
});
