/**
 * `portcullis status` and `portcullis reload` talk to the running host through its
 * status file (<dataDir>/status.json: pid, RuleSet version, last reload, last error).
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/config.js';
import type { ReloadStatus } from '../reload.js';

type Out = { write(s: string): unknown };

const STATUS_FILE = 'status.json';

function statusFile(argv: string[]): string {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' }, 'data-dir': { type: 'string' } }, strict: true });
  return join(resolve(loadConfig(values.config, { dataDir: values['data-dir'] }).dataDir), STATUS_FILE);
}

/** The status a host keeps in `<dataDir>/status.json`, or null when there is none (no host ever ran there). */
export function readStatus(dataDir: string): ReloadStatus | null {
  return read(join(dataDir, STATUS_FILE));
}

function read(file: string): ReloadStatus | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ReloadStatus;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function describe(s: ReloadStatus, out: Out): void {
  out.write(`pid ${s.pid}${alive(s.pid) ? '' : ' (not running)'}, started ${s.startedAt}\n`);
  out.write(`rule set version ${s.version}: ${s.rules.join(', ') || '(no rules)'}\n`);
  for (const w of s.workers ?? []) out.write(`worker ${w.slot}: pid ${w.pid}${alive(w.pid) ? '' : ' (not running)'}, started ${w.startedAt}, rule set version ${w.version}, reloads ${w.reloads.ok} ok, ${w.reloads.failed} failed\n`);
  out.write(`reloads: ${s.reloads.ok} ok, ${s.reloads.failed} failed\n`);
  if (s.lastReload) out.write(`last reload: version ${s.lastReload.version} at ${s.lastReload.at} in ${s.lastReload.ms} ms (${s.lastReload.changed.join('; ') || 'no change'})\n`);
  if (s.restartNeeded.length) out.write(`needs a restart for: ${s.restartNeeded.join(', ')}\n`);
  for (const w of s.warnings ?? []) out.write(`warning: ${w}\n`);
  if (s.lastError) out.write(`last reload FAILED at ${s.lastError.at}; version ${s.version} keeps serving:\n  ${s.lastError.problems.join('\n  ')}\n`);
}

export function status(argv: string[], out: Out = process.stdout, err: Out = process.stderr): number {
  const file = statusFile(argv);
  const s = read(file);
  if (!s) {
    err.write(`portcullis status: no status at ${file} (is the host running with this data dir?)\n`);
    return 1;
  }
  describe(s, out);
  return s.lastError ? 1 : 0;
}

/** `portcullis stats`: the running host's counters (from status.json, refreshed every 10 s). */
export function stats(argv: string[], out: Out = process.stdout, err: Out = process.stderr): number {
  const file = statusFile(argv);
  const s = read(file);
  if (!s?.counters) {
    err.write(`portcullis stats: no counters at ${file} (is the host running with this data dir?)\n`);
    return 1;
  }
  out.write(`as of ${s.savedAt ?? '?'} (pid ${s.pid})\n`);
  for (const [k, v] of Object.entries(s.counters).sort(([a], [b]) => a.localeCompare(b))) out.write(`${k} ${v}\n`);
  return 0;
}

export async function reload(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  const file = statusFile(argv);
  const before = read(file);
  if (!before || !alive(before.pid)) {
    err.write(`portcullis reload: no running host found through ${file}\n`);
    return 1;
  }
  const mark = JSON.stringify([before.lastReload?.at, before.lastError?.at, before.reloads]);
  process.kill(before.pid, 'SIGHUP');
  for (let i = 0; i < 600; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const now = read(file);
    if (now && JSON.stringify([now.lastReload?.at, now.lastError?.at, now.reloads]) !== mark) {
      describe(now, out);
      return now.lastError && now.reloads.failed > before.reloads.failed ? 1 : 0;
    }
  }
  err.write('portcullis reload: the host did not report a reload within 30 s\n');
  return 1;
}
