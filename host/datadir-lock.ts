/**
 * One host per data directory. Two hosts on one dataDir would both run the spool queue
 * (each delivering the same messages), both replay the same journal at start, and
 * overwrite each other's status.json, so `portcullis reload` would signal the wrong one.
 *
 * The lock is `<dataDir>/portcullis.lock`, a pid file in the Postfix master.pid manner.
 * flock(2) would be released by the kernel when the holder dies, but Node has no flock
 * and an addon for it is a native dependency; a pid file is enough once "is the holder
 * still there?" is asked carefully:
 *
 * - It is created with link(2) from a fully written temporary file: atomic, fails if a
 *   lock exists (as O_EXCL would), and no reader ever sees a half-written lock.
 * - It names the holder: pid, host name, and (Linux) the boot id and the process's start
 *   time from /proc. A lock is live when that pid exists (kill(pid, 0)), is not a zombie,
 *   and started when the lock says it did since the same boot: after a crash and a
 *   reboot, or in a container (where the host is pid 1 every time), the pid in a stale
 *   lock often belongs to another process, which a bare kill(pid, 0) would take for the
 *   holder. A lock written on another machine (a data dir on NFS) cannot be checked from
 *   here and counts as live; the message says which machine holds it.
 * - A stale lock (its holder is gone) is taken over, with a warning. The stale file is
 *   first moved aside with rename(2), atomic too: of two hosts taking over at once only
 *   one moves it. If what was moved is not the stale lock that was judged (another host
 *   took over in between), it is put back, and this host is refused on the next look.
 */
import { hostname } from 'node:os';
import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Who holds a lock: what the lock file says. */
export interface LockHolder {
  pid: number;
  host: string;
  /** /proc/sys/kernel/random/boot_id, or null where there is no /proc. */
  boot: string | null;
  /** The process's start time (clock ticks since boot, /proc/<pid>/stat), or null. */
  started: string | null;
}

/** Another live host holds the data directory. */
export class DataDirInUseError extends Error {
  constructor(readonly dataDir: string, readonly holder: LockHolder) {
    const where = holder.host === hostname() ? `pid ${holder.pid}` : `pid ${holder.pid} on ${holder.host}`;
    super(`the data directory ${dataDir} is in use by another Portcullis host (${where}): stop it first, or give this one its own dataDir`);
  }
}

export interface DataDirLock {
  readonly file: string;
  /** Removes the lock if it is still ours. */
  release(): void;
}

export const LOCK_FILE = 'portcullis.lock';

/**
 * Takes the data directory's lock (creating the directory), or throws DataDirInUseError.
 * `warn` hears about a stale lock taken over.
 */
export function lockDataDir(dataDir: string, warn: (message: string) => void): DataDirLock {
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, LOCK_FILE);
  const mine = `${JSON.stringify(self())}\n`;
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, mine);
  try {
    for (;;) {
      try {
        linkSync(tmp, file);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const seen = readOrNull(file);
      if (seen === null) continue; // released as we looked: try again
      const holder = parse(seen);
      if (holder && alive(holder)) throw new DataDirInUseError(dataDir, holder);
      const aside = `${file}.stale.${process.pid}`;
      try {
        renameSync(file, aside);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // another host moved it first
        throw e;
      }
      const moved = readOrNull(aside);
      if (moved !== seen) {
        // Another host took over between our read and our rename: its lock goes back.
        try {
          linkSync(aside, file);
        } catch {
          // a third one is there already; the next look judges it
        }
        rmSync(aside, { force: true });
        continue;
      }
      rmSync(aside, { force: true });
      warn(`took over the stale lock ${file}: ${holder ? `the host that held it (pid ${holder.pid}) is gone` : 'it was unreadable'}`);
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  return {
    file,
    release: () => {
      if (readOrNull(file) !== mine) return; // not ours (anymore): leave it
      try {
        unlinkSync(file);
      } catch {
        // already gone
      }
    },
  };
}

function self(): LockHolder {
  return { pid: process.pid, host: hostname(), boot: bootId(), started: procStat(process.pid)?.started ?? null };
}

/** Whether the lock's holder still runs (see the file comment for why each check). */
export function alive(h: LockHolder): boolean {
  if (h.host !== hostname()) return true;
  const boot = bootId();
  if (boot && h.boot && boot !== h.boot) return false;
  try {
    process.kill(h.pid, 0);
  } catch (e) {
    // EPERM: it exists, but belongs to another user; /proc still tells who it is.
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = procStat(h.pid);
  if (stat?.state === 'Z') return false;
  if (stat && h.started && stat.started !== h.started) return false;
  return true;
}

function bootId(): string | null {
  return readOrNull('/proc/sys/kernel/random/boot_id')?.trim() || null;
}

/** State and start time from /proc/<pid>/stat (fields 3 and 22; the name, field 2, may hold spaces and parentheses). */
function procStat(pid: number): { state: string; started: string } | null {
  const stat = readOrNull(`/proc/${pid}/stat`);
  if (!stat) return null;
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return rest.length > 19 ? { state: rest[0]!, started: rest[19]! } : null;
}

function parse(text: string): LockHolder | null {
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    return typeof h.pid === 'number' && typeof h.host === 'string' ? { pid: h.pid, host: h.host, boot: h.boot ?? null, started: h.started ?? null } : null;
  } catch {
    return null;
  }
}

function readOrNull(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}
