/**
 * Where each worker process of a cluster keeps its own files. A worker has a slot, 1..N,
 * that outlives it: a replacement takes the slot (and so the spool) of the worker it
 * replaces, and delivers what that one accepted.
 *
 * Why a spool directory per slot rather than one spool whose files each process claims
 * (by an atomic rename or a lock): the spool's safety rests on one process owning its
 * directories (the journal and its replay, the tmp/ cleanup at start, the retry state,
 * the queue's view of which delivery is under way). A directory per slot keeps every one
 * of those single-owner as it is, with no claim to take on the hot path and none to
 * recover after a crash: the replacement's start is the recovery. Slot 1's spool is the
 * data dir's own, so `--processes 1` (and every command run with no host) sees the same
 * files as before; slots 2..N are under `<dataDir>/slots/N/`.
 */
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { stateDir } from './retry-state.js';
import { areaDir, Spool, type SpoolArea } from '../spool/spool.js';

const SLOTS = 'slots';

/** `<dataDir>/slots/<slot>`: the slot's status.json, and its spool for slots 2..N. */
export function slotDir(dataDir: string, slot: number): string {
  const dir = join(dataDir, SLOTS, String(slot));
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The root of a slot's spool (Spool's and the queue's `dataDir`). */
export function spoolDirOf(dataDir: string, slot: number): string {
  return slot === 1 ? dataDir : slotDir(dataDir, slot);
}

/** Every spool root in the data dir: slot 1's (the data dir) and each other slot's that has a spool (what `portcullis queue list` reads). */
export function spoolRoots(dataDir: string): string[] {
  const root = join(dataDir, SLOTS);
  const others = existsSync(root) ? readdirSync(root).filter((n) => Number(n) >= 2 && existsSync(join(root, n, 'spool'))).sort((a, b) => Number(a) - Number(b)) : [];
  return [dataDir, ...others.map((n) => join(root, n))];
}

/**
 * Moves what slots beyond `processes` hold (a start with fewer processes than the last
 * run) into slot 1's spool, so no message waits for a worker that will never come. Run by
 * whoever holds the data dir's lock (a cluster's primary, a single host), before any
 * spool is opened: nobody else touches these files. Each orphan spool replays its journal first (what a crash left half
 * written), then its files move, then the slot goes with its journal (a journal left
 * behind would bring the moved messages back, to be delivered twice). Returns how many
 * messages moved.
 */
export async function adoptOrphanSlots(dataDir: string, processes: number): Promise<number> {
  const root = join(dataDir, SLOTS);
  if (!existsSync(root)) return 0;
  let moved = 0;
  for (const name of readdirSync(root)) {
    const slot = Number(name);
    if (!Number.isInteger(slot) || slot <= processes || slot < 2) continue;
    const from = join(root, name);
    if (existsSync(join(from, 'spool'))) {
      const orphan = new Spool(from);
      await orphan.recover();
      await orphan.cleanTmp();
      await orphan.close();
      const target = new Spool(dataDir); // creates slot 1's directories
      await target.close();
      for (const area of ['spool', 'quarantine', 'mailbox'] as SpoolArea[]) moved += await moveAll(areaDir(from, area), areaDir(dataDir, area));
      mkdirSync(stateDir(dataDir), { recursive: true });
      await moveAll(stateDir(from), stateDir(dataDir));
    }
    rmSync(from, { recursive: true, force: true });
  }
  return moved;
}

/**
 * Before a cluster's workers start: what crashed writes left under the data dir's own
 * tmp/ directories, the shared mailbox's among them (a worker cleans only its own spool's).
 */
export async function cleanSharedTmp(dataDir: string): Promise<void> {
  const own = new Spool(dataDir);
  try {
    await own.cleanTmp();
  } finally {
    await own.close();
  }
}

/** Renames every file of `from` into `to` (one file system), then fsyncs `to`. */
async function moveAll(from: string, to: string): Promise<number> {
  if (!existsSync(from)) return 0;
  const files = readdirSync(from);
  for (const f of files) await rename(join(from, f), join(to, f));
  const dir = await open(to, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return files.filter((f) => f.endsWith('.msg')).length;
}
