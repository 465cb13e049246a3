/**
 * A RuleSet: every enabled rule compiled, inspected, its options validated and installed
 * in the sandbox, frozen under a version number. Sessions pin the RuleSet current at
 * their connect; it is built whole or not at all.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { Ajv2020 as Ajv, type ErrorObject } from 'ajv/dist/2020.js';
import type { Phase } from '../../sdk/index.js';
import { describeAjvError, type Config, type RuleAction, type RuleLimits, type RuleSettings } from '../config/config.js';
import { isUriNeed, parseNeed, uniqueNeeds, type DnsNeed } from '../dns/facts.js';
import { BUILTIN_RULES } from '../paths.js';
import { compileRule } from '../sandbox/compile.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { ChainLink, RuleCode, RuleMeta } from '../sandbox/protocol.js';
import { chainLink } from './pipeline.js';
import { describePlace, placeTest, type ScopeTest } from './scope.js';

export interface LoadedRule {
  id: string;
  name: string;
  file: string;
  priority: number;
  action: RuleAction;
  limits: RuleLimits;
  meta: RuleMeta;
  /** How its result ends or continues its phase (`chainLink`): what the sandbox follows and the pipeline reads. */
  link: ChainLink;
  /** What the rule needs with its options (`body`, `dnsbl:<zone>`, …); known once installed. */
  needs: string[];
  /** Its options as validated, defaults filled in (what `ctx.options` holds). */
  options: Record<string, unknown>;
  /** Source hash + settings: equal fingerprints mean the rule did not change. */
  fingerprint: string;
  /** Where it runs (`only`/`except` in its settings), or null: everywhere; and that in words. */
  place: ScopeTest | null;
  placeText: string | null;
}

export type PhaseChains = Partial<Record<Phase, ChainLink[]>>;

export interface RuleSet {
  readonly version: number;
  readonly rules: readonly LoadedRule[];
  readonly byId: ReadonlyMap<string, LoadedRule>;
  /**
   * Per phase, the rules that handle it in run order (absent = no rule handles it): for
   * any client, and for authenticated clients (without the rules that skip them).
   */
  readonly chains: { readonly anyone: PhaseChains; readonly authenticated: PhaseChains };
  /** Names of the rules that skip authenticated clients (`skip: { authenticated: true }`). */
  readonly skipsAuthenticated: ReadonlySet<string>;
  /** Per phase, the sum of its rules' deadlines (for the pool's watchdog). */
  readonly budgets: Partial<Record<Phase, number>>;
  /** True when a rule declared needs: ['body']. */
  readonly needsBody: boolean;
  /** True when a rule declared needs: ['mime']: only then is a message's MIME structure parsed. */
  readonly needsMime: boolean;
  /** True when a rule declared needs: ['uris'] or a URI DNS need (`uribl:`, `uribl-ip:`, `uri-dns`): the links' hosts are extracted from the MIME parts. */
  readonly needsUris: boolean;
  /** True when a rule declared needs: ['spamd'] (the message goes to spamd at end of data). */
  readonly needsSpamd: boolean;
  /** True when a rule declared needs: ['callahead'] (each recipient is asked of its next hop). */
  readonly needsCallahead: boolean;
  /** Per phase, the DNS facts its rules need (absent = none: the phase never waits for DNS). */
  readonly dns: Partial<Record<Phase, DnsNeed[]>>;
  /** Every DNS fact any rule needs, looked up ahead of time (IP lists at connect, sender facts at MAIL). */
  readonly dnsAll: DnsNeed[];
  /** What is odd but does not stop the rule set (a settings entry for a rule that is not there). */
  readonly warnings: readonly string[];
  /** True when some rule runs only in places (`only`/`except`): chains are then cut per event. */
  readonly placed: boolean;
  /** Rules found but not running: off by the config, or shipped off and not turned on. */
  readonly off: readonly OffRule[];
}

/** Why a rule is not running, for `portcullis check` and the log. */
export function offReason(r: OffRule): string {
  return r.byConfig ? 'turned off by the config' : `ships off; rules.settings.${r.name}.enabled: true turns it on`;
}

/** A rule that is not running, and why. */
export interface OffRule {
  name: string;
  file: string;
  /** True: the config turned it off; false: it ships off (`enabled: false`) and the config did not turn it on. */
  byConfig: boolean;
}

/** Loading failed; each problem names the file (file:line:col) or config path. */
export class RuleSetError extends Error {
  constructor(readonly problems: string[]) {
    super(`rules not loaded:\n  ${problems.join('\n  ')}`);
  }
}

/** Rule files of a directory: *.ts / *.js, not tests or declarations, sorted. */
export function ruleFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => /\.(ts|js|mts|mjs)$/.test(f) && !/\.(test|spec|d)\.[mc]?[tj]s$/.test(f))
    .sort()
    .map((f) => resolve(join(dir, f)))
    .filter((f) => statSync(f).isFile());
}

export function ruleDirs(cfg: Config): string[] {
  return [...(cfg.rules.builtin ? [BUILTIN_RULES] : []), ...cfg.rules.dirs.map((d) => resolve(d))];
}

const optionsAjv = new Ajv({ allErrors: true, useDefaults: true, strict: false, verbose: true }); // verbose: errors carry the bad value
// JSON Schema's `regex` format (an ECMA-262 regular expression): a rule whose options are
// patterns (content-filter) has a bad one refused at load, with its line, not at a message.
optionsAjv.addFormat('regex', { type: 'string', validate: (s: string) => regexError(s) === null });

/** Why `source` is not a regular expression (as rules compile theirs, case-insensitive), or null. */
function regexError(source: string): string | null {
  try {
    new RegExp(source, 'i');
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * An options error in words; one in a value read from a file (`optionFiles`) names the
 * file and line, which is where the admin fixes it.
 */
function describeOptionError(e: ErrorObject, name: string, s: RuleSettings): string {
  const [, option = '', index] = e.instancePath.split('/');
  const line = index === undefined ? undefined : s.optionLines?.[option]?.[Number(index)];
  const what = e.keyword === 'format' && (e.params as { format?: string }).format === 'regex' ? regexError(String(e.data)) ?? 'not a regular expression' : null;
  if (line === undefined) return what ? `/rules/settings/${name}/options${e.instancePath}: ${what}` : describeAjvError(e, `/rules/settings/${name}/options`);
  const problem = what ?? describeAjvError(e, '').replace(/^[^:]*: /, '');
  return `/rules/settings/${name}/optionFiles/${option}: ${s.optionFiles?.[option]} line ${line}: ${JSON.stringify(e.data)}: ${problem}`;
}

/**
 * Compiled and inspected rules by source content, so a reload compiles and loads only
 * the files that changed. A rule's content is its file and every helper it imports
 * (`./lib/util.ts`): saving a helper recompiles the rules that use it.
 */
export class RuleCache {
  private entries = new Map<string, { hash: string; inputs: Map<string, string>; code: string; map: string; meta: RuleMeta }>();

  async get(file: string, pool: Sandbox): Promise<{ code: string; map: string; meta: RuleMeta; hash: string }> {
    const hit = this.entries.get(file);
    // Hashed before compiling: a save during the compile makes the next look a miss, never a stale hit.
    const before = new Map([...(hit?.inputs.keys() ?? [file])].map((f) => [f, contentHash(f)]));
    if (hit && [...hit.inputs].every(([f, h]) => before.get(f) === h)) return hit;
    const { code, map, inputs: files } = await compileRule(file);
    const inputs = new Map(files.map((f) => [f, before.get(f) ?? contentHash(f)]));
    const hash = createHash('sha256').update([...inputs].map(([f, h]) => `${f} ${h}`).sort().join('\n')).digest('hex');
    const entry = { hash, inputs, code, map, meta: await pool.inspect(file, code) };
    this.entries.set(file, entry);
    return entry;
  }

  /** Forgets files that are gone. */
  keep(files: Set<string>): void {
    for (const f of this.entries.keys()) if (!files.has(f)) this.entries.delete(f);
  }
}

/** A file's content hash; '' when it cannot be read (deleted: whoever imports it must compile again). */
function contentHash(file: string): string {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex');
  } catch {
    return '';
  }
}

export interface LoadOptions {
  /** Exactly these files instead of the config's directories (the test harness). */
  files?: string[];
  cache?: RuleCache;
}

/** Builds a RuleSet from the config's rule directories (or `files`), installed in the sandbox. */
export async function loadRuleSet(cfg: Config, pool: Sandbox, version: number, o: LoadOptions = {}): Promise<RuleSet> {
  const onlyFiles = o.files;
  const cache = o.cache ?? new RuleCache();
  const problems: string[] = [];
  const found: { file: string; code: string; map: string; meta: RuleMeta; hash: string }[] = [];
  const sources = onlyFiles ? [{ dir: '(files)', files: () => onlyFiles.map((f) => resolve(f)) }] : ruleDirs(cfg).map((dir) => ({ dir, files: () => ruleFiles(dir) }));
  for (const source of sources) {
    let files: string[];
    try {
      files = source.files();
    } catch (e) {
      problems.push(`${source.dir}: cannot read rules directory: ${(e as Error).message}`);
      continue;
    }
    for (const file of files) {
      try {
        found.push({ file, ...(await cache.get(file, pool)) });
      } catch (e) {
        problems.push((e as Error).message);
      }
    }
  }

  cache.keep(new Set(found.map((f) => f.file)));
  const rules: LoadedRule[] = [];
  const off: OffRule[] = [];
  const codes: RuleCode[] = [];
  const seen = new Map<string, string>();
  for (const { file, code, map, meta, hash } of found) {
    const dup = seen.get(meta.name);
    if (dup) {
      problems.push(`${file}: rule name "${meta.name}" is already used by ${dup}`);
      continue;
    }
    seen.set(meta.name, file);
    const s = cfg.rules.settings[meta.name] ?? { action: 'enforce' as const };
    if (!(s.enabled ?? meta.enabled)) {
      off.push({ name: meta.name, file, byConfig: s.enabled === false });
      continue;
    }
    const options = structuredClone(s.options ?? {});
    if (meta.options) {
      try {
        const check = optionsAjv.compile(meta.options);
        if (!check(options)) {
          for (const e of check.errors ?? []) problems.push(describeOptionError(e, meta.name, s));
          continue;
        }
      } catch (e) {
        problems.push(`${file}: the rule's options schema is not valid JSON Schema: ${(e as Error).message}`);
        continue;
      }
    } else if (s.options && Object.keys(s.options).length) {
      problems.push(`/rules/settings/${meta.name}/options: the rule declares no options`);
      continue;
    }
    const d = cfg.rules.defaults;
    const limits: RuleLimits = {
      timeoutMs: s.timeoutMs ?? d.timeoutMs,
      memoryMb: s.memoryMb ?? d.memoryMb,
      stackKb: s.stackKb ?? d.stackKb,
      failPolicy: s.failPolicy ?? d.failPolicy,
    };
    const id = `${version}:${meta.name}`;
    const action = s.action ?? 'enforce';
    rules.push({ id, name: meta.name, file, priority: s.priority ?? meta.priority, action, limits, meta, link: chainLink(id, action, limits), needs: [],
      options, fingerprint: `${hash}:${JSON.stringify([options, s.optionLines, limits, action, s.priority, s.only, s.except])}`, place: placeTest(s.only, s.except), placeText: describePlace(s.only, s.except) });
    // The built-in rules are ours: they may share a module (see rule-sandbox.ts); an admin's never do.
    const shared = cfg.sandbox.shareBuiltins && file.startsWith(BUILTIN_RULES + sep);
    codes.push({ id, file, code, map, optionsJson: JSON.stringify(options), optionLinesJson: JSON.stringify(s.optionLines ?? {}), limits, ...(shared ? { group: 'builtin' } : {}) });
  }
  // A settings entry without its rule is a warning, not an error: deleting a rule's file
  // must remove the rule (on reload, and at the next start), not fail the reload and keep
  // the deleted rule running until someone also edits the config.
  const warnings = Object.keys(cfg.rules.settings)
    .filter((name) => !seen.has(name))
    .map((name) => `/rules/settings/${name}: no rule named "${name}" was found in ${onlyFiles ? 'the files given' : ruleDirs(cfg).join(', ')}; the entry is ignored`);
  if (problems.length) throw new RuleSetError(problems);

  // Stable sort: equal priorities keep directory order (built-in first, then by file name).
  rules.sort((a, b) => a.priority - b.priority);
  const chains = { anyone: {} as PhaseChains, authenticated: {} as PhaseChains };
  const budgets: Partial<Record<Phase, number>> = {};
  for (const r of rules) {
    for (const phase of r.meta.phases) {
      (chains.anyone[phase] ??= []).push(r.link);
      if (!r.meta.skip.authenticated) (chains.authenticated[phase] ??= []).push(r.link);
      budgets[phase] = (budgets[phase] ?? 0) + r.limits.timeoutMs;
    }
  }
  const needs = await pool.install(version, codes).catch((e: Error) => {
    throw new RuleSetError(e.message.split('\n'));
  });
  let needsBody = false;
  let needsMime = false;
  let needsUris = false;
  let needsSpamd = false;
  let needsCallahead = false;
  const dns: Partial<Record<Phase, DnsNeed[]>> = {};
  for (const r of rules) {
    r.needs = needs[r.id] ?? [];
    for (const n of r.needs) {
      const need = parseNeed(n);
      if (need === 'body') needsBody = true;
      else if (need === 'mime') needsMime = true;
      else if (need === 'uris') needsUris = true;
      else if (need === 'spamd') needsSpamd = true;
      else if (need === 'callahead') needsCallahead = true;
      else if ('error' in need) problems.push(`${r.file}: ${need.error}`);
      else {
        needsUris ||= isUriNeed(need);
        for (const phase of r.meta.phases) (dns[phase] ??= []).push(need);
      }
    }
  }
  if (problems.length) {
    pool.release(version);
    throw new RuleSetError(problems);
  }
  for (const phase of Object.keys(dns) as Phase[]) dns[phase] = uniqueNeeds(dns[phase]!);
  return Object.freeze({
    version,
    rules: Object.freeze(rules),
    byId: new Map(rules.map((r) => [r.id, r])),
    chains,
    skipsAuthenticated: new Set(rules.filter((r) => r.meta.skip.authenticated).map((r) => r.name)),
    budgets,
    needsBody,
    needsMime,
    needsUris,
    needsSpamd,
    needsCallahead,
    dns,
    dnsAll: uniqueNeeds(Object.values(dns).flat()),
    warnings: Object.freeze(warnings),
    off: Object.freeze(off),
    placed: rules.some((r) => r.place !== null),
  });
}
