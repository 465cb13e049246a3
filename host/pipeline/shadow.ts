/**
 * The shadow report: what each rule in shadow mode (`action: "shadow"`) would have
 * refused had it been enforced — the question an admin asks before turning it on. Per
 * rule: sessions and commands it would have refused (reject, tempfail, drop) and the
 * last few of them as samples. In memory, since the host started (or the rule went to
 * shadow): it is a trial, not a history.
 */
import type { Phase, Verdict } from '../../sdk/index.js';

export interface ShadowSample {
  time: string;
  session: string;
  ip: string;
  phase: Phase;
  action: Verdict['action'];
  /** The reply it would have sent (code and text), or the action when it has none. */
  would: string;
}

export interface ShadowRuleReport {
  rule: string;
  /** Sessions with at least one command it would have refused. */
  sessions: number;
  /** Commands it would have refused. */
  refusals: number;
  /** The most recent ones, newest first. */
  samples: ShadowSample[];
}

const SAMPLES = 10;
const REFUSING = new Set<Verdict['action']>(['reject', 'tempfail', 'drop']);

export class ShadowReport {
  private rules = new Map<string, ShadowRuleReport>();
  /** Per live session, the rules that would have refused something in it (cleared at its end). */
  private bySession = new Map<string, Set<string>>();

  /** A shadow rule's verdict; counted when it would have refused. */
  seen(rule: string, session: string, ip: string, phase: Phase, v: Verdict, now = Date.now()): void {
    if (!REFUSING.has(v.action)) return;
    let r = this.rules.get(rule);
    if (!r) this.rules.set(rule, (r = { rule, sessions: 0, refusals: 0, samples: [] }));
    r.refusals++;
    let inSession = this.bySession.get(session);
    if (!inSession) this.bySession.set(session, (inSession = new Set()));
    if (!inSession.has(rule)) {
      inSession.add(rule);
      r.sessions++;
    }
    const would = 'code' in v ? `${v.code} ${v.text}` : v.action === 'drop' ? `421 ${v.text}` : v.action;
    r.samples.unshift({ time: new Date(now).toISOString(), session, ip, phase, action: v.action, would });
    r.samples.length = Math.min(r.samples.length, SAMPLES);
  }

  endSession(session: string): void {
    this.bySession.delete(session);
  }

  report(): ShadowRuleReport[] {
    return [...this.rules.values()].sort((a, b) => b.sessions - a.sessions || a.rule.localeCompare(b.rule));
  }
}
