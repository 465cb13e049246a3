/**
 * The inline tier (sandbox.inline): every rule also has a sandbox on the main thread,
 * with a short deadline (INLINE_MS) and a small stack. Most calls finish there and never
 * cross a thread. A call that needs more time or stack than that is stopped within
 * INLINE_MS and the rest of the chain runs in the worker pool with the rule's full limits.
 */
import type { Phase } from '../../sdk/index.js';
import { ChainRunner, type ChainRun, type EventParts } from './chain.js';
import type { StoreCall } from '../store/access.js';
import type { ChainLink, RuleCode, SandboxLimits } from './protocol.js';

/** CPU time a call may take on the main thread before it moves to a worker. */
export const INLINE_MS = 3;
/** Guest stack on the main thread: deeper recursion would reach the host's own stack. */
const INLINE_STACK_KB = 256;

export class InlineTier {
  private runner: ChainRunner;

  constructor(storeCall?: StoreCall) {
    this.runner = new ChainRunner({
      tighten: (l: SandboxLimits) => ({ ...l, timeoutMs: Math.min(l.timeoutMs, INLINE_MS), stackKb: Math.min(l.stackKb, INLINE_STACK_KB) }),
      // Top-level code must define the rule quickly to run inline; else the rule is worker-only.
      loadTimeoutMs: 20,
      storeCall,
    });
  }

  async install(version: number, rules: RuleCode[]): Promise<void> {
    await this.runner.install(version, rules); // a rule that fails here runs in workers only
  }

  release(version: number): void {
    this.runner.release(version);
  }

  endSession(sid: string): void {
    this.runner.endSession(sid);
  }

  /** Runs the chain here; `stoppedAt` ≥ 0 is where the worker pool must take over. */
  run(version: number, phase: Phase, chain: ChainLink[], ev: EventParts): ChainRun {
    return this.runner.run(version, phase, chain, ev, 0, (r, full) =>
      // Out of inline time or stack, but within the rule's own limits: a worker finishes it.
      (r.outcome === 'timeout' && full.timeoutMs > INLINE_MS) || (r.outcome === 'stack-overflow' && full.stackKb > INLINE_STACK_KB) || r.outcome === 'crash');
  }
}
