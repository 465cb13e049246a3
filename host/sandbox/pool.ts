/**
 * The main thread's side of the sandbox: a pool of worker threads, each holding every
 * live RuleSet's rule sandboxes.
 *
 * Three things keep it fast and keep a runaway rule's blast radius small:
 * - Calls made in the same turn of the event loop go to a worker as one message (the
 *   cost of crossing threads is paid per batch, not per call).
 * - A session sticks to one worker, which keeps the parts of its events that did not
 *   change (see chain.ts), unless that worker is stuck; a new session goes to the worker
 *   with the fewest unanswered calls, skipping a worker that is stuck on one call.
 * - Work stealing: when a worker has been on the same call for STEAL_MS, the calls
 *   queued behind it are sent to another worker. A call runs once: each worker claims
 *   a call in shared memory before running it and skips calls claimed elsewhere.
 * - A client whose calls ran long before is "suspect": its calls stay in the last
 *   worker's lane and are never stolen, so clients that keep rules spinning slow down
 *   each other rather than everyone.
 * A worker that stops answering altogether is replaced.
 */
import { Worker } from 'node:worker_threads';
import type { Phase } from '../../sdk/index.js';
import type { EventParts } from './chain.js';
import type { StoreCall } from '../store/access.js';
import { CLAIM_RING, STORE_CHANNEL_BYTES, STORE_HEADER_BYTES, type CallRequest, type ChainDef, type ChainLink, type FromWorker, type RuleCode, type RuleMeta, type RuleResult, type ToWorker, type WorkerInit } from './protocol.js';

export interface PoolOptions {
  /** Worker threads (default 2). */
  workers: number;
  /** Answers rules' store operations (the store lives in this thread). */
  storeCall?: StoreCall;
  /** Grace on top of the rules' own deadlines before a silent worker is declared hung. */
  watchdogGraceMs?: number;
}

/** What the pool reports about itself (sandboxes per worker, restarts). */
export interface PoolStats {
  workers: { modules: number; versions: number[] }[];
  restarts: number;
  steals: number;
}

/** After this long on one call, a worker's queued calls are handed to another worker. */
const STEAL_MS = 3;

/** The V8 young generation of a worker thread, MB. */
const WORKER_YOUNG_MB = 2;

interface PendingCall {
  req: CallRequest;
  chain: ChainLink[];
  /** The whole event, to rebuild the request for another worker (after a steal). */
  parts: EventParts;
  resolve: (r: RuleResult[]) => void;
  /** The worker it was last sent to. */
  slot: Slot;
  sentAt: number;
  budgetMs: number;
  /** From a client whose calls ran long before: kept in the last worker's lane. */
  suspect: boolean;
}

interface PendingControl {
  resolve: (m: FromWorker) => void;
  fail: () => FromWorker;
}

class Slot {
  worker!: Worker;
  /** Store channel shared with this worker (see worker.ts storeCall). */
  store = new SharedArrayBuffer(STORE_HEADER_BYTES + STORE_CHANNEL_BYTES);
  /** Calls sent here and not answered yet, in send order. */
  calls = new Map<number, PendingCall>();
  control = new Map<number, PendingControl>();
  outbox: CallRequest[] = [];
  /** Chains to send with the outbox, and those this worker already has. */
  newChains: ChainDef[] = [];
  chains = new Set<number>();
  /** Sessions that ended, for the worker to forget. */
  drops: string[] = [];
  /** Per session, the parts this worker holds (it keeps the latest it was sent). */
  known = new Map<string, { session: string; envelope: string }>();
  /** What `running` showed at the last look, and since when. */
  seenSeq = 0;
  seenSince = 0;
  timer: NodeJS.Timeout | null = null;
  constructor(readonly index: number) {}
}

export class SandboxPool {
  private slots: Slot[] = [];
  private seq = 0;
  private versions = new Map<number, RuleCode[]>();
  private restarts = 0;
  private steals = 0;
  private closed = false;
  private flushScheduled = false;
  private readonly claims = new Int32Array(new SharedArrayBuffer(CLAIM_RING * 4));
  private readonly running: Int32Array;
  private readonly calls = new Map<number, PendingCall>();
  /** Sessions stick to a worker, which then already holds most of their events. */
  private readonly affinity = new Map<string, Slot>();
  /** A number per chain (the pipeline keeps each phase's chain as one array per RuleSet). */
  private readonly chainIds = new WeakMap<ChainLink[], number>();
  private chainSeq = 0;
  private watchdog: NodeJS.Timeout;

  constructor(private readonly opts: PoolOptions) {
    const n = Math.max(1, opts.workers);
    this.running = new Int32Array(new SharedArrayBuffer(n * 4));
    for (let i = 0; i < n; i++) {
      const slot = new Slot(i);
      this.spawn(slot);
      this.slots.push(slot);
    }
    this.watchdog = setInterval(() => this.checkHung(), 200);
    this.watchdog.unref();
  }

  private spawn(slot: Slot): void {
    const init: WorkerInit = { index: slot.index, claims: this.claims.buffer as SharedArrayBuffer, running: this.running.buffer as SharedArrayBuffer, store: slot.store };
    // A 16 MB thread stack: wasm frames of deep guest recursion live on it, and QuickJS's
    // own limit (stackKb) must trip long before it runs out. A small young generation: a
    // worker's own JS makes only short-lived strings (rules allocate in QuickJS's wasm
    // memory), and V8's default reserves tens of MB per worker for it (peak RSS with the
    // built-in rules at 20 sessions, bench's many/conn load: 188 MB → 170 MB).
    const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: init, resourceLimits: { stackSizeMb: 16, maxYoungGenerationSizeMb: WORKER_YOUNG_MB } });
    slot.worker = w;
    Atomics.store(this.running, slot.index, 0);
    w.on('message', (m: FromWorker) => this.onMessage(slot, m));
    w.on('error', (e) => console.error(`sandbox worker ${slot.index} failed:`, e));
    w.on('exit', () => {
      if (slot.worker === w) this.replace(slot, 'exited');
    });
  }

  /** Answers a worker's store operation through its channel and wakes it. */
  private answerStore(slot: Slot, m: { seq: number; op: string; args: unknown[]; now: number }): void {
    let answer: string;
    try {
      if (!this.opts.storeCall) throw new Error('no store');
      answer = JSON.stringify({ value: this.opts.storeCall(m.op, m.args, m.now) ?? null });
    } catch (e) {
      answer = JSON.stringify({ error: (e as Error).message });
    }
    let bytes = new TextEncoder().encode(answer);
    if (bytes.length > STORE_CHANNEL_BYTES) bytes = new TextEncoder().encode(JSON.stringify({ error: 'the store answer is too large' }));
    const flag = new Int32Array(slot.store, 0, 3);
    new Uint8Array(slot.store, STORE_HEADER_BYTES).set(bytes);
    Atomics.store(flag, 1, bytes.length);
    Atomics.store(flag, 2, m.seq); // the worker takes only the answer to the call it waits on
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  }

  private onMessage(slot: Slot, m: FromWorker): void {
    if (m.t === 'store') return this.answerStore(slot, m);
    if (m.t === 'results') {
      for (const r of m.calls) {
        const call = this.calls.get(r.seq);
        if (!call) continue; // answered by another worker after a steal
        this.calls.delete(r.seq);
        call.slot.calls.delete(r.seq);
        call.resolve(r.results);
      }
      return;
    }
    if (!('seq' in m)) return;
    const p = slot.control.get(m.seq);
    if (!p) return;
    slot.control.delete(m.seq);
    p.resolve(m);
  }

  /** Replaces a dead or hung worker: its unanswered calls fail with `crash`, live RuleSets are reinstalled. */
  private replace(slot: Slot, why: string): void {
    if (this.closed) return;
    this.restarts++;
    const old = slot.worker;
    const claimedHere = slot.index + 1;
    // Its own unanswered calls, and calls it claimed after they were stolen elsewhere.
    const calls = [...this.calls.values()].filter((c) => c.slot === slot || Atomics.load(this.claims, c.req.seq % CLAIM_RING) === claimedHere);
    const control = [...slot.control.values()];
    slot.calls.clear();
    slot.control.clear();
    slot.outbox = [];
    slot.newChains = [];
    slot.chains.clear();
    slot.drops = [];
    slot.known.clear();
    for (const [sid, s] of this.affinity) if (s === slot) this.affinity.delete(sid);
    this.spawn(slot);
    void old.terminate();
    for (const c of calls) {
      this.calls.delete(c.req.seq);
      c.slot.calls.delete(c.req.seq);
      c.resolve(c.chain.map((l) => ({ id: l.id, outcome: 'crash', verdict: { action: 'next' }, effects: {}, ms: 0, error: `sandbox worker ${why}` })));
    }
    for (const p of control) p.resolve(p.fail());
    for (const [version, rules] of this.versions) void this.control(slot, { t: 'install', seq: 0, version, rules }, () => ({ t: 'installed', seq: 0, errors: [], needs: {} }));
    console.error(`sandbox worker ${slot.index} ${why}; replaced`);
  }

  private checkHung(): void {
    const now = performance.now();
    for (const slot of this.slots) {
      for (const c of slot.calls.values()) {
        if (now - c.sentAt > c.budgetMs + 5000) {
          this.replace(slot, `did not answer within ${Math.round(now - c.sentAt)} ms`);
          break;
        }
      }
    }
  }

  /** True when the worker has been running the same call for STEAL_MS or more. */
  private stuck(slot: Slot, now: number): boolean {
    const seq = Atomics.load(this.running, slot.index);
    if (seq !== slot.seenSeq) {
      slot.seenSeq = seq;
      slot.seenSince = now;
      return false;
    }
    return seq !== 0 && now - slot.seenSince >= STEAL_MS;
  }

  /** The worker with the fewest unanswered calls that is not stuck (any, if all are). */
  private pick(now: number): Slot {
    let best: Slot | undefined;
    for (const s of this.slots) {
      if (this.slots.length > 1 && this.stuck(s, now)) continue;
      if (!best || s.calls.size + s.outbox.length < best.calls.size + best.outbox.length) best = s;
    }
    return best ?? this.slots[0]!;
  }

  private enqueue(slot: Slot, call: PendingCall): void {
    // Send only the parts this worker does not hold yet for the session.
    const p = call.parts;
    const known = slot.known.get(p.sid);
    call.req = { ...call.req, session: known?.session === p.session ? null : p.session, envelope: known?.envelope === p.envelope ? null : p.envelope };
    slot.known.set(p.sid, { session: p.session, envelope: p.envelope });
    if (!slot.chains.has(call.req.chain)) {
      slot.chains.add(call.req.chain);
      slot.newChains.push([call.req.chain, call.req.version, call.chain]);
    }
    call.slot = slot;
    slot.calls.set(call.req.seq, call);
    slot.outbox.push(call.req);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    for (const slot of this.slots) {
      if (!slot.outbox.length && !slot.drops.length) continue;
      slot.worker.postMessage({ t: 'calls', chains: slot.newChains, calls: slot.outbox, drops: slot.drops } satisfies ToWorker);
      if (slot.outbox.length) this.armStealTimer(slot);
      slot.outbox = [];
      slot.newChains = [];
      slot.drops = [];
    }
  }

  /** The session ended: its workers may forget what they hold for it. */
  endSession(sid: string): void {
    this.affinity.delete(sid);
    for (const slot of this.slots) {
      if (slot.known.delete(sid)) {
        slot.drops.push(sid);
        this.scheduleFlush();
      }
    }
  }

  private armStealTimer(slot: Slot): void {
    if (slot.timer || this.slots.length < 2 || this.closed) return;
    slot.timer = setTimeout(() => {
      slot.timer = null;
      if (!slot.calls.size) return;
      const now = performance.now();
      if (this.stuck(slot, now)) this.steal(slot, now);
      this.armStealTimer(slot);
    }, STEAL_MS);
    slot.timer.unref(); // pending calls keep the process alive by themselves, not this timer
  }

  /** Sends the calls queued behind a stuck worker's current call to other workers. */
  private steal(slot: Slot, now: number): void {
    const current = Atomics.load(this.running, slot.index);
    for (const call of [...slot.calls.values()]) {
      if (call.req.seq === current || call.suspect) continue;
      const target = this.pick(now);
      if (target === slot) return;
      slot.calls.delete(call.req.seq);
      this.steals++;
      this.enqueue(target, call);
    }
  }

  private control(slot: Slot, msg: ToWorker & { seq: number }, fail: () => FromWorker): Promise<FromWorker> {
    const seq = ++this.seq;
    return new Promise((resolve) => {
      slot.control.set(seq, { resolve, fail });
      slot.worker.postMessage({ ...msg, seq });
    });
  }

  /**
   * Sends one phase's chain to a worker; resolves with one result per rule called, in order.
   * `suspect` calls (from a client that made a rule run long before) all go to the last
   * worker, so clients that keep rules spinning queue behind each other, not behind
   * everyone else.
   */
  dispatch(version: number, phase: Phase, chain: ChainLink[], parts: EventParts, budgetMs: number, suspect = false): Promise<RuleResult[]> {
    const seq = ++this.seq;
    Atomics.store(this.claims, seq % CLAIM_RING, 0);
    const now = performance.now();
    let slot: Slot;
    if (suspect) slot = this.slots[this.slots.length - 1]!;
    else {
      const affine = this.affinity.get(parts.sid);
      slot = affine && !(this.slots.length > 1 && this.stuck(affine, now)) ? affine : this.pick(now);
      this.affinity.set(parts.sid, slot);
    }
    return new Promise((resolve) => {
      let id = this.chainIds.get(chain);
      if (id === undefined) this.chainIds.set(chain, (id = ++this.chainSeq));
      const req: CallRequest = { seq, version, phase, chain: id, sid: parts.sid, time: parts.time, session: null, envelope: null, rest: parts.rest };
      const call: PendingCall = { req, chain, parts, resolve, slot, sentAt: now, budgetMs: budgetMs + (this.opts.watchdogGraceMs ?? 1000), suspect };
      this.calls.set(seq, call);
      this.enqueue(slot, call);
    });
  }

  /** Evaluates a compiled rule once to read what it declares. Throws with the rule's error. */
  async inspect(file: string, code: string): Promise<RuleMeta> {
    const m = await this.control(this.pick(performance.now()), { t: 'inspect', seq: 0, file, code }, () => ({ t: 'inspected', seq: 0, error: `${file}: the sandbox crashed while loading it` }));
    if (m.t !== 'inspected' || !m.meta) throw new Error(m.t === 'inspected' ? m.error : 'unexpected reply');
    return m.meta;
  }

  /** Loads a RuleSet version into every worker; returns each rule's needs. Throws listing every rule that failed. */
  async install(version: number, rules: RuleCode[]): Promise<Record<string, string[]>> {
    this.versions.set(version, rules);
    const replies = await Promise.all(this.slots.map((s) => this.control(s, { t: 'install', seq: 0, version, rules }, () => ({ t: 'installed', seq: 0, errors: [{ id: '*', error: 'sandbox worker crashed while installing' }], needs: {} }))));
    const errors = replies.flatMap((m) => (m.t === 'installed' ? m.errors : []));
    if (errors.length) {
      this.release(version);
      throw new Error(errors.map((e) => e.error).join('\n'));
    }
    const first = replies[0];
    return first?.t === 'installed' ? first.needs : {};
  }

  /** Frees a RuleSet version's sandboxes in every worker. */
  release(version: number): void {
    this.versions.delete(version);
    // The workers forget the version's chains with it (see worker.ts); a chain is never
    // used again once its version is released, so the slots need not track which went.
    for (const s of this.slots) s.worker.postMessage({ t: 'release', version } satisfies ToWorker);
  }

  async stats(): Promise<PoolStats> {
    const workers = await Promise.all(this.slots.map(async (s) => {
      const m = await this.control(s, { t: 'stats', seq: 0 }, () => ({ t: 'stats', seq: 0, modules: 0, versions: [] }));
      return m.t === 'stats' ? { modules: m.modules, versions: m.versions } : { modules: 0, versions: [] };
    }));
    return { workers, restarts: this.restarts, steals: this.steals };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.watchdog);
    for (const s of this.slots) if (s.timer) clearTimeout(s.timer);
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    // Calls still waiting get an answer: the sandbox is gone.
    for (const c of this.calls.values()) c.resolve(c.chain.map((l) => ({ id: l.id, outcome: 'crash', verdict: { action: 'next' }, effects: {}, ms: 0, error: 'sandbox closed' })));
    this.calls.clear();
  }
}
