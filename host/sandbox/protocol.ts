/**
 * Messages between the sandbox pool (main thread) and its workers, and the result of
 * one rule call. Everything here is structured-clone friendly.
 */
import type { Json, Phase, Skip, Verdict } from '../../sdk/index.js';

/** A note a rule wrote: `[scope, key, value]`, or `[scope, key]` to remove it ('s' = session, 't' = transaction). */
export type NoteWrite = ['s' | 't', string, Json] | ['s' | 't', string];

/** The effects of one rule call (`ctx.*` besides the verdict), as they cross the sandbox boundary. */
export interface Effects {
  headers?: [string, string][];
  /** `ctx.removeHeader`: field names to take out of the message as received. */
  removeHeaders?: string[];
  blacklist?: { ttlSeconds: number; reason: string };
  /** `ctx.markWellBehaved`: the client proved it is a real MTA, for this long. */
  wellBehaved?: { ttlSeconds: number };
  delayMs?: number;
  logs?: string[];
  notes?: NoteWrite[];
  /** `[symbol, points]` the rule added with `ctx.score`. */
  scores?: [string, number][];
}

/**
 * How a rule call ended. Every failure is its own outcome, so a crash never silently
 * reads as "no opinion": the pipeline applies the rule's fail policy to all but `ok`.
 */
export const OUTCOMES = [
  'ok',
  'timeout', // ran past its deadline and was interrupted
  'oom', // hit its memory cap; the module is rebuilt
  'stack-overflow', // recursed past its stack limit
  'error', // threw
  'invalid-verdict', // returned something that is not a valid verdict/effect
  'crash', // the wasm module faulted or the worker died; rebuilt
] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** Limits of one rule's sandbox. */
export interface SandboxLimits {
  timeoutMs: number;
  memoryMb: number;
  stackKb: number;
}

/** What a rule declares about itself, read by evaluating it once. */
export interface RuleMeta {
  name: string;
  description: string | null;
  priority: number;
  options: Record<string, unknown> | null;
  skip: Skip;
  /** The rule's own default (`RuleDefinition.enabled`): whether it runs when the config does not say. */
  enabled: boolean;
  phases: Phase[];
}

/** A compiled rule ready to install: its bundled code, options and limits. */
export interface RuleCode {
  /** Unique within a RuleSet version. */
  id: string;
  file: string;
  code: string;
  /** Source map of `code` (JSON), to report runtime errors at the rule's own file:line:col. */
  map?: string;
  optionsJson: string;
  /** For options read from files: each value's file line (`ctx.optionLine`), JSON `{ option: [line, …] }`. */
  optionLinesJson?: string;
  limits: SandboxLimits;
  /** Rules with the same group share one module (the built-in rules); none: a module of its own. */
  group?: string;
}

/** What installing a RuleSet version reports: failures, and each rule's needs with its options. */
export interface InstallReport {
  errors: { id: string; error: string }[];
  needs: Record<string, string[]>;
}

/**
 * One link of a phase's chain: which rule to call and what its result does to the rest
 * of the phase. Made by the pipeline's `chainLink` (the one place that decides it); the
 * sandbox only follows it.
 */
export interface ChainLink {
  id: string;
  /** After a verdict other than `next`: stop the phase there, or go on (a shadow rule). */
  afterVerdict: 'stop' | 'go-on';
  /** After a failed call: stop (fail policy tempfail), or go on (continue, or shadow). */
  afterFailure: 'stop' | 'go-on';
  /** Whether the rule's effects count: its notes reach later rules (not for a shadow rule). */
  effects: 'apply' | 'ignore';
}

export interface RuleResult {
  id: string;
  outcome: Outcome;
  /** The validated verdict; `next` whenever outcome is not `ok`. */
  verdict: Verdict;
  effects: Effects;
  ms: number;
  /** What went wrong, for the log (never sent to the client). */
  error?: string;
}

/**
 * One phase's chain for one session. `session` and `envelope` are null when the worker
 * already holds them for this session (from an earlier call sent to it). The chain goes
 * by number: its links cross once per worker (`ChainDef`), as cloning them with every
 * call was most of a call message's cost.
 */
export interface CallRequest {
  seq: number;
  version: number;
  phase: Phase;
  chain: number;
  sid: string;
  time: number;
  session: string | null;
  envelope: string | null;
  rest: string;
}

/** Shared memory between the pool and its workers (see pool.ts). */
export interface WorkerInit {
  index: number;
  /** Int32Array ring indexed by seq % CLAIM_RING: 0 = unclaimed, else the claiming worker's index + 1. */
  claims: SharedArrayBuffer;
  /** Int32Array, one per worker: the seq it is running now, 0 when idle. */
  running: SharedArrayBuffer;
  /** This worker's store channel: Int32 [answered, length, seq, -], then the JSON answer's bytes. */
  store: SharedArrayBuffer;
}

/** Bytes before the answer in a store channel: Int32 answered flag, length, and the seq it answers. */
export const STORE_HEADER_BYTES = 16;

/** Size of a worker's store channel (an answer larger than this is an error). */
export const STORE_CHANNEL_BYTES = 256 * 1024;

export const CLAIM_RING = 1 << 16;

/** A chain the worker has not seen yet: its number, the RuleSet version it belongs to, its links. */
export type ChainDef = [id: number, version: number, links: ChainLink[]];

export type ToWorker =
  | { t: 'inspect'; seq: number; file: string; code: string }
  | { t: 'install'; seq: number; version: number; rules: RuleCode[] }
  | { t: 'release'; version: number }
  | { t: 'calls'; chains: ChainDef[]; calls: CallRequest[]; /** sessions that ended */ drops: string[] }
  | { t: 'stats'; seq: number };

export type FromWorker =
  | { t: 'ready' }
  /** A rule's store operation; the worker waits for the answer in its store channel. */
  | { t: 'store'; seq: number; op: string; args: unknown[]; now: number }
  | { t: 'inspected'; seq: number; meta?: RuleMeta; error?: string }
  | ({ t: 'installed'; seq: number } & InstallReport)
  | { t: 'results'; calls: { seq: number; results: RuleResult[] }[] }
  | { t: 'stats'; seq: number; modules: number; versions: number[] };
