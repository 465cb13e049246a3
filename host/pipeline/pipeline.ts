/**
 * Runs one phase of a session through its pinned RuleSet and turns the rules' results
 * into one decision: the first enforced verdict other than `next` wins; effects of every
 * enforced rule that ran accumulate; failures get their rule's fail policy; each rule's
 * result is logged and counted under its name.
 *
 * How a rule's result ends or continues the phase is decided in one place, `chainLink`:
 * the sandbox follows the links it makes, and `decide` reads the same links, so the two
 * can never disagree about which rules ran.
 */
import type { Logger } from 'pino';
import { SOFT_BOUNCE, type Phase, type PhaseEvent, type Verdict } from '../../sdk/index.js';
import type { RuleAction, RuleLimits } from '../config/config.js';
import type { Metrics } from '../metrics.js';
import type { EventParts } from '../sandbox/chain.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { ChainLink, Effects, NoteWrite, Outcome, RuleResult } from '../sandbox/protocol.js';
import type { RuleSet } from './ruleset.js';
import { ShadowReport } from './shadow.js';

/** A header a rule asked for, with the rule (so it can be withdrawn, see `Skip.authenticated`). */
export interface AddedHeader {
  rule: string;
  name: string;
  value: string;
}

/** A score symbol a rule added (`ctx.score`), with the rule (so it can be withdrawn, as a header). */
export interface AddedScore {
  rule: string;
  symbol: string;
  points: number;
}

/** What the session acts on. */
export interface PhaseDecision {
  /** The winning verdict (or `next`). */
  verdict: Verdict;
  /** The rule that made it, or null. */
  rule: string | null;
  /** Set when the winning outcome is a rule failure under the tempfail policy. */
  failure: Outcome | null;
  headers: AddedHeader[];
  /** `ctx.removeHeader`: fields of the message as received to remove, and who asked. */
  removeHeaders: { rule: string; name: string }[];
  blacklist: { ttlSeconds: number; reason: string; rule: string } | null;
  /** `ctx.markWellBehaved`: the client is well-behaved for this long, marked by this rule (the last one that asked). */
  wellBehaved: { ttlSeconds: number; rule: string } | null;
  delayMs: number;
  /** Notes written by the enforced rules that ran, in order. */
  notes: NoteWrite[];
  /** Score symbols the enforced rules added (`ctx.score`), with their points, in order. */
  scores: AddedScore[];
}

const NEXT: Verdict = Object.freeze({ action: 'next' });
export const NO_DECISION: PhaseDecision = Object.freeze({ verdict: NEXT, rule: null, failure: null, headers: [], removeHeaders: [], blacklist: null, wellBehaved: null, delayMs: 0, notes: [], scores: [] });

/**
 * What a rule's result does to the rest of its phase, from its config: an enforced rule's
 * verdict ends the phase and its failure ends it under the tempfail policy; a shadow
 * rule never ends the phase and its effects (notes included) count for nothing, so it
 * cannot change what the client hears.
 */
export function chainLink(id: string, action: RuleAction, limits: Pick<RuleLimits, 'failPolicy'>): ChainLink {
  const shadow = action === 'shadow';
  return {
    id,
    afterVerdict: shadow ? 'go-on' : 'stop',
    afterFailure: !shadow && limits.failPolicy === 'tempfail' ? 'stop' : 'go-on',
    effects: shadow ? 'ignore' : 'apply',
  };
}

/** The config's action override, applied after the rule decided (maddy's fail_action idea). */
export function applyAction(v: Verdict, action: RuleAction): Verdict {
  if (action === 'quarantine' && (v.action === 'reject' || v.action === 'drop' || v.action === 'tempfail')) {
    return { action: 'quarantine', ...(v.reason === undefined ? {} : { reason: v.reason }) };
  }
  // Postfix soft_bounce: 550 → 450, 554 → 454; the status class follows the code.
  if (action === 'tempfail' && v.action === 'reject') return { ...v, action: 'tempfail', code: SOFT_BOUNCE[v.code] };
  return v;
}

export class Pipeline {
  /** Per chain, its cuts by the rules' places (see `placed`); a chain's cuts go with its RuleSet. */
  private readonly cuts = new WeakMap<ChainLink[], Map<string, ChainLink[]>>();

  constructor(
    private readonly sandbox: Sandbox,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    /** What the rules in shadow mode would have refused (the admin API's shadow report). */
    readonly shadow = new ShadowReport(),
  ) {}

  /** The session ended: sandboxes may forget what they kept for it. */
  endSession(sid: string): void {
    this.sandbox.endSession(sid);
    this.shadow.endSession(sid);
  }

  /** True when some rule of the set handles `phase` (otherwise no event need be built). */
  handles(rs: RuleSet, phase: Phase): boolean {
    return rs.chains.anyone[phase] !== undefined;
  }

  /** Runs `event`'s phase through the rules that apply to the client and decides (`parts`: serialises the event, made only when a rule runs). */
  async runPhase(rs: RuleSet, event: PhaseEvent, parts?: () => EventParts): Promise<PhaseDecision> {
    const full = (event.session.user === null ? rs.chains.anyone : rs.chains.authenticated)[event.phase];
    const chain = full && this.placed(rs, full, event);
    if (!chain) return NO_DECISION;
    const results = await this.sandbox.callPhase(rs.version, chain, event, rs.budgets[event.phase] ?? 0, parts?.());
    return this.decide(rs, event, results);
  }

  /**
   * The chain without the rules whose place (`only`/`except`) leaves `event` out; null when
   * none is left. Each distinct cut is made once and kept, so the sandbox pool, which
   * numbers chains by their array, sees the same array for the same cut.
   */
  private placed(rs: RuleSet, chain: ChainLink[], event: PhaseEvent): ChainLink[] | null {
    if (!rs.placed) return chain;
    let keep = '';
    for (const link of chain) keep += rs.byId.get(link.id)?.place?.(event) === false ? '0' : '1';
    if (!keep.includes('0')) return chain;
    if (!keep.includes('1')) return null;
    let cuts = this.cuts.get(chain);
    if (!cuts) this.cuts.set(chain, (cuts = new Map()));
    let cut = cuts.get(keep);
    if (!cut) cuts.set(keep, (cut = chain.filter((_, i) => keep[i] === '1')));
    return cut;
  }

  private decide(rs: RuleSet, event: PhaseEvent, results: RuleResult[]): PhaseDecision {
    const phase = event.phase;
    const sid = event.session.id;
    const d: PhaseDecision = { ...NO_DECISION, headers: [], removeHeaders: [], notes: [], scores: [] };
    for (const r of results) {
      const rule = rs.byId.get(r.id);
      if (!rule) continue;
      const { name, link } = rule;
      this.metrics.observe('rule_call_duration_seconds', { rule: name, phase }, r.ms / 1000);
      const shadow = link.effects === 'ignore';
      for (const line of r.effects.logs ?? []) this.log.info({ session: sid, rule: name, phase, ruleLog: true }, line);
      if (r.outcome !== 'ok') {
        const stops = link.afterFailure === 'stop';
        this.metrics.inc('rule_failures_total', { rule: name, phase, outcome: r.outcome });
        this.log.warn({ session: sid, rule: name, phase, outcome: r.outcome, error: r.error, ms: round(r.ms), policy: shadow ? 'shadow' : rule.limits.failPolicy },
          `rule ${name} failed at ${phase}: ${r.outcome}${stops ? ', answering 451' : ', continuing'}`);
        if (stops) return { ...d, rule: name, failure: r.outcome };
        continue;
      }
      const v = applyAction(r.verdict, rule.action);
      this.record(sid, name, phase, v, r, shadow);
      if (shadow) {
        this.shadow.seen(name, sid, event.session.client.ip, phase, v);
        continue;
      }
      for (const [n, value] of r.effects.headers ?? []) d.headers.push({ rule: name, name: n, value });
      for (const n of r.effects.removeHeaders ?? []) d.removeHeaders.push({ rule: name, name: n });
      if (r.effects.blacklist) d.blacklist = { ...r.effects.blacklist, rule: name };
      if (r.effects.wellBehaved) d.wellBehaved = { ...r.effects.wellBehaved, rule: name };
      if (r.effects.notes) d.notes.push(...r.effects.notes);
      for (const [symbol, points] of r.effects.scores ?? []) d.scores.push({ rule: name, symbol, points });
      d.delayMs += r.effects.delayMs ?? 0;
      if (v.action !== 'next' && link.afterVerdict === 'stop') return { ...d, verdict: v, rule: name };
    }
    return d;
  }

  /** Logs and counts one rule's verdict (debug only when it had nothing to say). */
  private record(sid: string, name: string, phase: Phase, v: Verdict, r: RuleResult, shadow: boolean): void {
    if (v.action === 'next' && !hasEffects(r.effects)) {
      this.log.debug({ session: sid, rule: name, phase, ms: round(r.ms) }, `rule ${name}: next`);
      return;
    }
    this.metrics.inc('rule_verdicts_total', { rule: name, phase, action: v.action, mode: shadow ? 'shadow' : 'enforce' });
    this.log.info({ session: sid, rule: name, phase, action: v.action, reason: 'reason' in v ? (v.reason ?? name) : name, ms: round(r.ms), ...describe(v), ...(shadow ? { shadow: true } : {}) },
      shadow ? `shadow: rule ${name} would have answered ${v.action} at ${phase}` : `rule ${name}: ${v.action} at ${phase}`);
  }
}

function hasEffects(fx: Effects): boolean {
  return !!(fx.headers?.length || fx.removeHeaders?.length || fx.blacklist || fx.wellBehaved || fx.delayMs || fx.notes?.length || fx.scores?.length);
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
