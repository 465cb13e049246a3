/**
 * Reads recorded sessions back: the record files of the days a time range covers, line by
 * line, oldest first. A line that is not a whole recorded session (a file cut short by a
 * crash or a full disk, a line of another version, damage) is skipped with a warning
 * naming the file and line, never fatal: a replay reports what it could read.
 */
import { createReadStream, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { constants, createGunzip } from 'node:zlib';
import { RECORD_VERSION, type RecordedSession } from '../../sdk/index.js';
import { dayOf, recordFile } from './writer.js';

export interface TimeRange {
  /** Milliseconds since the epoch: sessions that started at or after it… */
  from: number;
  /** …and before it. */
  to: number;
}

/** Why `x` is not a recorded session this version reads, or null. */
export function notARecord(x: unknown): string | null {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return 'not a JSON object';
  const r = x as Partial<RecordedSession>;
  if (r.v !== RECORD_VERSION) return `format version ${JSON.stringify(r.v)}, this host reads ${RECORD_VERSION}`;
  if (typeof r.id !== 'string' || !r.client || typeof r.client.ip !== 'string' || !Array.isArray(r.steps) || !r.steps.length || typeof r.facts !== 'object' || r.facts === null || typeof r.dns !== 'boolean') return 'missing id, client, dns, steps or facts';
  if (r.steps.some((s) => !s || typeof s !== 'object' || typeof s.t !== 'number' || typeof s.cmd !== 'string')) return 'a step without cmd or t';
  return null;
}

/** The start of a session: its first step's time. */
export const startOf = (s: RecordedSession): number => s.steps[0]!.t;

/** The record files under `dir` holding days of `range`, oldest first. */
export function recordFiles(dir: string, range: TimeRange): string[] {
  const first = dayOf(range.from);
  const last = dayOf(range.to - 1);
  return readdirSync(dir)
    .filter((n) => {
      const d = recordFile.day(n);
      return d !== null && d >= first && d <= last;
    })
    .sort()
    .map((n) => join(dir, n));
}

/**
 * A file's text: as it is, or decompressed (`.gz`). A compressed file cut short gives what
 * it holds (SYNC_FLUSH: no error at a missing end); a damaged one fails where it breaks
 * (readRecords warns and goes on with the next file).
 */
function open(file: string): Readable {
  const raw = createReadStream(file);
  return file.endsWith('.gz') ? raw.pipe(createGunzip({ finishFlush: constants.Z_SYNC_FLUSH })) : raw;
}

/**
 * Every session of `range` in the files, file by file in order; `warn` is told of each
 * line skipped. A session is in the file of the day it started (UTC).
 */
export async function* readRecords(files: string[], range: TimeRange, warn: (w: string) => void): AsyncGenerator<RecordedSession> {
  for (const file of files) {
    const lines = createInterface({ input: open(file), crlfDelay: Infinity });
    let n = 0;
    try {
      for await (const line of lines) {
        n++;
        const s = parsed(line, `${file}:${n}`, warn);
        if (s && startOf(s) >= range.from && startOf(s) < range.to) yield s;
      }
    } catch (e) {
      warn(`${file}: damaged after line ${n} (${(e as Error).message}): the rest of the file skipped`);
    } finally {
      lines.close();
    }
  }
}

/** One line as a recorded session, or null (blank, or skipped with a warning naming `where`). */
function parsed(line: string, where: string, warn: (w: string) => void): RecordedSession | null {
  if (!line) return null;
  let x: unknown;
  try {
    x = JSON.parse(line);
  } catch {
    warn(`${where}: not a whole JSON line (the file was cut short?): skipped`);
    return null;
  }
  const why = notARecord(x);
  if (why) {
    warn(`${where}: not a recorded session (${why}): skipped`);
    return null;
  }
  return x as RecordedSession;
}
