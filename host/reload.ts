/**
 * Hot reload: a change to a rules directory or the config file (seen by chokidar), a
 * SIGHUP or `portcullis reload` builds a new RuleSet version in the background and swaps
 * it in. Only changed rule files are compiled again. A broken edit never takes effect:
 * the last good version keeps serving, and the problems (file:line:col or JSON path) are
 * logged, counted and kept in the status file until a good version replaces them.
 */
import { writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from 'pino';
import { ConfigError, loadConfig, optionFilesOf, type Config, type ConfigOverrides } from './config/config.js';
import type { Metrics } from './metrics.js';
import { loadRuleSet, ruleDirs, RuleCache, RuleSetError, type RuleSet } from './pipeline/ruleset.js';
import type { Sandbox } from './sandbox/sandbox.js';
import { adminRuleFiles, formatTypeProblem, typeCheckRules } from './typecheck.js';

/**
 * Config keys that take a restart to change (everything else applies live; `tls` too:
 * the files are read again at each reload). delivery: its connection pools and queue
 * are built at start; a message in flight must not change next hop half-way. admin: its
 * listener, and the token it checks, are set up at start.
 */
const RESTART_KEYS = ['listen', 'admin', 'dataDir', 'store', 'sandbox', 'delivery'] as const;
/** Editors save in bursts (temp file, rename, chmod): wait this long for quiet. */
const DEBOUNCE_MS = 50;

export interface ReloadDeps {
  /** The config file to re-read (none: the embedded defaults never change). */
  configFile?: string;
  overrides: ConfigOverrides;
  config: Config;
  ruleSet: RuleSet;
  sandbox: Sandbox;
  cache: RuleCache;
  log: Logger;
  metrics: Metrics;
  /** Swaps in a good new version. */
  apply(config: Config, ruleSet: RuleSet): void;
  /** Where status.json goes. */
  dataDir: string;
}

export interface ReloadStatus {
  pid: number;
  startedAt: string;
  version: number;
  rules: string[];
  reloads: { ok: number; failed: number };
  lastReload: { at: string; version: number; ms: number; reason: string; changed: string[] } | null;
  /** The problems of the last failed reload, until a reload succeeds. */
  lastError: { at: string; reason: string; problems: string[] } | null;
  restartNeeded: string[];
  /** The current rule set's warnings (a settings entry for a rule that is not there). */
  warnings?: readonly string[];
  /** Where the admin listener listens (HOST:PORT, the real port when the config said 0), or null: what `portcullis conn` asks. */
  admin?: string | null;
  /** Counters (hits per rule and verdict, failures, refusals…), as of `savedAt`. */
  counters?: Record<string, number>;
  savedAt?: string;
}

export class Reloader {
  private config: Config;
  private ruleSet: RuleSet;
  private version: number;
  private running: Promise<void> | null = null;
  private again: string | null = null;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private pendingPaths = new Set<string>();
  private typeCheck: Promise<void> | null = null;
  private typeCheckAgain = false;
  readonly status: ReloadStatus;
  /** The last status.json write (see writeStatus). */
  private statusWritten: Promise<void> = Promise.resolve();

  constructor(private readonly d: ReloadDeps) {
    this.config = d.config;
    this.ruleSet = d.ruleSet;
    this.version = d.ruleSet.version;
    this.status = {
      pid: process.pid, startedAt: new Date().toISOString(), version: this.version, rules: d.ruleSet.rules.map((r) => r.name),
      reloads: { ok: 0, failed: 0 }, lastReload: null, lastError: null, restartNeeded: [], warnings: d.ruleSet.warnings,
    };
  }

  /** The config now in force. */
  get currentConfig(): Config {
    return this.config;
  }

  /** Watches the rules directories and the config file; resolves once watching. */
  async watch(): Promise<void> {
    const paths = [...ruleDirs(this.config), ...(this.d.configFile ? [this.d.configFile] : []), ...optionFilesOf(this.config)];
    // chokidar's atomic option (on by default) folds an editor's write-temp-then-rename into one change.
    // Depth 3: helpers in subdirectories (lib/) are part of the rules that import them.
    this.watcher = watch(paths, { ignoreInitial: true, depth: 3 });
    this.watcher.on('all', (_event, path) => {
      const optionFile = optionFilesOf(this.config).includes(path); // a plain list, any name
      if (!optionFile && (!/\.([mc]?[tj]s|json)$/.test(path) || /\.(test|spec|d)\.[mc]?[tj]s$/.test(path))) return;
      this.pendingPaths.add(path);
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        this.timer = null;
        const changed = [...this.pendingPaths].join(', ');
        this.pendingPaths.clear();
        void this.reload(`changed: ${changed}`);
      }, DEBOUNCE_MS);
    });
    this.watcher.on('error', (e) => this.d.log.warn({ err: e }, `watching rules and config: ${(e as Error).message}`));
    // Until the first scan is done, a change would go unseen.
    await new Promise<void>((ok) => this.watcher!.once('ready', () => ok()));
  }

  /** Runs a reload; one at a time, and a request during one runs once more after it. */
  reload(reason: string): Promise<void> {
    if (this.running) {
      this.again = reason;
      return this.running;
    }
    this.running = (async () => {
      let why: string | null = reason;
      while (why !== null) {
        this.again = null;
        await this.reloadOnce(why);
        why = this.again;
      }
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async reloadOnce(reason: string): Promise<void> {
    const t0 = performance.now();
    let config = this.config;
    if (this.d.configFile) {
      try {
        config = loadConfig(this.d.configFile, this.d.overrides);
      } catch (e) {
        if (e instanceof ConfigError) return this.fail(reason, e.lines.map((line) => `config ${line}`));
        throw e;
      }
    }
    const version = ++this.version;
    let ruleSet: RuleSet;
    try {
      ruleSet = await loadRuleSet(config, this.d.sandbox, version, { cache: this.d.cache });
    } catch (e) {
      if (e instanceof RuleSetError) return this.fail(reason, e.problems);
      throw e;
    }
    const changed = [...describeRuleChanges(this.ruleSet, ruleSet), ...changedKeys(this.config, config).map((k) => `config ${k}`)];
    const restartNeeded = RESTART_KEYS.filter((k) => JSON.stringify(this.config[k]) !== JSON.stringify(config[k]));
    // Keys that need a restart keep their running values.
    for (const k of restartNeeded) (config as unknown as Record<string, unknown>)[k] = this.config[k];
    this.d.apply(config, ruleSet);
    this.config = config;
    this.watcher?.add(optionFilesOf(config)); // a file a rule's options now come from (chokidar ignores ones it has)
    this.ruleSet = ruleSet;
    const ms = Math.round(performance.now() - t0);
    this.d.metrics.inc('reloads_total', { result: 'ok' });
    this.d.log.info({ version, ms, changed, reason }, `reloaded: version ${version} in ${ms} ms (${changed.join('; ') || 'no change'})`);
    if (restartNeeded.length) this.d.log.warn({ keys: restartNeeded }, `config ${restartNeeded.join(', ')} changed: that takes a restart; the running values stay`);
    for (const w of ruleSet.warnings) this.d.log.warn({ version }, w);
    Object.assign(this.status, {
      version, rules: ruleSet.rules.map((r) => r.name), lastError: null, warnings: ruleSet.warnings,
      lastReload: { at: new Date().toISOString(), version, ms, reason, changed },
      restartNeeded: [...new Set([...this.status.restartNeeded, ...restartNeeded])],
    });
    this.status.reloads.ok++;
    void this.writeStatus();
    if (changed.some((c) => c.startsWith('rule '))) this.checkTypes();
  }

  /**
   * Loading only strips types (esbuild: a reload in milliseconds), so a rule with a type
   * error is live now; the compiler runs after, off the hot path, one run at a time, and
   * its findings are warnings: the reload stands (`portcullis check` fails on them).
   */
  private checkTypes(): void {
    if (this.typeCheck) {
      this.typeCheckAgain = true;
      return;
    }
    this.typeCheckAgain = false;
    this.typeCheck = typeCheckRules(adminRuleFiles(this.config))
      .then((problems) => {
        for (const p of problems) this.d.log.warn({ file: p.file, line: p.line, col: p.col, code: p.code }, `type error (the rule is loaded; portcullis check fails on it): ${formatTypeProblem(p)}`);
      })
      .catch((e: Error) => this.d.log.warn({ err: e }, `type check after reload: ${e.message}`))
      .finally(() => {
        this.typeCheck = null;
        if (this.typeCheckAgain) this.checkTypes();
      });
  }

  private fail(reason: string, problems: string[]): void {
    this.d.metrics.inc('reloads_total', { result: 'failed' });
    this.d.log.error({ reason, problems }, `reload failed, version ${this.ruleSet.version} keeps serving:\n  ${problems.join('\n  ')}`);
    this.status.lastError = { at: new Date().toISOString(), reason, problems };
    this.status.reloads.failed++;
    void this.writeStatus();
  }

  /**
   * Writes status.json (with the counters), after any write under way so two never race
   * for the file; the host also calls it every few seconds.
   */
  writeStatus(): Promise<void> {
    this.statusWritten = this.statusWritten.then(() => this.writeStatusNow());
    return this.statusWritten;
  }

  private async writeStatusNow(): Promise<void> {
    try {
      this.status.counters = await this.d.metrics.snapshot();
      this.status.savedAt = new Date().toISOString();
      const file = join(this.d.dataDir, 'status.json');
      writeFileSync(`${file}.tmp`, JSON.stringify(this.status, null, 2) + '\n');
      renameSync(`${file}.tmp`, file);
    } catch (e) {
      this.d.log.warn({ err: e }, `could not write status.json: ${(e as Error).message}`);
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await this.watcher?.close();
    await this.running;
    this.typeCheckAgain = false;
    await this.typeCheck;
  }
}

function describeRuleChanges(before: RuleSet, after: RuleSet): string[] {
  const old = new Map(before.rules.map((r) => [r.name, r]));
  const out: string[] = [];
  for (const r of after.rules) {
    const o = old.get(r.name);
    if (!o) out.push(`rule ${r.name} added`);
    else if (o.fingerprint !== r.fingerprint || o.file !== r.file) out.push(`rule ${r.name} changed`);
    old.delete(r.name);
  }
  for (const name of old.keys()) out.push(`rule ${name} removed`);
  return out;
}

function changedKeys(a: Config, b: Config): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => k !== 'rules' && JSON.stringify((a as unknown as Record<string, unknown>)[k]) !== JSON.stringify((b as unknown as Record<string, unknown>)[k]));
}
