/**
 * The sandbox as the pipeline sees it: the inline tier on the main thread first, the
 * worker pool for what needs longer (and for suspect clients). Both hold every rule of
 * every live RuleSet version.
 */
import type { PhaseEvent } from '../../sdk/index.js';
import type { EventParts } from './chain.js';
import { INLINE_MS, InlineTier } from './inline.js';
import { SandboxPool, type PoolOptions, type PoolStats } from './pool.js';
import type { ChainLink, RuleCode, RuleMeta, RuleResult } from './protocol.js';

export interface SandboxRun {
  results: RuleResult[];
  /**
   * True when a rule really needed more than the inline tier allows: it ran past
   * INLINE_MS in a worker too (an inline timeout alone can be the main thread being
   * preempted, which says nothing about the client). The client is then suspect.
   */
  escalated: boolean;
}

export class Sandbox {
  private readonly pool: SandboxPool;
  private readonly inline: InlineTier | null;
  constructor(opts: PoolOptions & { inline: boolean }) {
    this.pool = new SandboxPool(opts);
    this.inline = opts.inline ? new InlineTier(opts.storeCall) : null;
  }

  /** Evaluates a compiled rule once (in a worker) to read what it declares. */
  inspect(file: string, code: string): Promise<RuleMeta> {
    return this.pool.inspect(file, code);
  }

  /** Installs a RuleSet version; returns each rule's needs (by rule id). */
  async install(version: number, rules: RuleCode[]): Promise<Record<string, string[]>> {
    const needs = await this.pool.install(version, rules);
    await this.inline?.install(version, rules);
    return needs;
  }

  release(version: number): void {
    this.inline?.release(version);
    this.pool.release(version);
  }

  async run(version: number, chain: ChainLink[], event: PhaseEvent, budgetMs: number, suspect: boolean): Promise<SandboxRun> {
    const phase = event.phase;
    const p = parts(event);
    if (suspect || !this.inline) return { results: await this.pool.run(version, phase, chain, p, budgetMs, suspect), escalated: false };
    const r = this.inline.run(version, phase, chain, p);
    if (r.stoppedAt < 0) return { results: r.results, escalated: false };
    const rest = await this.pool.run(version, phase, chain.slice(r.stoppedAt), p, budgetMs, false);
    return { results: [...r.results, ...rest], escalated: rest.some((x) => x.ms > INLINE_MS || x.outcome !== 'ok') };
  }

  /** The session ended: inline sandboxes drop what they cached for it. */
  endSession(sid: string): void {
    this.inline?.endSession(sid);
    this.pool.endSession(sid);
  }

  stats(): Promise<PoolStats> {
    return this.pool.stats();
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** Cuts an event into the parts the inline tier sends separately. */
function parts(event: PhaseEvent): EventParts {
  const { session, ...restOfEvent } = event;
  const { time, ...sessionWithoutTime } = session;
  const { envelope, ...rest } = restOfEvent as typeof restOfEvent & { envelope?: unknown };
  return { sid: session.id, time, session: JSON.stringify(sessionWithoutTime), envelope: envelope === undefined ? '' : JSON.stringify(envelope), rest: JSON.stringify(rest) };
}
