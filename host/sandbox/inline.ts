/**
 * The inline tier: every rule also has a sandbox on the main thread, with a short
 * deadline (INLINE_MS) and a small stack. Most calls finish there in microseconds and
 * never cross a thread. A call that needs more time or stack than the inline tier gives
 * is stopped within INLINE_MS and the rest of the chain runs in the worker pool with the
 * rule's full limits; the client then counts as suspect and its calls go straight to the
 * pool's suspect lane. So the SMTP event loop is never held for more than a few ms.
 */
import type { Phase } from '../../sdk/index.js';
import type { ChainLink, RuleCode, RuleResult } from './protocol.js';
import { RuleSandbox } from './rule-sandbox.js';

/** CPU time a call may take on the main thread before it moves to a worker. */
export const INLINE_MS = 3;
/** Guest stack on the main thread: deeper recursion would reach the host's own stack. */
const INLINE_STACK_KB = 256;
/** Top-level code must define the rule quickly to run inline; else the rule is worker-only. */
const INLINE_LOAD_MS = 20;

export interface InlineRun {
  results: RuleResult[];
  /** Index in the chain where the worker pool must take over, or -1 when done. */
  escalateAt: number;
}

export class InlineTier {
  /** Per version, per rule id: its inline sandbox and full limits (absent = worker-only). */
  private versions = new Map<number, Map<string, { sb: RuleSandbox; full: RuleCode['limits'] }>>();

  async install(version: number, rules: RuleCode[]): Promise<void> {
    const map = new Map<string, { sb: RuleSandbox; full: RuleCode['limits'] }>();
    for (const r of rules) {
      const limits = { ...r.limits, timeoutMs: Math.min(r.limits.timeoutMs, INLINE_MS), stackKb: Math.min(r.limits.stackKb, INLINE_STACK_KB) };
      try {
        map.set(r.id, { sb: await RuleSandbox.create({ ...r, limits, loadTimeoutMs: INLINE_LOAD_MS }), full: r.limits });
      } catch {
        // Loads in the worker pool (it was inspected there); runs there only.
      }
    }
    this.versions.set(version, map);
  }

  release(version: number): void {
    for (const { sb } of this.versions.get(version)?.values() ?? []) sb.dispose();
    this.versions.delete(version);
  }

  run(version: number, phase: Phase, chain: ChainLink[], event: string): InlineRun {
    const rules = this.versions.get(version);
    const results: RuleResult[] = [];
    for (let i = 0; i < chain.length; i++) {
      const link = chain[i]!;
      const entry = rules?.get(link.id);
      if (!entry || entry.sb.pending) return { results, escalateAt: i };
      const r = entry.sb.call(link.id, phase, event);
      // Out of inline time or stack, but within the rule's own limits: a worker finishes it.
      if ((r.outcome === 'timeout' && entry.full.timeoutMs > INLINE_MS) || (r.outcome === 'stack-overflow' && entry.full.stackKb > INLINE_STACK_KB) || r.outcome === 'crash') {
        return { results, escalateAt: i };
      }
      results.push(r);
      if (r.outcome === 'ok' ? r.verdict.action !== 'next' && link.stopOnVerdict : link.stopOnFailure) break;
    }
    return { results, escalateAt: -1 };
  }
}
