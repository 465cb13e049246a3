/**
 * Runs one phase of a session through its pinned RuleSet and turns the rules' results
 * into one decision: the first enforced verdict other than `next` wins; effects of every
 * enforced rule that ran accumulate; failures get their rule's fail policy; each rule's
 * result is logged and counted under its name.
 */
import type { Logger } from 'pino';
import type { Effects, Phase, PhaseEvent, Verdict } from '../../sdk/index.js';
import type { RuleAction } from '../config/config.js';
import type { Counters } from '../metrics.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { Outcome } from '../sandbox/protocol.js';
import type { RuleSet } from './ruleset.js';

/** What the SMTP adapter acts on. */
export interface PhaseDecision {
  /** The winning verdict (or `next`). */
  verdict: Verdict;
  /** The rule that made it, or null. */
  rule: string | null;
  /** Set when the winning outcome is a rule failure under the tempfail policy. */
  failure: Outcome | null;
  headers: [string, string][];
  blacklist: { ttlSeconds: number; reason: string; rule: string } | null;
  delayMs: number;
}

const NEXT: Verdict = Object.freeze({ action: 'next' });
export const NO_DECISION: PhaseDecision = Object.freeze({ verdict: NEXT, rule: null, failure: null, headers: [], blacklist: null, delayMs: 0 });

/** The config's action override, applied after the rule decided (maddy's fail_action idea). */
export function applyAction(v: Verdict, action: RuleAction): Verdict {
  if (action === 'quarantine' && (v.action === 'reject' || v.action === 'drop' || v.action === 'tempfail')) {
    return { action: 'quarantine', reason: v.reason };
  }
  if (action === 'tempfail' && v.action === 'reject') {
    // Postfix soft_bounce: 550 → 450, 554 → 454; the status class follows the code.
    return { ...v, action: 'tempfail', code: v.code - 100 };
  }
  return v;
}

/** How long a client that made a rule time out (or fault) stays suspect. */
const SUSPECT_MS = 10 * 60_000;
const MAX_SUSPECTS = 10_000;

export class Pipeline {
  /** Client IP → until when its calls run in the sandbox pool's suspect lane. */
  private suspects = new Map<string, number>();

  constructor(
    private readonly sandbox: Sandbox,
    private readonly log: Logger,
    private readonly counters: Counters,
  ) {}

  private isSuspect(ip: string, now: number): boolean {
    const until = this.suspects.get(ip);
    if (until === undefined) return false;
    if (until > now) return true;
    this.suspects.delete(ip);
    return false;
  }

  private markSuspect(ip: string, now: number): void {
    if (this.suspects.size >= MAX_SUSPECTS) this.suspects.delete(this.suspects.keys().next().value!);
    this.suspects.delete(ip);
    this.suspects.set(ip, now + SUSPECT_MS);
  }

  /** The session ended: sandboxes may forget what they kept for it. */
  endSession(sid: string): void {
    this.sandbox.endSession(sid);
  }

  /** True when some rule of the set handles `phase` (otherwise no event need be built). */
  handles(rs: RuleSet, phase: Phase): boolean {
    return rs.chains[phase] !== undefined;
  }

  async run(rs: RuleSet, event: PhaseEvent): Promise<PhaseDecision> {
    const phase = event.phase;
    const chain = rs.chains[phase];
    if (!chain) return NO_DECISION;
    const ip = event.session.client.ip;
    const { results, escalated } = await this.sandbox.run(rs.version, chain, event, rs.budgets[phase] ?? 0, this.isSuspect(ip, event.session.time));
    if (escalated) this.markSuspect(ip, Date.now());
    const sid = event.session.id;
    let decision: PhaseDecision = NO_DECISION;
    const headers: [string, string][] = [];
    let blacklist: PhaseDecision['blacklist'] = null;
    let delayMs = 0;

    for (const r of results) {
      const rule = rs.byId.get(r.id);
      if (!rule) continue;
      const name = rule.name;
      const shadow = rule.action === 'shadow';
      for (const line of r.effects.logs ?? []) this.log.info({ session: sid, rule: name, phase, ruleLog: true }, line);
      if (r.outcome !== 'ok') {
        if (r.outcome === 'timeout' || r.outcome === 'oom' || r.outcome === 'crash') this.markSuspect(ip, Date.now());
        const enforced = rule.limits.failPolicy === 'tempfail' && !shadow;
        this.counters.inc('rule_failures_total', { rule: name, outcome: r.outcome });
        this.log.warn({ session: sid, rule: name, phase, outcome: r.outcome, error: r.error, ms: round(r.ms), policy: shadow ? 'shadow' : rule.limits.failPolicy },
          `rule ${name} failed at ${phase}: ${r.outcome}${enforced ? ', answering 451' : ', continuing'}`);
        if (enforced) {
          decision = { ...NO_DECISION, verdict: NEXT, rule: name, failure: r.outcome };
          break;
        }
        continue;
      }
      const v = applyAction(r.verdict, rule.action);
      if (v.action !== 'next' || hasEffects(r.effects)) {
        this.counters.inc('rule_verdicts_total', { rule: name, phase, action: v.action, mode: shadow ? 'shadow' : 'enforce' });
        this.log.info({ session: sid, rule: name, phase, action: v.action, reason: 'reason' in v ? (v.reason ?? name) : name, ms: round(r.ms), ...describe(v), ...(shadow ? { shadow: true } : {}) },
          shadow ? `shadow: rule ${name} would have answered ${v.action} at ${phase}` : `rule ${name}: ${v.action} at ${phase}`);
      } else {
        this.log.debug({ session: sid, rule: name, phase, ms: round(r.ms) }, `rule ${name}: next`);
      }
      if (shadow) continue;
      if (r.effects.headers) headers.push(...r.effects.headers);
      if (r.effects.blacklist) blacklist = { ...r.effects.blacklist, rule: name };
      delayMs += r.effects.delayMs ?? 0;
      if (v.action !== 'next') {
        decision = { ...NO_DECISION, verdict: v, rule: name };
        break;
      }
    }
    return { ...decision, headers, blacklist, delayMs };
  }
}

function hasEffects(fx: Effects): boolean {
  return !!(fx.headers?.length || fx.blacklist || fx.delayMs);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function describe(v: Verdict): Record<string, unknown> {
  switch (v.action) {
    case 'reject':
    case 'tempfail':
      return { code: v.code, text: v.text };
    case 'drop':
      return { text: v.text };
    case 'redirect':
      return { address: v.address };
    default:
      return {};
  }
}
