/**
 * Appends recorded sessions to one file per day (UTC), `sessions-YYYY-MM-DD.jsonl`, one
 * JSON line per session, behind the replies: `push` only queues (bounded); a batch is
 * written by one `appendFile` at a time. A disk that is slow or full never holds a
 * session: a full queue, a failed write or the size cap drops sessions, counted
 * (`record_dropped_total{reason}`) and logged (at most once a minute per reason), and
 * recording goes on with the next batch.
 *
 * Pruning (at start and whenever the day changes or the size cap is reached): files of
 * days older than `retentionDays`, then the oldest files until all fit in `maxBytes`.
 * Today's file is never deleted for size: past the cap, today's new sessions are dropped.
 *
 * A finished day (one before yesterday: no open session can still write to it) is
 * compressed in the background, once the day has changed: `sessions-DAY.jsonl` → `sessions-DAY.jsonl.gz`, written whole under a temporary
 * name and renamed; sessions of that day written later (one that started before midnight
 * and ended after) are compressed the next time and appended as another gzip member.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';

/**
 * A record file's name for a UTC day (compressed once the day is over) and its writer's
 * tag: '' for a single process and a cluster's worker 1, `w2`, `w3`… for the others
 * (`sessions-DAY.w2.jsonl`), so each worker appends, prunes and compresses only its own
 * files; and the day and tag of a name (null: not a record file). A replay reads them all.
 */
export const recordFile = {
  name: (day: string, tag = '') => `sessions-${day}${tag ? `.${tag}` : ''}.jsonl`,
  gz: (day: string, tag = '') => `${recordFile.name(day, tag)}.gz`,
  parse: (name: string): { day: string; tag: string } | null => {
    const m = /^sessions-(\d{4}-\d{2}-\d{2})(?:\.(w\d+))?\.jsonl(\.gz)?$/.exec(name);
    return m ? { day: m[1]!, tag: m[2] ?? '' } : null;
  },
  day: (name: string): string | null => recordFile.parse(name)?.day ?? null,
};

/** The UTC day of a time: `2026-12-01`. */
export const dayOf = (t: number): string => new Date(t).toISOString().slice(0, 10);

const DAY_MS = 86_400_000;

export type DropReason = 'queue-full' | 'write-failed' | 'max-bytes';

export interface WriterOptions {
  dir: string;
  /** This writer's file tag (`recordFile`): a cluster worker's beyond the first. */
  tag?: string;
  retentionDays: number;
  maxBytes: number;
  queueSessions: number;
  log: Logger;
  metrics: Metrics;
  now?: () => number;
}

export class RecordWriter {
  private queue: { day: string; line: string }[] = [];
  private writing: Promise<void> | null = null;
  /** Bytes of each day's file, as last listed plus what we appended since. */
  private sizes = new Map<string, number>();
  private prunedFor = '';
  /** The compression of finished days under way (one at a time, beside the writes). */
  private compressing: Promise<void> | null = null;
  /** The directory made and pruned: at the first session, so a host that never records touches nothing. */
  private ready: Promise<void> | null = null;
  private warned = new Map<DropReason, number>();
  private get tag(): string {
    return this.o.tag ?? '';
  }
  private readonly now: () => number;

  constructor(private readonly o: WriterOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Queues one session, recorded at `t`; never waits, never throws. */
  push(t: number, session: unknown): void {
    if (this.queue.length >= this.o.queueSessions) return this.dropped('queue-full', 1);
    this.queue.push({ day: dayOf(t), line: `${JSON.stringify(session)}\n` });
    this.writing ??= this.drain();
  }

  /** Writes what is queued, and finishes compressing (what close() and tests wait on). */
  async flush(): Promise<void> {
    while (this.writing || this.compressing) await (this.writing ?? this.compressing);
  }

  private async drain(): Promise<void> {
    await (this.ready ??= mkdir(this.o.dir, { recursive: true }).then(() => this.prune(), (e: Error) => this.dropped('write-failed', 0, e)));
    // One batch per turn: everything queued while the last write ran.
    while (this.queue.length) {
      const batch = this.queue;
      this.queue = [];
      const byDay = new Map<string, string[]>();
      for (const x of batch) (byDay.get(x.day) ?? byDay.set(x.day, []).get(x.day)!).push(x.line);
      for (const [day, lines] of byDay) await this.append(day, lines);
    }
    this.writing = null;
  }

  private async append(day: string, lines: string[]): Promise<void> {
    const text = lines.join('');
    const bytes = Buffer.byteLength(text);
    if (day !== this.prunedFor || this.total() + bytes > this.o.maxBytes) await this.prune(bytes);
    if (this.total() + bytes > this.o.maxBytes) return this.dropped('max-bytes', lines.length);
    try {
      // Created readable by the host's user only: the record holds addresses and header fields.
      await appendFile(join(this.o.dir, recordFile.name(day, this.tag)), text, { mode: 0o600 });
      this.sizes.set(day, (this.sizes.get(day) ?? 0) + bytes);
      this.o.metrics.inc('record_sessions_total', {}, lines.length);
    } catch (e) {
      this.dropped('write-failed', lines.length, e as Error);
    }
  }

  private total(): number {
    let n = 0;
    for (const v of this.sizes.values()) n += v;
    return n;
  }

  /** Deletes files past retention, then the oldest while they and `need` more bytes exceed maxBytes (today's kept). */
  private async prune(need = 0): Promise<void> {
    const today = dayOf(this.now());
    this.prunedFor = today;
    const oldest = dayOf(this.now() - this.o.retentionDays * DAY_MS);
    let names: { n: string; day: string; bytes: number }[];
    try {
      // Only this writer's files: another worker's are its own to prune and compress.
      const listed = (await readdir(this.o.dir)).map((n) => ({ n, f: recordFile.parse(n) })).filter((x) => x.f?.tag === this.tag).map((x) => ({ n: x.n, day: x.f!.day }));
      names = await Promise.all(listed.map(async (x) => ({ ...x, bytes: (await stat(join(this.o.dir, x.n))).size })));
    } catch (e) {
      this.o.log.warn({ err: e, dir: this.o.dir }, `cannot list the record directory ${this.o.dir}: ${(e as Error).message}`);
      return;
    }
    this.sizes = new Map();
    for (const x of names) this.sizes.set(x.day, (this.sizes.get(x.day) ?? 0) + x.bytes);
    const files = [...this.sizes].map(([day, bytes]) => ({ day, bytes })).sort((a, b) => a.day.localeCompare(b.day));
    for (const f of files) {
      const old = f.day < oldest;
      if (!old && (this.total() + need <= this.o.maxBytes || f.day >= today)) continue;
      try {
        for (const x of names) if (x.day === f.day) await unlink(join(this.o.dir, x.n));
        this.sizes.delete(f.day);
        this.o.log.info({ file: recordFile.name(f.day, this.tag), bytes: f.bytes }, `deleted the session record ${recordFile.name(f.day, this.tag)} (${old ? `older than ${this.o.retentionDays} days` : `the records exceed record.maxBytes ${this.o.maxBytes}`})`);
      } catch (e) {
        this.o.log.warn({ err: e }, `cannot delete the session record ${recordFile.name(f.day, this.tag)}: ${(e as Error).message}`);
      }
    }
    // Days before yesterday: no session still open can write to them (sessions time out long before).
    const yesterday = dayOf(this.now() - DAY_MS);
    const finished = names.filter((x) => x.n === recordFile.name(x.day, this.tag) && x.day < yesterday && this.sizes.has(x.day)).map((x) => x.day);
    if (finished.length && !this.compressing) this.compressing = this.compress(finished).finally(() => (this.compressing = null));
  }

  /** Compresses the finished days' files (see the top of the file); a failure leaves the plain file, logged. */
  private async compress(days: string[]): Promise<void> {
    for (const day of days) {
      const plain = join(this.o.dir, recordFile.name(day, this.tag));
      const gz = join(this.o.dir, recordFile.gz(day, this.tag));
      const tmp = `${gz}.tmp`;
      try {
        await pipeline(createReadStream(plain), createGzip(), createWriteStream(tmp, { mode: 0o600 }));
        const had = await stat(gz).then(() => true, () => false);
        if (had) {
          await appendFile(gz, await readFile(tmp)); // a later member: gunzip reads them in turn
          await unlink(tmp);
        } else await rename(tmp, gz);
        // Pruning runs beside (a write reaching maxBytes): a day it deleted meanwhile goes, compressed or not.
        if (!this.sizes.has(day)) {
          await unlink(gz);
          continue;
        }
        await unlink(plain);
        this.sizes.set(day, (await stat(gz)).size);
      } catch (e) {
        await unlink(tmp).catch(() => undefined);
        this.o.log.warn({ err: e, file: plain }, `cannot compress the session record ${plain}: ${(e as Error).message} (kept as it is)`);
      }
    }
  }

  private dropped(reason: DropReason, n: number, e?: Error): void {
    if (n > 0) this.o.metrics.inc('record_dropped_total', { reason }, n);
    const last = this.warned.get(reason) ?? -Infinity;
    if (this.now() - last < 60_000) return;
    this.warned.set(reason, this.now());
    const why = { 'queue-full': `${this.o.queueSessions} sessions already wait to be written (record.queueSessions): the disk is not keeping up`, 'write-failed': `writing to ${this.o.dir} failed: ${e?.message}`, 'max-bytes': `the records reached record.maxBytes (${this.o.maxBytes} bytes) with today's file alone` }[reason];
    this.o.log.warn({ reason, sessions: n, dir: this.o.dir }, `session recording dropped ${n} session(s): ${why} (counted in record_dropped_total; the sessions themselves were answered as usual)`);
  }
}
