/**
 * Loads the one JSON config file, fills in defaults from the schema (the only place
 * defaults live) and validates it. Every problem is reported with its JSON path.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Ajv2020 as Ajv } from 'ajv/dist/2020.js';
import type { SpamdConfig } from '../content/spamd.js';
import type { ErrorObject } from 'ajv';
import { ParseErrorCode, parseTree, type ParseError } from 'jsonc-parser';
import type { Phase } from '../../sdk/index.js';
import { isLoopback } from '../net.js';
import { PASSWORD_HASH_FORMAT, parsePasswordHash } from '../password.js';
import { CONFIG_SCHEMA } from '../paths.js';

export interface RuleLimits {
  timeoutMs: number;
  memoryMb: number;
  stackKb: number;
  failPolicy: 'tempfail' | 'continue';
}

/** The phases at which the score thresholds may be checked (config `scores.phases`). */
export type ScorePhase = Extract<Phase, 'rcpt' | 'data' | 'message'>;

export type RuleAction = 'enforce' | 'shadow' | 'quarantine' | 'tempfail';

/** Mail a rule is kept to or kept from (see host/pipeline/scope.ts). */
export interface RuleScope {
  /** Client networks (CIDR or single addresses). */
  clients?: string[];
  /** MAIL FROM patterns: `user@example.org`, `example.org`, `.example.org`, `<>`. */
  senders?: string[];
  /** Recipient patterns, as `senders`. */
  recipients?: string[];
}

export interface RuleSettings extends Partial<RuleLimits> {
  /** Options read from plain-text files (option name → file), one value per line; filled into `options` at load. */
  optionFiles?: Record<string, string>;
  /**
   * Derived at load, never written in a config: for each option read from a file, the
   * file line of each of its values (`ctx.optionLine`, and the line an invalid value is
   * reported at).
   */
  optionLines?: Record<string, number[]>;
  /** Run only for mail in this scope. */
  only?: RuleScope;
  /** Never run for mail in this scope. */
  except?: RuleScope;
  /** Absent: the rule's own default (`RuleDefinition.enabled`). */
  enabled?: boolean;
  priority?: number;
  action: RuleAction;
  options?: Record<string, unknown>;
}

/** The validated config, defaults filled in. Mirrors schemas/config.schema.json. */
export interface Config {
  listen: string[];
  /** The admin HTTP listener (host/admin): /metrics. `listen` null: none. */
  admin: { listen: string | null; token: string | null; metrics: boolean };
  hostname: string;
  banner: string;
  greetPauseMs: number;
  /** Hold refusals decided at connect, HELO and MAIL until RCPT (Postfix's smtpd_delay_reject). */
  delayChecks: boolean;
  /** What a transaction's score (`ctx.score`) does: thresholds (null = none), the phases they are checked at, and the header it is reported in. */
  scores: { phases: ScorePhase[]; tag: number | null; tempfail: number | null; reject: number | null; header: string };
  submissionPorts: number[];
  limits: { maxClients: number; socketTimeoutMs: number; maxMessageBytes: number; maxRecipients: number; maxDelayMs: number; bodyLimit: number; shutdownGraceMs: number };
  localDomains: string[];
  mailboxes: string[];
  relayDomains: string[];
  relayNetworks: string[];
  exemptNetworks: string[];
  dataDir: string;
  store: StoreConfig;
  reverseDns: boolean;
  dns: { servers: string[]; timeoutMs: number; cacheTtlSeconds: number };
  checker?: { command: string[]; timeoutMs: number; concurrency: number };
  /** SpamAssassin's spamd, for rules that need `spamd`; absent: none (those rules fail, 451). */
  spamd?: SpamdConfig;
  /** Session recording for `portcullis replay` (host/record). */
  record: RecordConfig;
  auth: { users: Record<string, string>; allowInsecure: boolean };
  tls?: { key: string; cert: string };
  received: boolean;
  sandbox: { workers: number; shareBuiltins: boolean };
  rules: { builtin: boolean; dirs: string[]; defaults: RuleLimits; settings: Record<string, RuleSettings> };
  log: { level: string; format: 'json' | 'pretty'; file: string | null };
  watch: boolean;
  delivery: DeliveryConfig;
}

/** What goes into a recorded session's message: the header only, the first `limits.bodyLimit` bytes of the body, or all of it. */
export type RecordBodies = 'none' | 'capped' | 'full';

/** Config `record` (schemas/config.schema.json#/properties/record). */
export interface RecordConfig {
  enabled: boolean;
  /** null: `record/` under dataDir. */
  dir: string | null;
  retentionDays: number;
  maxBytes: number;
  bodies: RecordBodies;
  queueSessions: number;
}

/** Where the store persists (schemas/config.schema.json#/properties/store). */
export interface StoreConfig {
  backend: 'sqlite' | 'redis';
  redis: RedisStoreConfig;
}

/** The shared Redis: exactly one of url, sentinels, cluster (checked by `checkStore`). */
export interface RedisStoreConfig {
  url?: string;
  sentinels?: string[];
  sentinelName: string;
  cluster?: string[];
  password?: string;
  keyPrefix: string;
  commandTimeoutMs: number;
  queueLimit: number;
  whileDown: 'local' | 'ignore-counts';
}

/** An SMTP server we pass mail to (schemas/config.schema.json#/$defs/nextHop). */
export interface NextHopConfig {
  host: string;
  port: number;
  secure: boolean;
  starttls: 'off' | 'opportunistic' | 'required';
  auth?: { user: string; pass: string };
  connectTimeoutMs: number;
  timeoutMs: number;
  poolSize: number;
}

export interface DeliveryConfig {
  mode: 'spool' | 'relay';
  nextHop?: NextHopConfig;
  /** Recipient domain (lower case) → its next hop. */
  routes: Record<string, NextHopConfig>;
  queue: { retryBaseMs: number; retryMaxMs: number; maxAgeHours: number; concurrency: number; hold: boolean };
}

/** Settings from the command line; they override the file. */
export interface ConfigOverrides {
  listen?: string;
  /** `--admin HOST:PORT|off`: the admin listener's address, or none. */
  admin?: string;
  dataDir?: string;
  rulesDir?: string;
  /** `--dns HOST:PORT`: the resolver for DNS checks. */
  dns?: string;
  /** `--relay HOST:PORT`: relay mode to that next hop. */
  relay?: string;
  /** `--log-format json|pretty` (a person at a terminal wants pretty; see log.format). */
  logFormat?: string;
}

/** A problem located by line and column (a JSON syntax error) rather than by JSON path. */
const AT_LINE_COL = /^\d+:\d+: /;

/**
 * The config is invalid; `problems` holds one line each: "/json/path: what is wrong", or
 * "line:col: what is wrong" for a syntax error.
 */
export class ConfigError extends Error {
  constructor(readonly source: string, readonly problems: string[]) {
    // A syntax error is one line (the first error only, see parseJson): `invalid config mx.json:3:5: …`.
    super(problems.length === 1 && AT_LINE_COL.test(problems[0]!) ? `invalid config ${source}:${problems[0]}` : `invalid config ${source}:\n  ${problems.join('\n  ')}`);
  }

  /** Each problem with its file, as editors jump to: `mx.json: /limits/maxClients: …`, `mx.json:3:5: …`. */
  get lines(): string[] {
    return this.problems.map((p) => (AT_LINE_COL.test(p) ? `${this.source}:${p}` : `${this.source}: ${p}`));
  }
}

let validator: ReturnType<Ajv['compile']> | undefined;
function validate(raw: unknown): ErrorObject[] {
  if (!validator) {
    const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, strictTypes: false });
    validator = ajv.compile(JSON.parse(readFileSync(CONFIG_SCHEMA, 'utf8')) as object);
  }
  return validator(raw) ? [] : (validator.errors ?? []);
}

/** One readable line per ajv error: `/limits/maxClients: must be >= 1`. */
export function describeAjvError(e: ErrorObject, root = ''): string {
  const path = `${root}${e.instancePath}` || '/';
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return `${path}: unknown property "${String(p.additionalProperty)}"`;
    case 'enum':
      return `${path}: must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'required':
      return `${path}: missing required property "${String(p.missingProperty)}"`;
    default:
      return `${path}: ${e.message ?? e.keyword}`;
  }
}

/**
 * JSON.parse; on a syntax error, a ConfigError with the first error's line and column and
 * what is wrong in words. Only the first: a parser that goes on after an error reports
 * what follows from it (a missing comma is also "a property name expected"), which would
 * send the admin looking for three mistakes where there is one.
 */
export function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const errors: ParseError[] = [];
    parseTree(text, errors, { disallowComments: true, allowTrailingComma: false });
    const first = errors[0];
    if (!text.trim()) throw new ConfigError(source, ['the file is empty; write {} for the embedded defaults']);
    if (!first) throw new ConfigError(source, [`not valid JSON: ${(e as Error).message}`]);
    const before = text.slice(0, first.offset);
    const at = `${before.split('\n').length}:${first.offset - before.lastIndexOf('\n')}`;
    throw new ConfigError(source, [`${at}: not valid JSON: ${syntaxProblem(text, first)}`]);
  }
}

/** A jsonc-parser error as a sentence an admin can act on, naming what was found there. */
function syntaxProblem(text: string, e: ParseError): string {
  const token = text.slice(e.offset, e.offset + e.length);
  const atEnd = e.offset >= text.length;
  const found = atEnd ? 'the end of the file' : token.startsWith('"') ? token.slice(0, 40) : `"${token.slice(0, 40)}"`;
  // `{"a": 1,}`: JSON has no trailing comma, and the parser says only "name expected".
  if ((token === '}' || token === ']') && text.slice(0, e.offset).trimEnd().endsWith(',')) {
    return `the comma before "${token}" has nothing after it (JSON allows no trailing comma)`;
  }
  switch (e.error) {
    case ParseErrorCode.CommaExpected:
      return `a comma is missing before ${found}`;
    case ParseErrorCode.ColonExpected:
      return `a colon is missing after the property name, before ${found}`;
    case ParseErrorCode.PropertyNameExpected:
      return `a property name in double quotes is expected, not ${found}`;
    case ParseErrorCode.ValueExpected:
      return atEnd ? 'the file ends where a value is expected' : `a value is expected (a "string", a number, true, false, null, {...} or [...]), not ${found}`;
    case ParseErrorCode.CloseBraceExpected:
      return `an object is not closed: "}" is missing before ${found}`;
    case ParseErrorCode.CloseBracketExpected:
      return `a list is not closed: "]" is missing before ${found}`;
    case ParseErrorCode.EndOfFileExpected:
      return `the config should end after its closing "}", but ${found} follows`;
    case ParseErrorCode.InvalidCommentToken:
    case ParseErrorCode.UnexpectedEndOfComment:
      return 'comments are not allowed in JSON';
    case ParseErrorCode.UnexpectedEndOfString:
      return 'a string is not closed: its closing " is missing';
    case ParseErrorCode.InvalidNumberFormat:
    case ParseErrorCode.UnexpectedEndOfNumber:
      return `${found} is not a valid number`;
    case ParseErrorCode.InvalidUnicode:
      return 'a \\u escape in a string needs four hex digits';
    case ParseErrorCode.InvalidEscapeCharacter:
      return `${found} is not a valid escape in a string (a backslash itself is written \\\\)`;
    case ParseErrorCode.InvalidCharacter:
      return 'a string holds a raw tab or line break: write it as \\t or \\n';
    default:
      return token.startsWith("'")
        ? `strings take double quotes, not single: ${found}`
        : `${found} is not JSON here (strings take double quotes; true, false and null are lower case)`;
  }
}

function checkNetworks(list: string[], path: string, problems: string[]): void {
  list.forEach((n, i) => {
    const [ip, bits] = n.split('/');
    const family = isIP(ip ?? '');
    const max = family === 6 ? 128 : 32;
    if (!family) problems.push(`${path}/${i}: "${n}" is not an IP address or network`);
    else if (bits !== undefined && !(Number(bits) >= 0 && Number(bits) <= max)) problems.push(`${path}/${i}: prefix length must be 0–${max}`);
  });
}

/**
 * AUTH passwords must be scrypt hashes: a config file is copied, backed up and read by
 * more people than the passwords should be. A plain-text one stops the load (and a
 * reload keeps the last good config) rather than being warned about and used.
 */
function checkPasswords(users: Record<string, string>, problems: string[]): void {
  for (const [user, stored] of Object.entries(users)) {
    if (parsePasswordHash(stored)) continue;
    const pointer = user.replace(/~/g, '~0').replace(/\//g, '~1');
    const what = stored.startsWith('scrypt$') ? `not a valid password hash (${PASSWORD_HASH_FORMAT})` : 'a plain-text password; only scrypt hashes are accepted';
    problems.push(`/auth/users/${pointer}: ${what}: run "portcullis passwd ${user}" and put the line it prints here`);
  }
}

/**
 * The admin listener never shares an address with SMTP (a client would reach the one it
 * did not mean; `listen` 0.0.0.0:25 covers 127.0.0.1:25 too), and beyond loopback it
 * needs a token: anyone who can reach it could read what the rules see, and the admin API
 * to come ends sessions and edits the blacklist.
 */
function checkAdmin(cfg: Config, problems: string[]): void {
  const { listen, token } = cfg.admin;
  if (listen === null) return;
  const admin = parseListen(listen);
  if (admin.port > 65535) return void problems.push('/admin/listen: port must be 0–65535');
  const wildcard = (host: string) => host === '0.0.0.0' || host === '::';
  cfg.listen.forEach((l, i) => {
    const smtp = parseListen(l);
    // Port 0 is a fresh port for each listener: never the same address.
    if (admin.port === 0 || admin.port !== smtp.port) return;
    if (admin.host === smtp.host || wildcard(admin.host) || wildcard(smtp.host)) {
      problems.push(`/admin/listen: ${listen} is where SMTP listens too (/listen/${i}: ${l}): the admin listener needs an address of its own`);
    }
  });
  if (token === null && !isLoopback(admin.host)) {
    problems.push(`/admin/token: required when admin.listen (${listen}) is not a loopback address: set a long random one (openssl rand -hex 32), or listen on 127.0.0.1`);
  }
}

/** A Redis backend needs one way to reach Redis; Redis settings under the SQLite backend are a forgotten `backend`. */
function checkStore(store: StoreConfig, problems: string[]): void {
  const given = (['url', 'sentinels', 'cluster'] as const).filter((k) => store.redis[k] !== undefined);
  if (store.backend === 'redis' && given.length !== 1) {
    problems.push(`/store/redis: say exactly one of url, sentinels or cluster (${given.length ? `got ${given.join(' and ')}` : 'got none'})`);
  }
  if (store.backend === 'sqlite' && given.length) problems.push(`/store/backend: is "sqlite", but store.redis.${given[0]} is set: say "redis" to use it`);
}

/** Reads, merges overrides, fills defaults and validates. Throws ConfigError. */
export function loadConfig(file: string | undefined, overrides: ConfigOverrides = {}): Config {
  if (!file) return configFrom({}, '(embedded defaults)', overrides);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, [`cannot read the file: ${(e as Error).message}`]);
  }
  return configFrom(anchorPaths(parseJson(text, file), dirname(resolve(file))), file, overrides);
}

/**
 * Makes the relative paths written in a config file relative to the file's directory,
 * as nginx and Postfix read theirs: a config means the same from any working directory
 * (`portcullis blacklist add … --config /etc/portcullis/config.json` run from $HOME must
 * open the host's database, not create ./data). What the file does not say (the default
 * ./data) and paths typed on the command line (--data-dir, --rules) stay relative to the
 * working directory, as a path typed in a shell is. A checker command without a slash is
 * a program name, found on PATH as a shell would.
 */
function anchorPaths(raw: unknown, dir: string): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const at = (p: unknown): unknown => (typeof p === 'string' && p !== '' && !isAbsolute(p) ? resolve(dir, p) : p);
  const c = { ...(raw as Record<string, unknown>) };
  const obj = (v: unknown): Record<string, unknown> | null => (v && typeof v === 'object' && !Array.isArray(v) ? { ...(v as Record<string, unknown>) } : null);
  if ('dataDir' in c) c.dataDir = at(c.dataDir);
  const rules = obj(c.rules);
  if (rules && Array.isArray(rules.dirs)) rules.dirs = (rules.dirs as unknown[]).map(at);
  const settings = obj(rules?.settings);
  if (rules && settings) {
    for (const [name, s] of Object.entries(settings)) {
      const files = obj(obj(s)?.optionFiles);
      if (files) settings[name] = { ...obj(s), optionFiles: Object.fromEntries(Object.entries(files).map(([k, f]) => [k, at(f)])) };
    }
    rules.settings = settings;
  }
  if (rules) c.rules = rules;
  const record = obj(c.record);
  if (record && 'dir' in record) c.record = { ...record, dir: at(record.dir) };
  const log = obj(c.log);
  if (log && 'file' in log) c.log = { ...log, file: at(log.file) };
  const tls = obj(c.tls);
  if (tls) {
    for (const k of ['key', 'cert']) if (k in tls) tls[k] = at(tls[k]);
    c.tls = tls;
  }
  const checker = obj(c.checker);
  if (checker && Array.isArray(checker.command) && typeof checker.command[0] === 'string' && checker.command[0].includes('/')) {
    c.checker = { ...checker, command: [at(checker.command[0]), ...(checker.command as unknown[]).slice(1)] };
  }
  return c;
}

/** Validates a config object (a copy is filled with defaults). Throws ConfigError. */
export function configFrom(input: unknown, source: string, overrides: ConfigOverrides = {}): Config {
  const raw = structuredClone(input) as Record<string, unknown>;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(source, ['/: must be an object']);
  if (overrides.listen) raw.listen = [overrides.listen];
  if (overrides.admin) raw.admin = { ...(raw.admin as object | undefined), listen: overrides.admin === 'off' ? null : overrides.admin };
  if (overrides.dataDir) raw.dataDir = overrides.dataDir;
  if (overrides.logFormat) raw.log = { ...(raw.log as object | undefined), format: overrides.logFormat };
  if (overrides.dns) raw.dns = { ...(raw.dns as object | undefined), servers: [overrides.dns] };
  if (overrides.rulesDir) {
    const rules = (raw.rules ??= {}) as Record<string, unknown>;
    rules.dirs = [...((rules.dirs as string[] | undefined) ?? []), overrides.rulesDir];
  }
  if (overrides.relay) {
    // --relay keeps the file's other next-hop settings (TLS, AUTH, timeouts), replacing host and port.
    const delivery = (raw.delivery ??= {}) as Record<string, unknown>;
    const { host, port } = parseListen(overrides.relay.includes(':') ? overrides.relay : `${overrides.relay}:25`);
    delivery.mode = 'relay';
    delivery.nextHop = { ...((delivery.nextHop as object | undefined) ?? {}), host, port };
  }
  // Line numbers are derived from the option files below: a config built from a loaded
  // one (the test harness does) has them, and must not be refused for it.
  for (const s of Object.values(((raw.rules as Record<string, unknown> | undefined)?.settings ?? {}) as Record<string, Record<string, unknown>>)) {
    if (s && typeof s === 'object') delete s.optionLines;
  }
  const problems = validate(raw).map((e) => describeAjvError(e));
  const cfg = raw as unknown as Config;
  if (!problems.length) {
    checkNetworks(cfg.relayNetworks, '/relayNetworks', problems);
    checkNetworks(cfg.exemptNetworks, '/exemptNetworks', problems);
    for (const [name, s] of Object.entries(cfg.rules.settings)) {
      readOptionFiles(name, s, problems);
      for (const part of ['only', 'except'] as const) {
        const clients = s[part]?.clients;
        if (clients) checkNetworks(clients, `/rules/settings/${name}/${part}/clients`, problems);
      }
    }
    cfg.listen.forEach((l, i) => {
      const port = Number(l.slice(l.lastIndexOf(':') + 1));
      if (port > 65535) problems.push(`/listen/${i}: port must be 0–65535`);
    });
    checkAdmin(cfg, problems);
    checkStore(cfg.store, problems);
    checkPasswords(cfg.auth.users, problems);
    if (cfg.delivery.mode === 'relay' && !cfg.delivery.nextHop) problems.push('/delivery/nextHop: relay mode needs a next hop (or start with --relay HOST:PORT)');
    // A log file is for tools (and logrotate's reopen); pretty is for a person at a terminal.
    if (cfg.log.format === 'pretty' && cfg.log.file) problems.push('/log/format: "pretty" is for a terminal; a log file is written as JSON lines (read it with: npx pino-pretty < FILE)');
  }
  if (!problems.length) {
    // Domains are matched case-insensitively.
    cfg.delivery.routes = Object.fromEntries(Object.entries(cfg.delivery.routes).map(([d, h]) => [d.toLowerCase(), h]));
  }
  if (problems.length) throw new ConfigError(source, problems);
  return cfg;
}

/**
 * Fills a rule's options from its `optionFiles`: each file holds one value per line, as
 * Sendmail's and Postfix's access files do (blank lines and lines starting with # are
 * skipped), so an admin edits a plain list rather than JSON. The rule's own schema then
 * checks the values like any other options; each value's line is kept (`optionLines`),
 * so a bad value is reported at its line and a rule can name it (`ctx.optionLine`).
 */
function readOptionFiles(name: string, s: RuleSettings, problems: string[]): void {
  for (const [option, file] of Object.entries(s.optionFiles ?? {})) {
    const path = `/rules/settings/${name}/optionFiles/${option}`;
    if (s.options && option in s.options) {
      problems.push(`${path}: options.${option} is given in the config too; say it in one place`);
      continue;
    }
    try {
      const lines = readFileSync(file, 'utf8').split(/\r?\n/).map((l, i) => ({ value: l.trim(), line: i + 1 })).filter((l) => l.value !== '' && !l.value.startsWith('#'));
      s.options = { ...s.options, [option]: lines.map((l) => l.value) };
      s.optionLines = { ...s.optionLines, [option]: lines.map((l) => l.line) };
    } catch (e) {
      problems.push(`${path}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
}

/** Every file rules' options are read from (for the reload watcher). */
export function optionFilesOf(cfg: Config): string[] {
  return Object.values(cfg.rules.settings).flatMap((s) => Object.values(s.optionFiles ?? {}));
}

/** Splits "HOST:PORT" / "[v6]:PORT". */
export function parseListen(l: string): { host: string; port: number } {
  const i = l.lastIndexOf(':');
  return { host: l.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(l.slice(i + 1)) };
}
