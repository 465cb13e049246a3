/**
 * A sandbox worker thread: holds the rule sandboxes of every live RuleSet version and
 * runs a phase's chain of rules for the main thread. Runs in a worker so that a rule
 * spinning until its deadline stalls only the calls queued here, never the SMTP event
 * loop, and with a large thread stack so QuickJS's own stack limit always trips first.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { CLAIM_RING, type CallRequest, type FromWorker, type RuleResult, type ToWorker, type WorkerInit } from './protocol.js';
import { RuleSandbox } from './rule-sandbox.js';

const port = parentPort!;
const init = workerData as WorkerInit;
const claims = new Int32Array(init.claims);
const running = new Int32Array(init.running);
const versions = new Map<number, Map<string, RuleSandbox>>();
const post = (m: FromWorker): void => port.postMessage(m);

/**
 * Runs one call unless another worker claimed it first (the pool hands calls queued
 * behind a stuck rule to another worker; whoever claims a call runs it, once).
 */
async function runCall(call: CallRequest): Promise<void> {
  if (Atomics.compareExchange(claims, call.seq % CLAIM_RING, 0, init.index + 1) !== 0) return;
  Atomics.store(running, init.index, call.seq);
  const rules = versions.get(call.version);
  const results: RuleResult[] = [];
  for (const link of call.chain) {
    const sb = rules?.get(link.id);
    if (!sb) {
      results.push({ id: link.id, outcome: 'crash', verdict: { action: 'next' }, effects: {}, ms: 0, error: 'rule not installed in this worker' });
      if (link.stopOnFailure) break;
      continue;
    }
    if (sb.pending) await sb.pending;
    const r = sb.call(link.id, call.phase, call.event);
    results.push(r);
    if (r.outcome === 'ok' ? r.verdict.action !== 'next' && link.stopOnVerdict : link.stopOnFailure) break;
  }
  Atomics.store(running, init.index, 0);
  outbox.push({ seq: call.seq, results });
}

/**
 * Results wait here until the batch is done, so one message carries them all; a call
 * that runs long sends them early (see onBusy), so a fast call is never held back by a
 * slow one after it.
 */
let outbox: { seq: number; results: RuleResult[] }[] = [];
function flushResults(): void {
  if (!outbox.length) return;
  post({ t: 'results', calls: outbox });
  outbox = [];
}

async function handle(msg: ToWorker): Promise<void> {
  switch (msg.t) {
    case 'calls': {
      for (const call of msg.calls) await runCall(call);
      return flushResults();
    }
    case 'inspect': {
      try {
        const sb = await RuleSandbox.create({ file: msg.file, code: msg.code, optionsJson: '{}', limits: { timeoutMs: 1000, memoryMb: 64, stackKb: 512 } });
        const meta = sb.meta;
        sb.dispose();
        return post({ t: 'inspected', seq: msg.seq, meta });
      } catch (e) {
        return post({ t: 'inspected', seq: msg.seq, error: (e as Error).message });
      }
    }
    case 'install': {
      const rules = new Map<string, RuleSandbox>();
      const errors: { id: string; error: string }[] = [];
      for (const r of msg.rules) {
        try {
          rules.set(r.id, await RuleSandbox.create(r, flushResults));
        } catch (e) {
          errors.push({ id: r.id, error: (e as Error).message });
        }
      }
      versions.set(msg.version, rules);
      return post({ t: 'installed', seq: msg.seq, errors });
    }
    case 'release': {
      for (const sb of versions.get(msg.version)?.values() ?? []) sb.dispose();
      versions.delete(msg.version);
      return;
    }
    case 'stats': {
      let modules = 0;
      for (const v of versions.values()) modules += v.size;
      return post({ t: 'stats', seq: msg.seq, modules, versions: [...versions.keys()] });
    }
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
