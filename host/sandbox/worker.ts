/**
 * A sandbox worker thread: holds the rule sandboxes of every live RuleSet version and
 * runs phase chains for the main thread. Runs in a worker so that a rule spinning until
 * its deadline stalls only the calls queued here, never the SMTP event loop, and with a
 * large thread stack so QuickJS's own stack limit always trips first.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ChainRunner } from './chain.js';
import { CLAIM_RING, STORE_HEADER_BYTES, type CallRequest, type ChainLink, type FromWorker, type RuleResult, type ToWorker, type WorkerInit } from './protocol.js';
import { RuleSandbox } from './rule-sandbox.js';

const port = parentPort!;
const init = workerData as WorkerInit;
const claims = new Int32Array(init.claims);
const running = new Int32Array(init.running);
const post = (m: FromWorker): void => port.postMessage(m);

/**
 * Results wait here until the batch is done, so one message carries them all; a call
 * that runs long sends them early (onBusy, from the interrupt handler), so a fast call
 * is never held back by a slow one after it.
 */
let outbox: { seq: number; results: RuleResult[] }[] = [];
function flushResults(): void {
  if (!outbox.length) return;
  post({ t: 'results', calls: outbox });
  outbox = [];
}

const storeFlag = new Int32Array(init.store, 0, 3);
const storeBytes = new Uint8Array(init.store, STORE_HEADER_BYTES);
// Random start: a worker that replaced a dead one on the same channel never takes its late answers.
let storeSeq = (Math.random() * 0x7fffffff) | 0;
/** Longest a rule waits for the main thread to answer a store operation. */
const STORE_WAIT_MS = 500;

/**
 * A rule's store operation, answered synchronously: the main thread owns the store, so
 * the worker asks it and blocks (only this worker, only for this call) until the answer
 * is in the shared channel.
 */
function storeCall(op: string, args: unknown[], now: number): unknown {
  const seq = (storeSeq = (storeSeq + 1) | 0);
  const deadline = performance.now() + STORE_WAIT_MS;
  Atomics.store(storeFlag, 0, 0);
  post({ t: 'store', seq, op, args, now });
  // The answer must be this call's: one to an earlier call that timed out can still arrive
  // first, and is skipped (it once answered a later `blacklisted` with a count).
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0 || Atomics.wait(storeFlag, 0, 0, left) === 'timed-out') throw new Error(`the store did not answer within ${STORE_WAIT_MS} ms`);
    if (Atomics.load(storeFlag, 2) === seq) break;
    Atomics.store(storeFlag, 0, 0);
    if (Atomics.load(storeFlag, 2) === seq) break; // ours landed between the check and the reset
  }
  const answer = JSON.parse(new TextDecoder().decode(storeBytes.slice(0, Atomics.load(storeFlag, 1)))) as { value?: unknown; error?: string };
  if (answer.error !== undefined) throw new TypeError(answer.error);
  return answer.value;
}

const runner = new ChainRunner({ onBusy: flushResults, storeCall });
/** Per session, the latest session and envelope parts sent to this worker. */
const parts = new Map<string, { session: string; envelope: string }>();
/** The chains the pool sent, by number, with their RuleSet version. */
const chains = new Map<number, { version: number; links: ChainLink[] }>();

async function runCall(call: CallRequest): Promise<void> {
  // Take the parts before the claim: the pool counts on this worker holding what it was
  // sent, whether it runs this call or another worker claimed it first.
  let p = parts.get(call.sid);
  if (!p || call.session !== null || call.envelope !== null) {
    p = { session: call.session ?? p?.session ?? '{}', envelope: call.envelope ?? p?.envelope ?? '' };
    parts.set(call.sid, p);
  }
  // The pool hands calls queued behind a stuck rule to another worker: a call runs once,
  // in whichever worker claims it first.
  if (Atomics.compareExchange(claims, call.seq % CLAIM_RING, 0, init.index + 1) !== 0) return;
  Atomics.store(running, init.index, call.seq);
  let ev = { sid: call.sid, time: call.time, session: p.session, envelope: p.envelope, rest: call.rest };
  const results: RuleResult[] = [];
  const chain = chains.get(call.chain)?.links ?? [];
  for (let from = 0; ; ) {
    const r = runner.callChain(call.version, call.phase, chain, ev, from);
    results.push(...r.results);
    if (r.stoppedAt < 0) break;
    ev = r.event;
    const link = chain[r.stoppedAt]!;
    const sb = runner.sandbox(call.version, link.id);
    if (sb?.pending) {
      await sb.pending; // rebuilding after a fault: wait, then run it
      from = r.stoppedAt;
      continue;
    }
    results.push({ id: link.id, outcome: 'crash', verdict: { action: 'next' }, effects: {}, ms: 0, error: 'rule not installed in this worker' });
    if (link.afterFailure === 'stop') break;
    from = r.stoppedAt + 1;
  }
  Atomics.store(running, init.index, 0);
  outbox.push({ seq: call.seq, results });
}

async function handle(msg: ToWorker): Promise<void> {
  switch (msg.t) {
    case 'calls': {
      for (const [id, version, links] of msg.chains) chains.set(id, { version, links });
      for (const call of msg.calls) await runCall(call);
      flushResults();
      for (const sid of msg.drops) {
        parts.delete(sid);
        runner.endSession(sid);
      }
      return;
    }
    case 'inspect': {
      try {
        const sb = await RuleSandbox.create([{ file: msg.file, code: msg.code, optionsJson: null, limits: { timeoutMs: 1000, memoryMb: 64, stackKb: 512 } }]);
        const meta = sb.meta;
        sb.dispose();
        return post({ t: 'inspected', seq: msg.seq, meta });
      } catch (e) {
        return post({ t: 'inspected', seq: msg.seq, error: (e as Error).message });
      }
    }
    case 'install':
      return post({ t: 'installed', seq: msg.seq, ...(await runner.install(msg.version, msg.rules)) });
    case 'release':
      for (const [id, c] of chains) if (c.version === msg.version) chains.delete(id);
      return runner.release(msg.version);
    case 'stats':
      return post({ t: 'stats', seq: msg.seq, modules: runner.modules, versions: runner.versionList() });
  }
}

// Messages are handled strictly one after another: a QuickJS call is synchronous, and
// an install or rebuild must finish before the calls queued behind it.
let queue: Promise<void> = Promise.resolve();
port.on('message', (msg: ToWorker) => {
  queue = queue.then(() => handle(msg)).catch((e: unknown) => {
    // A bug here must not kill the worker silently: report and keep serving.
    console.error('sandbox worker error', e);
  });
});
post({ t: 'ready' });
