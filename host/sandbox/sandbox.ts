/**
 * The sandbox as the pipeline sees it: the worker pool, and the suspect lane. A client
 * whose event made a rule time out, run out of memory or fault is suspect for a while
 * (one clock: this process's monotonic time): its calls all go
 * to one worker, where clients that keep rules spinning wait behind each other rather
 * than behind everyone else.
 */
import type { PhaseEvent } from '../../sdk/index.js';
import type { EventParts } from './chain.js';
import { SandboxPool, type PoolOptions, type PoolStats } from './pool.js';
import type { ChainLink, RuleCode, RuleMeta, RuleResult } from './protocol.js';

/** How long a client stays suspect after a rule ran long or failed on its event. */
const SUSPECT_MS = 10 * 60_000;
const MAX_SUSPECTS = 10_000;

export class Sandbox {
  private readonly pool: SandboxPool;
  /** Client IP → until when (performance.now()) its calls take the suspect lane. */
  private readonly suspects = new Map<string, number>();

  constructor(opts: PoolOptions) {
    this.pool = new SandboxPool(opts);
  }

  /** Evaluates a compiled rule once (in a worker) to read what it declares. */
  inspect(file: string, code: string): Promise<RuleMeta> {
    return this.pool.inspect(file, code);
  }

  /** Installs a RuleSet version; returns each rule's needs (by rule id). */
  install(version: number, rules: RuleCode[]): Promise<Record<string, string[]>> {
    return this.pool.install(version, rules);
  }

  release(version: number): void {
    this.pool.release(version);
  }

  /** Calls one phase's chain of rules for `event`; one result per rule called, in order. */
  async callPhase(version: number, chain: ChainLink[], event: PhaseEvent, budgetMs: number, eventParts?: EventParts): Promise<RuleResult[]> {
    const ip = event.session.client.ip;
    const results = await this.pool.dispatch(version, event.phase, chain, eventParts ?? parts(event), budgetMs, this.isSuspect(ip));
    if (results.some((r) => r.outcome === 'timeout' || r.outcome === 'oom' || r.outcome === 'crash')) this.markSuspect(ip);
    return results;
  }

  private isSuspect(ip: string): boolean {
    const until = this.suspects.get(ip);
    if (until === undefined) return false;
    if (until > performance.now()) return true;
    this.suspects.delete(ip);
    return false;
  }

  private markSuspect(ip: string): void {
    if (this.suspects.size >= MAX_SUSPECTS) this.suspects.delete(this.suspects.keys().next().value!);
    this.suspects.delete(ip);
    this.suspects.set(ip, performance.now() + SUSPECT_MS);
  }

  /** The session ended: workers drop what they cached for it. */
  endSession(sid: string): void {
    this.pool.endSession(sid);
  }

  stats(): Promise<PoolStats> {
    return this.pool.stats();
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** Cuts an event into the parts workers cache separately (see chain.ts). */
export function parts(event: PhaseEvent): EventParts {
  const { session, ...restOfEvent } = event;
  const { time, ...sessionWithoutTime } = session;
  const { envelope, ...rest } = restOfEvent as typeof restOfEvent & { envelope?: unknown };
  return { sid: session.id, time, session: JSON.stringify(sessionWithoutTime), envelope: envelope === undefined ? '' : JSON.stringify(envelope), rest: JSON.stringify(rest) };
}
