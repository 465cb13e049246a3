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

/**
 * An event cut into the parts that change at different rates. A rule's inline sandbox
 * keeps the session and envelope parts it was last sent for each session, so most calls
 * carry only `rest` (the phase's own data): parsing JSON is most of a call's cost.
 */
export interface EventParts {
  sid: string;
  time: number;
  /** The session info without `time`. */
  session: string;
  /** The envelope, or '' for phases without one. */
  envelope: string;
  /** `phase` and the phase's own fields. */
  rest: string;
}

interface Entry {
  sb: RuleSandbox;
  full: RuleCode['limits'];
  /** Per session: the parts this sandbox has, valid for generation `gen` of the sandbox. */
  sent: Map<string, { session: string; envelope: string }>;
  gen: number;
}

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
  /** Per version, per rule id (absent = worker-only). */
  private versions = new Map<number, Map<string, Entry>>();

  async install(version: number, rules: RuleCode[]): Promise<void> {
    const map = new Map<string, Entry>();
    for (const r of rules) {
      const limits = { ...r.limits, timeoutMs: Math.min(r.limits.timeoutMs, INLINE_MS), stackKb: Math.min(r.limits.stackKb, INLINE_STACK_KB) };
      try {
        const sb = await RuleSandbox.create({ ...r, limits, loadTimeoutMs: INLINE_LOAD_MS });
        map.set(r.id, { sb, full: r.limits, sent: new Map(), gen: sb.generation });
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

  /** The session ended: every sandbox forgets its parts. */
  endSession(sid: string): void {
    for (const rules of this.versions.values()) {
      for (const e of rules.values()) {
        if (e.sent.delete(sid) && e.sb.generation === e.gen && !e.sb.pending) e.sb.drop(sid);
      }
    }
  }

  run(version: number, phase: Phase, chain: ChainLink[], ev: EventParts): InlineRun {
    const rules = this.versions.get(version);
    const results: RuleResult[] = [];
    for (let i = 0; i < chain.length; i++) {
      const link = chain[i]!;
      const entry = rules?.get(link.id);
      if (!entry || entry.sb.pending) return { results, escalateAt: i };
      if (entry.gen !== entry.sb.generation) {
        entry.sent.clear(); // rebuilt: the guest lost its copies
        entry.gen = entry.sb.generation;
      }
      const had = entry.sent.get(ev.sid);
      const r = entry.sb.callDelta(link.id, phase, ev.sid, ev.time, had?.session === ev.session ? null : ev.session, had?.envelope === ev.envelope ? null : ev.envelope, ev.rest);
      // Whatever went wrong may have happened before the guest stored the parts.
      if (r.outcome === 'ok') entry.sent.set(ev.sid, { session: ev.session, envelope: ev.envelope });
      else entry.sent.delete(ev.sid);
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
