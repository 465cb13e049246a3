/**
 * The durable spool. Each message is one file, `<id>.msg` (as Postfix keeps envelope and
 * content in one queue file): a first line holding the envelope as JSON, then the message
 * exactly as it will be delivered. In the spool area the file is written under tmp/ and
 * renamed into new/, and the same bytes go to the journal (journal.ts), whose fdatasync,
 * shared by the messages that arrive together, comes before the client hears 250. Other
 * areas (quarantine, local mailboxes) fsync each file and its directory.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { open, readdir, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Journal, skip } from './journal.js';

export interface SpoolEnvelope {
  id: string;
  receivedAt: string;
  client: { ip: string; port: number; helo: string | null; ptr: string | null; user: string | null };
  mailFrom: string;
  rcptTo: string[];
  /** For quarantine and redirect: which rule decided and why. */
  disposition?: { action: string; rule: string | null; reason: string | null; originalRcptTo?: string[] };
  /** DSN parameters the client gave (RFC 3461): RET and ENVID of MAIL; NOTIFY and ORCPT per recipient. */
  dsn?: Dsn;
}

export interface Dsn {
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  /** Recipient → NOTIFY value, e.g. "NEVER" or "FAILURE,DELAY". */
  notify?: Record<string, string>;
  /** Recipient → ORCPT value, e.g. "rfc822;user@example.org". */
  orcpt?: Record<string, string>;
}

/**
 * spool: waiting for delivery (the queue's input); quarantine: held by a rule's verdict;
 * mailbox: delivered locally, Maildir-style (no envelope line), when no next hop is configured.
 */
export type SpoolArea = 'spool' | 'quarantine' | 'mailbox';

/** Random per process, so ids from two processes (or restarts) never collide. */
const PROCESS_TAG = randomBytes(3).toString('hex').toUpperCase();
let counter = 0;

/** Sortable, unique message id: time, process tag, counter. */
export function newMessageId(): string {
  counter = (counter + 1) % 0x100000;
  return `${Date.now().toString(36).toUpperCase()}${PROCESS_TAG}${counter.toString(16).toUpperCase().padStart(5, '0')}`;
}

/** Where an area's messages are: `<dataDir>/<area>/new`. */
export function areaDir(dataDir: string, area: SpoolArea): string {
  return join(dataDir, area, 'new');
}

/**
 * The envelope of a spool file, reading no further than its first line (`portcullis
 * queue list` over a large queue reads envelopes, not messages).
 */
export async function readEnvelope(path: string): Promise<SpoolEnvelope> {
  const fh = await open(path, 'r');
  try {
    const chunks: Buffer[] = [];
    for (;;) {
      const { bytesRead, buffer } = await fh.read({ buffer: Buffer.alloc(16_384) });
      const chunk = buffer.subarray(0, bytesRead);
      const nl = chunk.indexOf(0x0a);
      chunks.push(nl >= 0 ? chunk.subarray(0, nl) : chunk);
      if (nl >= 0 || bytesRead === 0) break;
    }
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as SpoolEnvelope;
  } finally {
    await fh.close();
  }
}

/** Splits a spool file into its envelope and message. */
export function readSpoolFile(file: Buffer): { envelope: SpoolEnvelope; message: Buffer } {
  const nl = file.indexOf(0x0a);
  return { envelope: JSON.parse(file.subarray(0, nl).toString('utf8')) as SpoolEnvelope, message: file.subarray(nl + 1) };
}

/** Writes a new file from `parts`; fsync'ed unless `sync` is false. */
async function writeParts(path: string, parts: Buffer[], sync = true): Promise<void> {
  const fh = await open(path, 'wx', 0o640);
  try {
    // One writev for all parts; it may write less than asked (a disk filling up), so loop
    // until all is written: a short write surfaces as the ENOSPC of the next attempt,
    // never as a short file.
    let rest = parts;
    while (rest.length) {
      const { bytesWritten } = await fh.writev(rest);
      if (bytesWritten === 0) throw Object.assign(new Error(`no space left writing ${path}`), { code: 'ENOSPC' });
      rest = skip(rest, bytesWritten);
    }
    if (sync) await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Replaces the file at `path` durably with `data`: written to `path.tmp` (one a crash
 * left there is discarded), fsync'ed, renamed over `path`, and the directory fsync'ed.
 * For small side files such as the queue's retry state.
 */
export async function replaceFile(path: string, data: Buffer): Promise<void> {
  const tmp = `${path}.tmp`;
  await unlink(tmp).catch(() => undefined);
  await writeParts(tmp, [data]);
  await rename(tmp, path);
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * Group commit of directory fsyncs: a rename is durable once an fsync of its directory
 * that *started after* the rename has completed. Concurrent messages share one fsync.
 */
class DirSyncer {
  private running: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  private handle: Promise<FileHandle> | null = null;
  constructor(private readonly dir: string) {}

  sync(): Promise<void> {
    if (!this.running) return this.start();
    return (this.next ??= this.running.catch(() => undefined).then(() => {
      this.next = null;
      return this.start();
    }));
  }

  private async fsync(): Promise<void> {
    // The directory stays open: one fsync per group, no open/close around it.
    const fh = await (this.handle ??= open(this.dir, 'r'));
    try {
      await fh.sync();
    } catch (e) {
      this.handle = null;
      await fh.close().catch(() => undefined);
      throw e;
    }
  }

  close(): Promise<void> | undefined {
    return this.handle?.then((fh) => fh.close());
  }

  private start(): Promise<void> {
    const p = this.fsync().finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }
}

export interface SpoolOptions {
  /**
   * Where the mailbox area is when several spools share one (a cluster's workers all
   * deliver into the data dir's `mailbox/`): each file there is named by its own message
   * id, so writers never meet; its tmp/ is left to whoever holds the data dir alone.
   */
  sharedMailbox?: string;
}

export class Spool {
  private syncers = new Map<SpoolArea, DirSyncer>();
  private readonly journal: Journal;

  constructor(private readonly dataDir: string, private readonly opts: SpoolOptions = {}) {
    for (const area of ['spool', 'quarantine', 'mailbox'] as const) {
      for (const sub of ['tmp', 'new']) mkdirSync(join(this.root(area), area, sub), { recursive: true });
      this.syncers.set(area, new DirSyncer(this.dir(area)));
    }
    this.journal = new Journal(join(dataDir, 'spool', 'journal'), (ids) => this.makeDurable(ids));
  }

  async close(): Promise<void> {
    await this.journal.close();
    await Promise.all([...this.syncers.values()].map((s) => s.close()));
  }

  /**
   * After a crash: every message the journal holds whose file is missing or short is
   * written again, durably. Call at start, before the queue reads the spool. Returns how
   * many were restored.
   */
  async recover(): Promise<number> {
    let restored = 0;
    const { messages, removed } = await this.journal.replay();
    for (const [id, bytes] of messages) {
      const size = await stat(join(this.dir('spool'), `${id}.msg`)).then((s) => s.size, () => -1);
      if (size === bytes.length) continue;
      await this.write('spool', `${id}.msg`, [bytes], { replace: true });
      restored++;
    }
    // A removal the journal holds is final (delivered, or deleted by the administrator):
    // a file the crash brought back must not be delivered (again).
    let gone = 0;
    for (const id of removed) if (await unlinkIfThere(join(this.dir('spool'), `${id}.msg`))) gone++;
    if (gone) await this.syncers.get('spool')!.sync();
    return restored;
  }

  /** The checkpoint of the journal: fsyncs the files of these ids still in the spool, then new/. */
  private async makeDurable(ids: string[]): Promise<void> {
    const dir = this.dir('spool');
    for (const id of ids) {
      const fh = await open(join(dir, `${id}.msg`), 'r').catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return null; // delivered meanwhile
        throw e;
      });
      if (!fh) continue;
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    await this.syncers.get('spool')!.sync();
  }

  dir(area: SpoolArea): string {
    return areaDir(this.root(area), area);
  }

  /** The directory an area is under: the spool's own, or the shared mailbox's. */
  private root(area: SpoolArea): string {
    return area === 'mailbox' && this.opts.sharedMailbox !== undefined ? this.opts.sharedMailbox : this.dataDir;
  }

  /** Stores a message durably; on any error nothing is left behind and the error is thrown. */
  async store(area: SpoolArea, env: SpoolEnvelope, message: Buffer[]): Promise<string> {
    const parts = [Buffer.from(JSON.stringify(env) + '\n'), ...message];
    if (area !== 'spool') return this.write(area, `${env.id}.msg`, parts);
    // The file first, without fsync (a full disk fails here, before anything is journaled),
    // then the journal's group-committed fdatasync: durable from then on.
    const tmp = join(this.root(area), area, 'tmp', `${env.id}.msg`);
    const dest = join(this.dir(area), `${env.id}.msg`);
    try {
      await writeParts(tmp, parts, false);
      await rename(tmp, dest);
      await this.journal.append(env.id, parts);
      return dest;
    } catch (e) {
      await Promise.all([tmp, dest].map((p) => unlink(p).catch(() => undefined)));
      throw e;
    }
  }

  /**
   * Writes `name` into the area's new/ durably (tmp, fsync, rename, directory fsync);
   * nothing is left behind on error. `replace`: the name may exist already (a redelivery
   * after a crash), and so may its temporary file.
   */
  async write(area: SpoolArea, name: string, parts: Buffer[], opts: { replace?: boolean } = {}): Promise<string> {
    const tmp = join(this.root(area), area, 'tmp', name);
    const dest = join(this.dir(area), name);
    if (opts.replace) await unlink(tmp).catch(() => undefined);
    try {
      await writeParts(tmp, parts);
      await rename(tmp, dest);
      await this.syncers.get(area)!.sync();
      return dest;
    } catch (e) {
      // (A replaced file stays: it is an earlier good copy.)
      await Promise.all([tmp, ...(opts.replace ? [] : [dest])].map((p) => unlink(p).catch(() => undefined)));
      throw e;
    }
  }

  /**
   * Removes what crashed writes left under the areas' tmp/. Call it before anything is
   * written: a file there was never acknowledged (the 250 comes after the rename). A
   * shared mailbox's is not this spool's to clean: another writer may be under way.
   */
  async cleanTmp(): Promise<number> {
    let n = 0;
    for (const area of ['spool', 'quarantine', 'mailbox'] as const) {
      if (area === 'mailbox' && this.opts.sharedMailbox !== undefined) continue;
      const dir = join(this.dataDir, area, 'tmp');
      for (const f of await readdir(dir)) {
        await unlink(join(dir, f));
        n++;
      }
    }
    return n;
  }

  /** Ids of the messages in an area's new/, oldest first (ids sort by time). */
  async list(area: SpoolArea): Promise<string[]> {
    return (await readdir(this.dir(area))).filter((f) => f.endsWith('.msg')).map((f) => f.slice(0, -4)).sort();
  }

  /** Whether the area's new/ holds this message. */
  async has(area: SpoolArea, id: string): Promise<boolean> {
    return stat(join(this.dir(area), `${id}.msg`)).then(() => true, () => false);
  }

  async read(area: SpoolArea, id: string): Promise<{ envelope: SpoolEnvelope; message: Buffer }> {
    return readSpoolFile(await readFile(join(this.dir(area), `${id}.msg`)));
  }

  /**
   * Removes a delivered message. Not fsync'ed: if the removal is lost in a crash the
   * message is delivered again (at-least-once), never lost.
   */
  async remove(area: SpoolArea, id: string): Promise<void> {
    await unlinkIfThere(join(this.dir(area), `${id}.msg`));
    if (area === 'spool') void this.journal.removed(id).catch(() => undefined);
  }

  /**
   * Removes a message for good, for the administrator (`portcullis queue delete`,
   * `quarantine delete`): once this resolves no crash brings it back. In the spool area
   * its removal is journaled and synced first (replay would otherwise restore a young
   * message), then the file is unlinked and the directory fsync'ed. False when there is
   * no such message.
   */
  async discard(area: 'spool' | 'quarantine', id: string): Promise<boolean> {
    const file = join(this.dir(area), `${id}.msg`);
    if (!(await this.has(area, id))) return false;
    if (area === 'spool') await this.journal.removed(id);
    if (!(await unlinkIfThere(file))) return false;
    await this.syncers.get(area)!.sync();
    return true;
  }

  /**
   * Moves a quarantined message into the spool, as it is (`portcullis quarantine
   * release`): one rename, so after any crash it is in exactly one of the two; then both
   * directories are fsync'ed. It is not journaled: it is durable already. False when
   * there is no such message in quarantine.
   */
  async release(id: string): Promise<boolean> {
    try {
      await rename(join(this.dir('quarantine'), `${id}.msg`), join(this.dir('spool'), `${id}.msg`));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    await this.syncers.get('spool')!.sync();
    await this.syncers.get('quarantine')!.sync();
    return true;
  }
}

/** Unlinks `path`; false when it was not there. */
async function unlinkIfThere(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}
