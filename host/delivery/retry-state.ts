/**
 * The queue's retry state of a spooled message, beside it in `spool/state/<id>.json`:
 * attempts, next attempt, last error, recipients already done. The queue is its only
 * writer (replaced atomically: write, fsync, rename, directory fsync, so it survives
 * kill -9); `portcullis queue list|show` read it.
 */
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { replaceFile } from '../spool/spool.js';

export interface RetryState {
  attempts: number;
  /** When the queue tries it next (ms since the epoch). */
  nextAttemptAt: number;
  lastError: string | null;
  /** Recipients delivered or bounced already: never sent to again. */
  done: string[];
}

/** Before its first attempt a message has no state file: this is what that means. */
export function firstAttempt(): RetryState {
  return { attempts: 0, nextAttemptAt: 0, lastError: null, done: [] };
}

export function stateDir(dataDir: string): string {
  return join(dataDir, 'spool', 'state');
}

export async function readRetryState(dataDir: string, id: string): Promise<RetryState | null> {
  try {
    return JSON.parse(await readFile(join(stateDir(dataDir), `${id}.json`), 'utf8')) as RetryState;
  } catch {
    return null; // none yet, or torn by a crash before its rename: start over (at-least-once)
  }
}

export async function writeRetryState(dataDir: string, id: string, s: RetryState): Promise<void> {
  await replaceFile(join(stateDir(dataDir), `${id}.json`), Buffer.from(JSON.stringify(s)));
}

export async function removeRetryState(dataDir: string, id: string): Promise<void> {
  await unlink(join(stateDir(dataDir), `${id}.json`)).catch(() => undefined);
}
