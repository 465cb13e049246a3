/**
 * Runs a phase's chain of rules against the sandboxes of a worker thread, sending each
 * sandbox only the event parts it does not already hold for the session: parsing JSON
 * is most of a call's cost, and the session and envelope change far less often than
 * once per call. Rules that share a module (a group) and follow each other in the chain
 * reuse the event the first of them parsed. Notes a rule writes reach the rules after it
 * in the same phase.
 */
import type { Json, Phase } from '../../sdk/index.js';
import type { StoreCall } from '../store/access.js';
import type { ChainLink, InstallReport, NoteWrite, RuleCode, RuleResult } from './protocol.js';
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

/** A module of this worker: one rule's, or a group's. */
interface Module {
  sb: RuleSandbox;
  /** Per session: the parts this module holds, valid for generation `gen` of the module. */
  sent: Map<string, { session: string; envelope: string }>;
  gen: number;
}

/** A rule: its module and its index there. */
interface Entry {
  mod: Module;
  member: number;
}

export interface ChainRun {
  results: RuleResult[];
  /** Index where the run stopped early (the sandbox is missing or rebuilding), or -1 when done. */
  stoppedAt: number;
  /** The event as the next rule sees it (with the notes written so far). */
  event: EventParts;
}

export interface ChainOptions {
  /** Called (from the interrupt handler) when a call has run for a millisecond. */
  onBusy?: () => void;
  /** Runs rules' store operations. */
  storeCall?: StoreCall;
}

export class ChainRunner {
  /** Per installed version: its rules by id, and its modules (each once). */
  private versions = new Map<number, { rules: Map<string, Entry>; modules: Module[] }>();

  constructor(private readonly opts: ChainOptions = {}) {}

  /** Loads a version's rules (a module per group, or per rule); returns the failures and each loaded rule's needs. */
  async install(version: number, rules: RuleCode[]): Promise<InstallReport> {
    const map = new Map<string, Entry>();
    const modules: Module[] = [];
    const errors: { id: string; error: string }[] = [];
    const needs: Record<string, string[]> = {};
    const groups = new Map<string, RuleCode[]>();
    for (const r of rules) {
      const key = r.group === undefined ? `rule:${r.id}` : `group:${r.group}`;
      groups.set(key, [...(groups.get(key) ?? []), r]);
    }
    for (const members of groups.values()) {
      try {
        const sb = await RuleSandbox.create(members, this.opts.onBusy, this.opts.storeCall);
        const mod: Module = { sb, sent: new Map(), gen: sb.generation };
        modules.push(mod);
        members.forEach((r, member) => {
          map.set(r.id, { mod, member });
          needs[r.id] = sb.needs[member] ?? [];
        });
      } catch (e) {
        errors.push({ id: members[0]!.id, error: (e as Error).message });
      }
    }
    this.versions.set(version, { rules: map, modules });
    return { errors, needs };
  }

  release(version: number): void {
    for (const mod of this.versions.get(version)?.modules ?? []) mod.sb.dispose();
    this.versions.delete(version);
  }

  get modules(): number {
    let n = 0;
    for (const v of this.versions.values()) n += v.modules.length;
    return n;
  }

  versionList(): number[] {
    return [...this.versions.keys()];
  }

  /** The sandbox of a rule, to wait for its rebuild. */
  sandbox(version: number, id: string): RuleSandbox | undefined {
    return this.versions.get(version)?.rules.get(id)?.mod.sb;
  }

  /** The session ended: every module forgets its parts. */
  endSession(sid: string): void {
    for (const v of this.versions.values()) {
      for (const m of v.modules) {
        if (m.sent.delete(sid) && m.sb.generation === m.gen && !m.sb.pending) m.sb.drop(sid);
      }
    }
  }

  /**
   * Calls the rules of `chain` from index `from`, following each link's stop flags. The
   * notes a rule writes are in the event of the rules after it; the event with those
   * notes is returned, to go on from `stoppedAt`.
   */
  callChain(version: number, phase: Phase, chain: ChainLink[], event: EventParts, from = 0): ChainRun {
    const rules = this.versions.get(version)?.rules;
    const results: RuleResult[] = [];
    let ev = event;
    /** The module that holds `ev` parsed from its last call (a call that ended ok), if any. */
    let parsed: Module | null = null;
    for (let i = from; i < chain.length; i++) {
      const link = chain[i]!;
      const entry = rules?.get(link.id);
      if (!entry || entry.mod.sb.pending) return { results, stoppedAt: i, event: ev };
      const mod = entry.mod;
      if (mod.gen !== mod.sb.generation) {
        mod.sent.clear(); // rebuilt: the guest lost its copies
        mod.gen = mod.sb.generation;
      }
      let r: RuleResult;
      if (parsed === mod) r = mod.sb.callAgain(entry.member, link.id, phase);
      else {
        const had = mod.sent.get(ev.sid);
        r = mod.sb.callDelta(entry.member, link.id, phase, ev.sid, ev.time, had?.session === ev.session ? null : ev.session, had?.envelope === ev.envelope ? null : ev.envelope, ev.rest);
      }
      // Whatever went wrong may have happened before the guest stored the parts.
      if (r.outcome === 'ok') {
        mod.sent.set(ev.sid, { session: ev.session, envelope: ev.envelope });
        parsed = mod;
      } else {
        mod.sent.delete(ev.sid);
        parsed = null;
      }
      results.push(r);
      if (r.outcome !== 'ok') {
        if (link.afterFailure === 'stop') break;
        continue;
      }
      if (r.effects.notes && link.effects === 'apply') {
        ev = withNotes(ev, r.effects.notes);
        parsed = null; // the next rule needs the event with the notes
      }
      if (r.verdict.action !== 'next' && link.afterVerdict === 'stop') break;
    }
    return { results, stoppedAt: -1, event: ev };
  }
}

/** The event with `notes` applied to its session (scope 's') and envelope ('t') parts. */
export function withNotes(ev: EventParts, notes: NoteWrite[]): EventParts {
  const session = JSON.parse(ev.session) as { notes: Record<string, Json> };
  const envelope = ev.envelope ? (JSON.parse(ev.envelope) as { notes: Record<string, Json> }) : null;
  for (const [scope, key, ...value] of notes) {
    const into = scope === 's' ? session.notes : envelope?.notes;
    if (!into) continue; // no transaction here: the guest already refused it
    if (value.length) into[key] = value[0]!;
    else delete into[key];
  }
  return { ...ev, session: JSON.stringify(session), envelope: envelope ? JSON.stringify(envelope) : '' };
}
