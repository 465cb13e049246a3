/**
 * The session recorder the front door is handed when config `record.enabled` is on: a
 * tap per session (tap.ts), each finished session queued to the writer (writer.ts).
 */
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { Metrics } from '../metrics.js';
import type { ConnectionFacts, SessionDeps } from '../smtp/session.js';
import type { SessionRecorder, SessionTap } from '../smtp/tap.js';
import { RecordingTap } from './tap.js';
import { RecordWriter } from './writer.js';

/** Where a config's session records are: `record.dir`, or `record/` under the data dir. */
export function recordDir(config: Pick<Config, 'record' | 'dataDir'>): string {
  return resolve(config.record.dir ?? join(config.dataDir, 'record'));
}

export class Recorder implements SessionRecorder {
  readonly writer: RecordWriter;

  /** `tag`: this process's record files' tag (writer.ts `recordFile`), a cluster worker's beyond the first. */
  constructor(private config: Config, log: Logger, metrics: Metrics, tag = '') {
    const r = config.record;
    this.writer = new RecordWriter({ dir: recordDir(config), tag, retentionDays: r.retentionDays, maxBytes: r.maxBytes, queueSessions: r.queueSessions, log, metrics });
  }

  /** A reload's config: `enabled` and `bodies` apply to new sessions (the directory and limits need a restart). */
  configure(config: Config): void {
    this.config = config;
  }

  open(conn: ConnectionFacts, deps: SessionDeps, ruleSet: number): SessionTap | null {
    const c = this.config;
    if (!c.record.enabled) return null;
    const started = deps.now();
    return new RecordingTap(conn, deps, ruleSet, { bodies: c.record.bodies, bodyLimit: c.limits.bodyLimit, done: (s) => this.writer.push(started, s) });
  }

  close(): Promise<void> {
    return this.writer.flush();
  }
}
