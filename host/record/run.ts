/**
 * A replay run: the candidate RuleSet loaded into its own sandbox pool (the config's
 * rules, in real workers), a store for the run (a read-only snapshot of the host's, or
 * empty), and recorded sessions replayed many at once: sessions are independent, so
 * while one waits for a worker the next is already in another (the pool spreads calls
 * over its workers). Nothing is written to the host's store, spool or record.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import type { RecordedSession } from '../../sdk/index.js';
import type { Config } from '../config/config.js';
import { Metrics } from '../metrics.js';
import { Pipeline } from '../pipeline/pipeline.js';
import { loadRuleSet, type RuleSet } from '../pipeline/ruleset.js';
import { Sandbox } from '../sandbox/sandbox.js';
import { SessionPolicy } from '../smtp/session.js';
import { storeAccess } from '../store/access.js';
import type { StoreBackend } from '../store/ports.js';
import { applyMailboxConfig, MemoryStore } from '../store/store.js';
import { replaySession, type ReplayDeps, type ReplayedSession } from './replay.js';

/** The store a replay's rules see: the host's as it is now (read, never written), or an empty one. */
export type ReplayStore = 'snapshot' | 'empty';

/**
 * The host's store, read once and never written: the lists, mailboxes, blacklist and
 * remembered values as they are. Watchlist counters are left out: replaying the sessions
 * in order counts them again (the snapshot's already hold the recorded sessions' hits).
 */
async function snapshot(config: Config): Promise<{ store: MemoryStore; note: string }> {
  const file = join(resolve(config.dataDir), 'portcullis.db');
  if (!existsSync(file)) return { store: new MemoryStore(), note: `no store at ${file}: an empty one` };
  const { SqliteBackend } = await import('../store/sqlite.js'); // sqlite3's native module, only here
  const db = await SqliteBackend.open(file);
  const readOnly: StoreBackend = {
    load: async (now) => ({ ...(await db.load(now)), watch: [] }),
    write: async () => undefined,
    close: async () => undefined,
  };
  const store = await MemoryStore.open(readOnly);
  await db.close();
  return { store, note: `a snapshot of ${file} (watchlist counters left out)` };
}

/**
 * Rule deadlines in a replay, times the config's: a replay keeps the workers busy with
 * many sessions at once (and shares the machine with the live host), so a rule may be
 * held off its CPU past a 50 ms deadline it meets on the live host; a timeout there would
 * show as a change that no edit made. A runaway rule still stops, 10 times later.
 */
export const REPLAY_DEADLINE_FACTOR = 10;

/** The config with every rule's deadline `factor` times longer. */
function slower(c: Config, factor: number): Config {
  const settings = Object.fromEntries(Object.entries(c.rules.settings).map(([k, s]) => [k, s.timeoutMs === undefined ? s : { ...s, timeoutMs: s.timeoutMs * factor }]));
  return { ...c, rules: { ...c.rules, defaults: { ...c.rules.defaults, timeoutMs: c.rules.defaults.timeoutMs * factor }, settings } };
}

export interface ReplayRunOptions {
  config: Config;
  store: ReplayStore;
  /** Sandbox workers (default: the config's sandbox.workers). */
  workers?: number;
  /** Sessions in flight at once (default 64 per worker). */
  concurrency?: number;
}

export class ReplayRun {
  private constructor(
    readonly ruleSet: RuleSet,
    private readonly deps: ReplayDeps,
    private readonly sandbox: Sandbox,
    private readonly memory: MemoryStore,
    readonly concurrency: number,
    /** Which store the rules see, in words. */
    readonly storeNote: string,
  ) {}

  static async open(o: ReplayRunOptions): Promise<ReplayRun> {
    const { store, note } = o.store === 'snapshot' ? await snapshot(o.config) : { store: new MemoryStore(), note: 'an empty store' };
    applyMailboxConfig(store, o.config);
    const workers = o.workers ?? o.config.sandbox.workers;
    const sandbox = new Sandbox({ workers, storeCall: storeAccess(store) });
    try {
      const log = pino({ level: 'silent' });
      const metrics = new Metrics(false);
      const ruleSet = await loadRuleSet(slower(o.config, REPLAY_DEADLINE_FACTOR), sandbox, 1);
      const deps: ReplayDeps = { policy: new SessionPolicy(o.config), pipeline: new Pipeline(sandbox, log, metrics), store, log, metrics };
      return new ReplayRun(ruleSet, deps, sandbox, store, o.concurrency ?? workers * 64, note);
    } catch (e) {
      await sandbox.close();
      throw e;
    }
  }

  /** The rules that run, in order. */
  get rules(): string[] {
    return this.ruleSet.rules.map((r) => r.name);
  }

  replay(rec: RecordedSession): Promise<ReplayedSession> {
    return replaySession(rec, this.ruleSet, this.deps);
  }

  /** Replays every session of `sessions` (in their order, up to `concurrency` at once); `done` gets each as it finishes. */
  async all(sessions: AsyncIterable<RecordedSession> | Iterable<RecordedSession>, done: (rec: RecordedSession, r: ReplayedSession) => void): Promise<void> {
    const running = new Set<Promise<void>>();
    for await (const rec of sessions) {
      const p: Promise<void> = this.replay(rec).then((r) => done(rec, r)).finally(() => running.delete(p));
      running.add(p);
      if (running.size >= this.concurrency) await Promise.race(running);
    }
    await Promise.all(running);
  }

  async close(): Promise<void> {
    await this.sandbox.close();
    await this.memory.close();
  }
}
