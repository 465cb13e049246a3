/**
 * A QuickJS wasm module holding one rule, or a group of rules that share it: its own
 * linear memory with a hard cap, its own stack limit and an interrupt deadline on every
 * call (each rule's own). Lives in a sandbox worker.
 *
 * Why a module per rule for the admin's rules: a rule that exhausts memory or faults the
 * wasm instance takes down only its own module, which is rebuilt; the other rules' state
 * and limits are untouched. Why the built-in rules share one (`sandbox.shareBuiltins`):
 * they are ours and reviewed, and in one module an event is parsed once per phase for
 * all of them, and one instance's memory serves them all; each keeps its own deadline,
 * fail policy and outcome. What they give up is a memory cap of their own.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SourceMapConsumer, type RawSourceMap } from 'source-map-js';
import { createRequire } from 'node:module';
import variantImport from '@jitl/quickjs-wasmfile-release-sync';
import {
  newQuickJSWASMModuleFromVariant,
  newVariant,
  type QuickJSContext,
  type QuickJSHandle,
  type QuickJSRuntime,
  type QuickJSSyncVariant,
} from 'quickjs-emscripten-core';
import type { Phase } from '../../sdk/index.js';
import { SDK_DIR } from '../paths.js';
import { BUNDLE_DIR, GUEST_INSTALL, GUEST_PRELUDE } from './guest.js';
import type { StoreCall } from '../store/access.js';
import type { Outcome, RuleMeta, RuleResult, SandboxLimits } from './protocol.js';
import { parseGuestReply } from './validate.js';

const WASM_PAGE = 65536;
/** The QuickJS build does not link with less than 256 pages (16 MiB). */
const MIN_PAGES = 256;
/** Deadline for a rule's top-level code (it should only define the rule). */
const LOAD_TIMEOUT_MS = 1000;
/** A call running this long is "busy": results held by the worker are sent meanwhile. */
const BUSY_MS = 1;
/** Extra time to read an error object (its getters are guest code). */
const DESCRIBE_MS = 5;

// Compile the wasm once per worker; each rule instantiates it with its own memory.
const wasmPath = createRequire(import.meta.url).resolve('@jitl/quickjs-wasmfile-release-sync/wasm');
const wasmModule = WebAssembly.compile(readFileSync(wasmPath));
// The package's types describe it as CommonJS; under ESM the default import is the variant.
const variant = ((variantImport as { default?: unknown }).default ?? variantImport) as QuickJSSyncVariant;

/** One rule of a module. */
export interface RuleSource {
  file: string;
  code: string;
  /** Source map of `code` (JSON): error positions are reported in the rule's own files. */
  map?: string;
  /** The validated options; null to only read what the rule declares (inspect). */
  optionsJson: string | null;
  /** Where option values read from files came from (see `RuleCode`). */
  optionLinesJson?: string;
  limits: SandboxLimits;
}

/** The module's limits: its rules' largest memory cap and stack (deadlines stay per rule). */
function moduleLimits(members: RuleSource[]): Pick<SandboxLimits, 'memoryMb' | 'stackKb'> {
  return { memoryMb: Math.max(...members.map((m) => m.limits.memoryMb)), stackKb: Math.max(...members.map((m) => m.limits.stackKb)) };
}

/** A rule failed to load: message ready for the admin, with file:line:col when known. */
export class RuleLoadError extends Error {}

export class RuleSandbox {
  /** Pending rebuild after a fault; calls wait for it. */
  private rebuilding: Promise<void> | null = null;
  private runtime!: QuickJSRuntime;
  private ctx!: QuickJSContext;
  private callDeltaFn!: QuickJSHandle;
  private againFn!: QuickJSHandle;
  private dropFn!: QuickJSHandle;
  private gen = 0;
  private handles: QuickJSHandle[] = [];
  private phaseNames = new Map<Phase, QuickJSHandle>();
  private deadline = Infinity;
  /** When the current call counts as long-running (onBusy fires once). */
  private busyAt = Infinity;
  /** Set while the module is unusable (faulted, rebuild pending or failed). */
  private broken: string | null = null;
  private interrupted = false;
  /** What each rule declares, in member order. */
  metas: RuleMeta[] = [];
  /** What each rule needs with its options set (see Need in the SDK), in member order. */
  needs: string[][] = [];
  private readonly limits: Pick<SandboxLimits, 'memoryMb' | 'stackKb'>;

  /** The current call's event time: "now" for the rule's store operations. */
  private now = 0;

  /**
   * @param onBusy called (from inside the interrupt handler) once a call has run for
   *   BUSY_MS: the worker uses it to send results it is holding before this call ends.
   * @param storeCall runs the rule's ctx.store operations (none: the store is unavailable).
   */
  private constructor(private readonly members: RuleSource[], private readonly onBusy: () => void, private readonly storeCall?: StoreCall) {
    this.limits = moduleLimits(members);
  }

  /** A module for `members` (one rule, or a group sharing the module), loaded and installed. */
  static async create(members: RuleSource[], onBusy: () => void = () => undefined, storeCall?: StoreCall): Promise<RuleSandbox> {
    const sb = new RuleSandbox(members, onBusy, storeCall);
    await sb.boot();
    return sb;
  }

  /** The first rule's metadata (a module made to inspect one rule). */
  get meta(): RuleMeta {
    return this.metas[0]!;
  }

  private async boot(): Promise<void> {
    const limits = this.limits;
    const pages = Math.max(MIN_PAGES, Math.ceil((limits.memoryMb * 1024 * 1024) / WASM_PAGE));
    // A fresh memory each boot: a rebuilt module shares nothing with the one that faulted.
    const memory = new WebAssembly.Memory({ initial: MIN_PAGES, maximum: pages });
    // The variant must be the default export itself, or newVariant drops wasmMemory silently.
    const mod = await newQuickJSWASMModuleFromVariant(newVariant(variant, { wasmModule: () => wasmModule, wasmMemory: memory }));
    const rt = mod.newRuntime();
    rt.setMaxStackSize(limits.stackKb * 1024);
    rt.setInterruptHandler(() => {
      const now = performance.now();
      if (now > this.busyAt) {
        this.busyAt = Infinity;
        this.onBusy();
      }
      if (now <= this.deadline) return false;
      this.interrupted = true;
      return true;
    });
    this.runtime = rt;
    this.ctx = rt.newContext();
    try {
      this.installStore();
      this.eval(GUEST_PRELUDE, 'portcullis:prelude');
      const pc = this.keep(this.ctx.getProp(this.ctx.global, '__pc'));
      // Held as handles: a rule that later replaces globalThis.__pc cannot redirect calls.
      this.callDeltaFn = this.keep(this.ctx.getProp(pc, 'callDelta'));
      this.againFn = this.keep(this.ctx.getProp(pc, 'again'));
      this.dropFn = this.keep(this.ctx.getProp(pc, 'drop'));
      const setOptions = this.keep(this.ctx.getProp(pc, 'setOptions'));
      this.metas = [];
      this.needs = [];
      for (const [i, m] of this.members.entries()) {
        try {
          this.deadline = performance.now() + LOAD_TIMEOUT_MS;
          this.eval(m.code, m.file);
          this.metas.push(JSON.parse(this.eval(GUEST_INSTALL, 'portcullis:install', m.file)) as RuleMeta);
          if (m.optionsJson === null) continue;
          const index = this.ctx.newNumber(i);
          const opts = this.ctx.newString(m.optionsJson);
          const lines = this.ctx.newString(m.optionLinesJson ?? '{}');
          const r = this.ctx.callFunction(setOptions, this.ctx.undefined, index, opts, lines);
          index.dispose();
          opts.dispose();
          lines.dispose();
          if (r.error) throw new RuleLoadError(`${m.file}: options: ${this.describe(r.error)}`);
          this.needs.push(JSON.parse(this.ctx.getString(r.value)) as string[]);
          r.value.dispose();
        } catch (e) {
          if (e instanceof RuleLoadError) throw e;
          throw new RuleLoadError(`${m.file}: ${(e as Error).message}`);
        }
      }
    } catch (e) {
      this.dispose();
      throw e instanceof RuleLoadError ? e : new RuleLoadError(`${this.members[0]!.file}: ${(e as Error).message}`);
    } finally {
      this.deadline = Infinity;
    }
  }

  /** Evaluates code; returns the result as a string, or throws RuleLoadError. */
  private eval(code: string, filename: string, reportAs = filename): string {
    this.interrupted = false;
    const r = this.ctx.evalCode(code, filename, { type: 'global', strict: true });
    if (r.error) {
      const interrupted = this.interrupted;
      const what = this.describe(r.error); // also frees the error handle
      if (interrupted) throw new RuleLoadError(`${reportAs}: top-level code ran past ${LOAD_TIMEOUT_MS} ms while loading (a loop outside the handlers?)`);
      throw new RuleLoadError(`${reportAs}: ${what}`);
    }
    const s = this.ctx.typeof(r.value) === 'string' ? this.ctx.getString(r.value) : '';
    r.value.dispose();
    return s;
  }

  /**
   * The one host function a rule can reach: its store operations, as (op, JSON args)
   * strings in and a JSON string out. Anything malformed throws a TypeError in the rule.
   */
  private installStore(): void {
    const ctx = this.ctx;
    const fn = ctx.newFunction('__portcullisStore', (opH, argsH) => {
      try {
        if (!this.storeCall) throw new Error('the store is not available while a rule loads');
        const op = ctx.typeof(opH) === 'string' ? ctx.getString(opH) : '';
        const json = ctx.typeof(argsH) === 'string' ? ctx.getString(argsH) : '';
        if (json.length > 4096) throw new TypeError('store arguments are too long');
        const args = JSON.parse(json) as unknown;
        if (!Array.isArray(args)) throw new TypeError('store arguments must be an array');
        return ctx.newString(JSON.stringify(this.storeCall(op, args, this.now) ?? null));
      } catch (e) {
        return { error: ctx.newError({ name: e instanceof TypeError ? 'TypeError' : 'Error', message: (e as Error).message }) };
      }
    });
    ctx.setProp(ctx.global, '__portcullisStore', fn);
    fn.dispose();
  }

  /** Source map readers by rule file (made when first needed). */
  private mappers = new Map<string, SourceMapConsumer | null>();

  /** A bundle position as file:line:col of the rule's source (via its source map). */
  private position(file: string, line: number, col: number): string {
    let mapper = this.mappers.get(file);
    if (mapper === undefined) {
      const map = this.members.find((m) => m.file === file)?.map;
      this.mappers.set(file, (mapper = map ? new SourceMapConsumer(JSON.parse(map) as RawSourceMap) : null));
    }
    const p = mapper?.originalPositionFor({ line, column: col - 1 });
    if (!p?.source || p.line == null) return `${file}:${line}:${col} of the compiled rule`;
    return `${resolve(BUNDLE_DIR, p.source)}:${p.line}:${(p.column ?? 0) + 1}`;
  }

  private keep(h: QuickJSHandle): QuickJSHandle {
    this.handles.push(h);
    return h;
  }

  /** Reads `name: message` and the first stack frame of a guest error, then frees it. */
  private describe(err: QuickJSHandle): string {
    const ctx = this.ctx;
    this.deadline = performance.now() + DESCRIBE_MS;
    try {
      if (ctx.typeof(err) !== 'object') return `threw ${String(ctx.dump(err)).slice(0, 200)}`;
      const prop = (key: string): string => {
        const h = ctx.getProp(err, key);
        const s = ctx.typeof(h) === 'string' ? ctx.getString(h) : '';
        h.dispose();
        return s;
      };
      // QuickJS stack lines read "    at f (rule.ts:39:23)", positions in the compiled bundle.
      const stack = prop('stack');
      // The first frame in the rule's own code: an error the SDK throws (reject(450) in a
      // JavaScript rule) is reported where the rule called it.
      const frames = [...stack.matchAll(/at (?:[^\s(]+ \()?([^()\s]+?):(\d+)(?::(\d+))?\)?$/gm)]
        .filter((f) => !f[1]!.startsWith('portcullis:'))
        .map((f) => this.position(f[1]!, Number(f[2]), Number(f[3] || 1)));
      const at = frames.find((f) => !f.startsWith(SDK_DIR)) ?? frames[0];
      const where = at ? ` (at ${at})` : '';
      return `${prop('name') || 'Error'}: ${prop('message').slice(0, 300)}${where}`;
    } catch {
      return 'threw an unreadable value';
    } finally {
      err.dispose();
    }
  }

  /** Resolves once a rebuild after a fault is over (null when none is pending). */
  get pending(): Promise<void> | null {
    return this.rebuilding;
  }

  /**
   * Calls rule `member`'s handler for `phase`. The parts of the event that did not change
   * since this session's last call here are null: the guest reuses its parsed copy.
   * Never throws; every failure is an outcome. Callers await `pending` first.
   */
  callDelta(member: number, id: string, phase: Phase, sid: string, time: number, session: string | null, envelope: string | null, rest: string): RuleResult {
    this.now = time;
    return this.invoke(member, id, this.callDeltaFn, phase, [sid, time, session, envelope, rest]);
  }

  /**
   * Calls rule `member`'s handler for the event of the last `callDelta` here, parsed once
   * for the rules of the module that follow each other in a phase. Only right after a
   * call that ended `ok` (the caller makes sure).
   */
  callAgain(member: number, id: string, phase: Phase): RuleResult {
    return this.invoke(member, id, this.againFn, phase, []);
  }

  /** Forgets a session's cached event parts (the session ended). */
  drop(sid: string): void {
    if (this.broken) return;
    const h = this.ctx.newString(sid);
    this.deadline = performance.now() + DESCRIBE_MS;
    try {
      const r = this.ctx.callFunction(this.dropFn, this.ctx.undefined, h);
      (r.error ?? r.value).dispose();
    } finally {
      h.dispose();
      this.deadline = Infinity;
    }
  }

  /** Rebuilds so far: a rebuilt module has lost whatever the guest cached. */
  get generation(): number {
    return this.gen;
  }

  private invoke(member: number, id: string, fn: QuickJSHandle, phase: Phase, args: (string | number | null)[]): RuleResult {
    const limits = this.members[member]!.limits;
    const t0 = performance.now();
    const done = (outcome: Outcome, error?: string): RuleResult => ({
      id, outcome, verdict: { action: 'next' }, effects: {}, ms: performance.now() - t0, error,
    });
    if (this.broken) return done('crash', this.broken);
    const ctx = this.ctx;
    let phaseName = this.phaseNames.get(phase);
    if (!phaseName) this.phaseNames.set(phase, (phaseName = this.keep(ctx.newString(phase))));
    this.interrupted = false;
    this.deadline = t0 + limits.timeoutMs;
    this.busyAt = t0 + BUSY_MS;
    let reply: string;
    try {
      const handles = [member, ...args].map((a) => (a === null ? ctx.null : typeof a === 'number' ? ctx.newNumber(a) : ctx.newString(a)));
      const r = ctx.callFunction(fn, ctx.undefined, phaseName, ...handles);
      for (const h of handles) if (h !== ctx.null) h.dispose();
      if (r.error) {
        const interrupted = this.interrupted;
        const why = this.describe(r.error);
        if (interrupted) return done('timeout', `ran past its ${limits.timeoutMs} ms deadline`);
        if (/out of memory/i.test(why)) {
          this.rebuild();
          return done('oom', `exceeded ${this.members.length > 1 ? `its module's` : 'its'} ${this.limits.memoryMb} MiB memory cap`);
        }
        if (/stack overflow|call stack/i.test(why)) return done('stack-overflow', why);
        return done('error', why);
      }
      reply = ctx.getString(r.value);
      r.value.dispose();
    } catch (e) {
      // The wasm instance itself faulted (abort, trap): never reuse it.
      this.rebuild();
      return done('crash', (e as Error).message);
    } finally {
      this.deadline = Infinity;
      this.busyAt = Infinity;
    }
    try {
      const { verdict, effects } = parseGuestReply(reply);
      return { id, outcome: 'ok', verdict, effects, ms: performance.now() - t0 };
    } catch (e) {
      return done('invalid-verdict', (e as Error).message);
    }
  }

  /** Throws the faulted module away and boots a fresh one from the same source. */
  private rebuild(): void {
    const old = { runtime: this.runtime, ctx: this.ctx, handles: this.handles };
    this.gen++;
    this.broken = 'is being rebuilt after a fault';
    this.handles = [];
    this.phaseNames.clear();
    this.rebuilding = (async () => {
      try {
        RuleSandbox.disposeParts(old);
      } catch {
        // A faulted module may not free cleanly; it is unreachable now either way.
      }
      try {
        await this.boot();
        this.broken = null;
      } catch (e) {
        this.broken = `could not be rebuilt after a fault: ${(e as Error).message}`;
      }
      this.rebuilding = null;
    })();
  }

  private static disposeParts(p: { runtime?: QuickJSRuntime; ctx?: QuickJSContext; handles: QuickJSHandle[] }): void {
    for (const h of p.handles) if (h.alive) h.dispose();
    if (p.ctx?.alive) p.ctx.dispose();
    if (p.runtime?.alive) p.runtime.dispose();
  }

  dispose(): void {
    try {
      RuleSandbox.disposeParts({ runtime: this.runtime, ctx: this.ctx, handles: this.handles });
    } catch {
      // see rebuild()
    }
    this.handles = [];
    this.phaseNames.clear();
  }
}
