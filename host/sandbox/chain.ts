/**
 * Runs a phase's chain of rules against the sandboxes of one thread (the main thread's
 * inline tier, or a worker), sending each sandbox only the event parts it does not
 * already hold for the session: parsing JSON is most of a call's cost, and the session
 * and envelope change far less often than once per call.
 */
import type { Phase } from '../../sdk/index.js';
import type { StoreCall } from '../store/access.js';
import type { ChainLink, InstallReport, RuleCode, RuleResult, SandboxLimits } from './protocol.js';
import { RuleSandbox } from './rule-sandbox.js';

/** An event cut into the parts that change at different rates. */
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
  /** The rule's own limits (the sandbox may run with tighter ones). */
  full: SandboxLimits;
  /** Per session: the parts this sandbox holds, valid for generation `gen` of the sandbox. */
  sent: Map<string, { session: string; envelope: string }>;
  gen: number;
}

export interface ChainRun {
  results: RuleResult[];
  /** Index where the run stopped early (`stop` said so, or the sandbox is missing or rebuilding), or -1 when done. */
  stoppedAt: number;
}

export interface ChainOptions {
  /** Tighter limits for this thread's sandboxes (the inline tier's). */
  tighten?: (l: SandboxLimits) => SandboxLimits;
  loadTimeoutMs?: number;
  /** Called (from the interrupt handler) when a call has run for a millisecond. */
  onBusy?: () => void;
  /** Runs rules' store operations. */
  storeCall?: StoreCall;
}

export class ChainRunner {
  private versions = new Map<number, Map<string, Entry>>();

  constructor(private readonly opts: ChainOptions = {}) {}

  /** Loads a version's rules; returns the failures and each loaded rule's needs. */
  async install(version: number, rules: RuleCode[]): Promise<InstallReport> {
    const map = new Map<string, Entry>();
    const errors: { id: string; error: string }[] = [];
    const needs: Record<string, string[]> = {};
    for (const r of rules) {
      const limits = this.opts.tighten ? this.opts.tighten(r.limits) : r.limits;
      try {
        const sb = await RuleSandbox.create({ ...r, limits, loadTimeoutMs: this.opts.loadTimeoutMs }, this.opts.onBusy, this.opts.storeCall);
        map.set(r.id, { sb, full: r.limits, sent: new Map(), gen: sb.generation });
        needs[r.id] = sb.needs;
      } catch (e) {
        errors.push({ id: r.id, error: (e as Error).message });
      }
    }
    this.versions.set(version, map);
    return { errors, needs };
  }

  release(version: number): void {
    for (const { sb } of this.versions.get(version)?.values() ?? []) sb.dispose();
    this.versions.delete(version);
  }

  get modules(): number {
    let n = 0;
    for (const v of this.versions.values()) n += v.size;
    return n;
  }

  versionList(): number[] {
    return [...this.versions.keys()];
  }

  /** The sandbox of a rule, to wait for its rebuild. */
  sandbox(version: number, id: string): RuleSandbox | undefined {
    return this.versions.get(version)?.get(id)?.sb;
  }

  /** The session ended: every sandbox forgets its parts. */
  endSession(sid: string): void {
    for (const rules of this.versions.values()) {
      for (const e of rules.values()) {
        if (e.sent.delete(sid) && e.sb.generation === e.gen && !e.sb.pending) e.sb.drop(sid);
      }
    }
  }

  /**
   * Runs `chain` from index `from`. `stop(result, limits)` may end the run before a result
   * is kept (the inline tier hands such calls to a worker).
   */
  run(version: number, phase: Phase, chain: ChainLink[], ev: EventParts, from = 0, stop?: (r: RuleResult, full: SandboxLimits) => boolean): ChainRun {
    const rules = this.versions.get(version);
    const results: RuleResult[] = [];
    for (let i = from; i < chain.length; i++) {
      const link = chain[i]!;
      const entry = rules?.get(link.id);
      if (!entry || entry.sb.pending) return { results, stoppedAt: i };
      if (entry.gen !== entry.sb.generation) {
        entry.sent.clear(); // rebuilt: the guest lost its copies
        entry.gen = entry.sb.generation;
      }
      const had = entry.sent.get(ev.sid);
      const r = entry.sb.callDelta(link.id, phase, ev.sid, ev.time, had?.session === ev.session ? null : ev.session, had?.envelope === ev.envelope ? null : ev.envelope, ev.rest);
      // Whatever went wrong may have happened before the guest stored the parts.
      if (r.outcome === 'ok') entry.sent.set(ev.sid, { session: ev.session, envelope: ev.envelope });
      else entry.sent.delete(ev.sid);
      if (stop?.(r, entry.full)) return { results, stoppedAt: i };
      results.push(r);
      if (r.outcome === 'ok' ? r.verdict.action !== 'next' && link.stopOnVerdict : link.stopOnFailure) break;
    }
    return { results, stoppedAt: -1 };
  }
}
