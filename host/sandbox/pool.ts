/**
 * The main thread's side of the sandbox: a pool of worker threads, each holding every
 * live RuleSet's rule sandboxes. A phase's chain of rules runs as one message to the
 * least busy worker, so one rule stuck at its deadline delays only the calls queued on
 * its worker, and a worker that stops answering is replaced.
 */
import { Worker } from 'node:worker_threads';
import type { Phase } from '../../sdk/index.js';
import type { ChainLink, FromWorker, RuleCode, RuleMeta, RuleResult, ToWorker } from './protocol.js';

export interface PoolOptions {
  /** Worker threads (default 2). */
  workers: number;
  /** Grace on top of the rules' own deadlines before a silent worker is declared hung. */
  watchdogGraceMs?: number;
}

/** What the pool reports about itself (sandboxes per worker, restarts). */
export interface PoolStats {
  workers: { modules: number; versions: number[] }[];
  restarts: number;
}

interface Pending {
  resolve: (m: FromWorker) => void;
  /** How long this message may take once it reaches the head of the worker's queue. */
  budgetMs: number;
  /** For calls: answers to give if the worker dies. */
  onCrash?: () => void;
}

class Slot {
  worker!: Worker;
  pending = new Map<number, Pending>();
  /** When the oldest pending message became the head of the queue. */
  headSince = 0;
  constructor(readonly index: number) {}
}

export class SandboxPool {
  private slots: Slot[] = [];
  private seq = 0;
  private versions = new Map<number, RuleCode[]>();
  private restarts = 0;
  private closed = false;
  private watchdog: NodeJS.Timeout;

  constructor(private readonly opts: PoolOptions) {
    for (let i = 0; i < Math.max(1, opts.workers); i++) {
      const slot = new Slot(i);
      this.spawn(slot);
      this.slots.push(slot);
    }
    this.watchdog = setInterval(() => this.checkHung(), 200);
    this.watchdog.unref();
  }

  private spawn(slot: Slot): void {
    // A 16 MB thread stack: wasm frames of deep guest recursion live on it, and QuickJS's
    // own limit (stackKb) must trip long before it runs out.
    const w = new Worker(new URL('./worker.js', import.meta.url), { resourceLimits: { stackSizeMb: 16 } });
    slot.worker = w;
    w.on('message', (m: FromWorker) => {
      if (!('seq' in m)) return;
      const p = slot.pending.get(m.seq);
      if (!p) return;
      slot.pending.delete(m.seq);
      slot.headSince = performance.now();
      p.resolve(m);
    });
    w.on('error', (e) => console.error(`sandbox worker ${slot.index} failed:`, e));
    w.on('exit', () => {
      if (slot.worker === w) this.replace(slot, 'exited');
    });
  }

  /** Replaces a dead or hung worker: its queued calls fail with `crash`, live RuleSets are reinstalled. */
  private replace(slot: Slot, why: string): void {
    if (this.closed) return;
    this.restarts++;
    const old = slot.worker;
    const pending = [...slot.pending.values()];
    slot.pending.clear();
    this.spawn(slot);
    void old.terminate();
    for (const p of pending) p.onCrash?.();
    for (const [version, rules] of this.versions) {
      void this.send(slot, { t: 'install', seq: 0, version, rules }, 60_000);
    }
    console.error(`sandbox worker ${slot.index} ${why}; replaced`);
  }

  private checkHung(): void {
    const now = performance.now();
    for (const slot of this.slots) {
      const head = slot.pending.values().next().value;
      if (head && now - slot.headSince > head.budgetMs) this.replace(slot, `did not answer within ${head.budgetMs} ms`);
    }
  }

  private send(slot: Slot, msg: ToWorker & { seq: number }, budgetMs: number, onCrash?: (resolve: (m: FromWorker) => void) => void): Promise<FromWorker> {
    const seq = ++this.seq;
    return new Promise((resolve) => {
      if (slot.pending.size === 0) slot.headSince = performance.now();
      slot.pending.set(seq, { resolve, budgetMs, onCrash: onCrash && (() => onCrash(resolve)) });
      slot.worker.postMessage({ ...msg, seq });
    });
  }

  /** The worker with the fewest queued messages. */
  private pick(): Slot {
    let best = this.slots[0]!;
    for (const s of this.slots) if (s.pending.size < best.pending.size) best = s;
    return best;
  }

  /** Evaluates a compiled rule once to read what it declares. Throws with the rule's error. */
  async inspect(file: string, code: string): Promise<RuleMeta> {
    const m = await this.send(this.pick(), { t: 'inspect', seq: 0, file, code }, 30_000, (r) => r({ t: 'inspected', seq: 0, error: `${file}: the sandbox crashed while loading it` }));
    if (m.t !== 'inspected' || !m.meta) throw new Error(m.t === 'inspected' ? m.error : 'unexpected reply');
    return m.meta;
  }

  /** Loads a RuleSet version into every worker. Throws listing every rule that failed. */
  async install(version: number, rules: RuleCode[]): Promise<void> {
    this.versions.set(version, rules);
    const replies = await Promise.all(this.slots.map((s) => this.send(s, { t: 'install', seq: 0, version, rules }, 60_000, (r) => r({ t: 'installed', seq: 0, errors: [{ id: '*', error: 'sandbox worker crashed while installing' }] }))));
    const errors = replies.flatMap((m) => (m.t === 'installed' ? m.errors : []));
    if (errors.length) {
      this.release(version);
      throw new Error(errors.map((e) => e.error).join('\n'));
    }
  }

  /** Frees a RuleSet version's sandboxes in every worker. */
  release(version: number): void {
    this.versions.delete(version);
    for (const s of this.slots) s.worker.postMessage({ t: 'release', version } satisfies ToWorker);
  }

  /** Runs one phase's chain; resolves with one result per rule called, in order. */
  async run(version: number, phase: Phase, chain: ChainLink[], event: string, budgetMs: number): Promise<RuleResult[]> {
    const crashed = (r: (m: FromWorker) => void): void =>
      r({ t: 'result', seq: 0, results: chain.map((l) => ({ id: l.id, outcome: 'crash', verdict: { action: 'next' }, effects: {}, ms: 0, error: 'sandbox worker died or hung' })) });
    const m = await this.send(this.pick(), { t: 'call', seq: 0, version, phase, chain, event }, budgetMs + (this.opts.watchdogGraceMs ?? 1000), crashed);
    return m.t === 'result' ? m.results : [];
  }

  async stats(): Promise<PoolStats> {
    const workers = await Promise.all(this.slots.map(async (s) => {
      const m = await this.send(s, { t: 'stats', seq: 0 }, 10_000, (r) => r({ t: 'stats', seq: 0, modules: 0, versions: [] }));
      return m.t === 'stats' ? { modules: m.modules, versions: m.versions } : { modules: 0, versions: [] };
    }));
    return { workers, restarts: this.restarts };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
