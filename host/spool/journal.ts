/**
 * The spool's journal: what makes a message durable before its 250, with one fdatasync
 * for all the messages that arrive together (group commit) instead of an fsync per file.
 *
 * Each accepted message is still one file in `spool/new/` (the queue, the tests and an
 * admin with `ls` keep working on files), but that file is written without fsync; the
 * same bytes are appended to the journal, and the client hears 250 once the journal's
 * fdatasync that covers them has returned. After a crash, `replay` gives back every
 * message the journal holds that was not removed since, and the spool rewrites (durably)
 * any whose file is missing or short.
 *
 * The journal's authority is short: every few seconds the current segment is sealed. A
 * sealed segment all of whose messages have left the spool (delivered: the usual case
 * within seconds) is deleted with no fsync at all; one whose mail is still queued after
 * CHECKPOINT_MS has those files fsync'ed, then is deleted. Segments go oldest first, so a
 * removal record never outlives the segment of the message it removes. A delivery does
 * not wait for its removal record: one lost in a crash costs one redelivery, never a loss.
 * An administrator's delete waits for it (and replay reports removals, so a file whose
 * unlink the crash undid is removed at start rather than delivered).
 *
 * Record format (binary safe, checked on replay):
 *   `M <id> <bytes> <crc32 hex>\n<bytes of the message file>\n`   a message
 *   `D <id>\n`                                                    a removal
 * A record cut short by a crash (length past the end, CRC mismatch) ends its segment.
 */
import { mkdirSync, readdirSync } from 'node:fs';
import { open, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

/** How long a segment takes records before it is sealed. */
export const SEGMENT_MS = 5_000;
/** Mail still spooled this long after its segment was sealed has its files fsync'ed, and the segment goes. */
export const CHECKPOINT_MS = 60_000;

interface Pending {
  bytes: Buffer[];
  resolve: () => void;
  reject: (e: Error) => void;
}

/** Makes the files of these message ids durable (fsync each one still there, then their directory). */
export type Checkpoint = (ids: string[]) => Promise<void>;

export class Journal {
  private fh: FileHandle | null = null;
  /** The segment being appended to; lower numbers are sealed. */
  private segment = 0;
  private queue: Pending[] = [];
  private flushing: Promise<void> | null = null;
  /** Per segment (ascending), the ids in it still in the spool. */
  private live = new Map<number, Set<string>>();
  /** id → its segment. */
  private where = new Map<string, number>();
  private timer: NodeJS.Timeout;
  private checkpointing: Promise<void> = Promise.resolve();
  /** The timer asked for a new segment while a flush was running: sealed between its rounds. */
  private sealWanted = false;
  /** When each sealed segment was sealed (performance.now()); replayed ones count as sealed long ago. */
  private sealedAt = new Map<number, number>();

  constructor(private readonly dir: string, private readonly checkpoint: Checkpoint) {
    mkdirSync(dir, { recursive: true });
    // New records never go into a segment left by an earlier run: those are replay's.
    this.segment = (this.existing().at(-1) ?? -1) + 1;
    this.timer = setInterval(() => void this.rotate(), SEGMENT_MS);
    this.timer.unref();
  }

  private file(segment: number): string {
    return join(this.dir, `${String(segment).padStart(10, '0')}.jnl`);
  }

  /** The segments on disk, oldest first. */
  private existing(): number[] {
    return readdirSync(this.dir).filter((f) => /^\d{10}\.jnl$/.test(f)).map((f) => Number(f.slice(0, 10))).sort((a, b) => a - b);
  }

  /**
   * Reads the segments an earlier run left: the messages not removed since (id → file
   * bytes), and the ids whose last record is a removal (their file must be gone: a crash
   * may have undone its unlink). Call once, at start; those segments stay until the next
   * checkpoint has made their files durable (a journal never replayed leaves them alone).
   */
  async replay(): Promise<{ messages: Map<string, Buffer>; removed: Set<string> }> {
    const messages = new Map<string, Buffer>();
    const removed = new Set<string>();
    for (const seg of this.existing().filter((n) => n < this.segment)) {
      this.live.set(seg, new Set());
      this.sealedAt.set(seg, -Infinity);
      for (const r of parse(await readFile(this.file(seg)))) {
        if (r.kind === 'M') {
          messages.set(r.id, r.bytes);
          removed.delete(r.id);
          this.track(r.id, seg);
        } else {
          messages.delete(r.id);
          removed.add(r.id);
          this.untrack(r.id);
        }
      }
    }
    return { messages, removed };
  }

  private track(id: string, seg: number): void {
    let ids = this.live.get(seg);
    if (!ids) this.live.set(seg, (ids = new Set()));
    ids.add(id);
    this.where.set(id, seg);
  }

  private untrack(id: string): boolean {
    const seg = this.where.get(id);
    if (seg === undefined) return false;
    this.where.delete(id);
    this.live.get(seg)?.delete(id);
    return true;
  }

  /** Appends a message record; resolves once it is on disk (fdatasync'ed). */
  append(id: string, parts: Buffer[]): Promise<void> {
    let length = 0;
    let crc = 0;
    for (const p of parts) {
      length += p.length;
      crc = crc32(p, crc);
    }
    this.track(id, this.segment);
    return new Promise((resolve, reject) => {
      this.queue.push({ bytes: [Buffer.from(`M ${id} ${length} ${(crc >>> 0).toString(16)}\n`), ...parts, NL], resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  /**
   * Records that a message left the spool. The record goes out with the next group
   * commit; the promise says when it is on disk, for the caller that must know (an
   * administrator's delete). A delivery does not wait: a lost removal means one redelivery.
   * Nothing is written for a message whose segment is gone already (its file was made
   * durable, and no replay can bring it back).
   */
  removed(id: string): Promise<void> {
    if (!this.untrack(id)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.queue.push({ bytes: [Buffer.from(`D ${id}\n`)], resolve, reject });
      this.flushing ??= this.flush();
    });
  }

  /** Writes the queued records with one writev and one fdatasync per round, until none are left. */
  private async flush(): Promise<void> {
    try {
      while (this.queue.length) {
        const batch = this.queue;
        this.queue = [];
        try {
          const fh = (this.fh ??= await open(this.file(this.segment), 'a', 0o640));
          let rest = batch.flatMap((p) => p.bytes);
          while (rest.length) {
            const { bytesWritten } = await fh.writev(rest);
            if (bytesWritten === 0) throw Object.assign(new Error('no space left writing the spool journal'), { code: 'ENOSPC' });
            rest = skip(rest, bytesWritten);
          }
          await fh.datasync();
          for (const p of batch) p.resolve();
        } catch (e) {
          // What the segment holds past its last good record is unknown: go on in a new one
          // (replay stops at the torn record). The batch's messages get 452.
          await this.seal();
          for (const p of batch) p.reject(e as Error);
        }
        if (this.sealWanted) {
          this.sealWanted = false;
          await this.seal();
        }
      }
    } finally {
      this.flushing = null;
    }
  }

  /** Closes the current segment: the next record starts a new one. */
  private async seal(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    this.sealedAt.set(this.segment, performance.now());
    // A segment holding only removal records is tracked too, so that it goes as well.
    if (fh && !this.live.has(this.segment)) this.live.set(this.segment, new Set());
    this.segment++;
    await fh?.close().catch(() => undefined);
  }

  /** Seals the current segment (if it has records) and checkpoints the sealed ones. */
  private async rotate(): Promise<void> {
    if (this.flushing) this.sealWanted = true;
    else if (this.fh) await this.seal();
    this.checkpointing = this.checkpointing.then(() => this.checkpointSealed()).catch(() => undefined);
    await this.checkpointing;
  }

  /**
   * Deletes sealed segments oldest first: at once when their mail has left the spool,
   * after fsyncing what is left once they are CHECKPOINT_MS old (`all`: now, at close).
   * Stops at the first segment that must wait, or that fails (tried again next time).
   */
  private async checkpointSealed(all = false): Promise<void> {
    for (const seg of [...this.live.keys()].sort((a, b) => a - b)) {
      if (seg >= this.segment) break;
      const ids = [...this.live.get(seg)!];
      if (ids.length) {
        if (!all && performance.now() - (this.sealedAt.get(seg) ?? 0) < CHECKPOINT_MS) break;
        await this.checkpoint(ids);
        for (const id of ids) if (this.where.get(id) === seg) this.where.delete(id);
      }
      this.live.delete(seg);
      this.sealedAt.delete(seg);
      await unlink(this.file(seg)).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    }
  }

  /** Writes what is queued, checkpoints everything, closes. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    while (this.flushing) await this.flushing;
    await this.seal();
    await this.checkpointing;
    await this.checkpointSealed(true).catch(() => undefined);
  }
}

const NL = Buffer.from('\n');

type JournalRecord = { kind: 'M'; id: string; bytes: Buffer } | { kind: 'D'; id: string };

/** The records of a segment, up to the first one that is cut short or damaged. */
export function parse(data: Buffer): JournalRecord[] {
  const out: JournalRecord[] = [];
  let at = 0;
  while (at < data.length) {
    const nl = data.indexOf(0x0a, at);
    if (nl < 0) break;
    const head = data.subarray(at, nl).toString('latin1').split(' ');
    if (head[0] === 'D' && head.length === 2) {
      out.push({ kind: 'D', id: head[1]! });
      at = nl + 1;
      continue;
    }
    if (head[0] !== 'M' || head.length !== 4) break;
    const length = Number(head[2]);
    const end = nl + 1 + length;
    if (!Number.isSafeInteger(length) || end + 1 > data.length || data[end] !== 0x0a) break;
    const bytes = data.subarray(nl + 1, end);
    if ((crc32(bytes) >>> 0).toString(16) !== head[3]) break;
    out.push({ kind: 'M', id: head[1]!, bytes });
    at = end + 1;
  }
  return out;
}

/** The buffers left after the first n bytes. */
export function skip(bufs: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (n >= b.length) n -= b.length;
    else {
      out.push(n ? b.subarray(n) : b);
      n = 0;
    }
  }
  return out;
}
