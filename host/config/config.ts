/**
 * Loads the one JSON config file, fills in defaults from the schema (the only place
 * defaults live) and validates it. Every problem is reported with its JSON path.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Ajv2020 as Ajv } from 'ajv/dist/2020.js';
import type { ErrorObject } from 'ajv';
import { parseTree, printParseErrorCode, type ParseError } from 'jsonc-parser';
import { PASSWORD_HASH_FORMAT, parsePasswordHash } from '../password.js';
import { CONFIG_SCHEMA } from '../paths.js';

export interface RuleLimits {
  timeoutMs: number;
  memoryMb: number;
  stackKb: number;
  failPolicy: 'tempfail' | 'continue';
}

export type RuleAction = 'enforce' | 'shadow' | 'quarantine' | 'tempfail';

export interface RuleSettings extends Partial<RuleLimits> {
  enabled: boolean;
  priority?: number;
  action: RuleAction;
  options?: Record<string, unknown>;
}

/** The validated config, defaults filled in. Mirrors schemas/config.schema.json. */
export interface Config {
  listen: string[];
  hostname: string;
  banner: string;
  greetPauseMs: number;
  submissionPorts: number[];
  limits: { maxClients: number; socketTimeoutMs: number; maxMessageBytes: number; maxRecipients: number; maxDelayMs: number; bodyLimit: number; shutdownGraceMs: number };
  localDomains: string[];
  mailboxes: string[];
  relayDomains: string[];
  relayNetworks: string[];
  exemptNetworks: string[];
  dataDir: string;
  reverseDns: boolean;
  dns: { servers: string[]; timeoutMs: number; cacheTtlSeconds: number };
  checker?: { command: string[]; timeoutMs: number; concurrency: number };
  auth: { users: Record<string, string>; allowInsecure: boolean };
  tls?: { key: string; cert: string };
  received: boolean;
  sandbox: { workers: number; shareBuiltins: boolean };
  rules: { builtin: boolean; dirs: string[]; defaults: RuleLimits; settings: Record<string, RuleSettings> };
  log: { level: string };
  watch: boolean;
  delivery: DeliveryConfig;
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
  dataDir?: string;
  rulesDir?: string;
  /** `--dns HOST:PORT`: the resolver for DNS checks. */
  dns?: string;
  /** `--relay HOST:PORT`: relay mode to that next hop. */
  relay?: string;
}

/** The config is invalid; `problems` holds one "path: what is wrong" line each. */
export class ConfigError extends Error {
  constructor(readonly source: string, readonly problems: string[]) {
    super(`invalid config ${source}:\n  ${problems.join('\n  ')}`);
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

/** JSON.parse; on a syntax error, every error with its line and column (via jsonc-parser). */
export function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const errors: ParseError[] = [];
    parseTree(text, errors, { disallowComments: true, allowTrailingComma: false });
    const at = (offset: number): string => {
      const before = text.slice(0, offset);
      return `${before.split('\n').length}:${offset - before.lastIndexOf('\n')}`;
    };
    const lines = errors.map((x) => `${source}:${at(x.offset)}: ${printParseErrorCode(x.error)}`);
    throw new ConfigError(source, lines.length ? lines : [`${source}: ${(e as Error).message}`]);
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

/** Reads, merges overrides, fills defaults and validates. Throws ConfigError. */
export function loadConfig(file: string | undefined, overrides: ConfigOverrides = {}): Config {
  let text = '{}';
  if (file) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(file, [`cannot read the file: ${(e as Error).message}`]);
    }
  }
  return configFrom(parseJson(text, file ?? '(embedded defaults)'), file ?? '(embedded defaults)', overrides);
}

/** Validates a config object (a copy is filled with defaults). Throws ConfigError. */
export function configFrom(input: unknown, source: string, overrides: ConfigOverrides = {}): Config {
  const raw = structuredClone(input) as Record<string, unknown>;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(source, ['/: must be an object']);
  if (overrides.listen) raw.listen = [overrides.listen];
  if (overrides.dataDir) raw.dataDir = overrides.dataDir;
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
  const problems = validate(raw).map((e) => describeAjvError(e));
  const cfg = raw as unknown as Config;
  if (!problems.length) {
    checkNetworks(cfg.relayNetworks, '/relayNetworks', problems);
    checkNetworks(cfg.exemptNetworks, '/exemptNetworks', problems);
    cfg.listen.forEach((l, i) => {
      const port = Number(l.slice(l.lastIndexOf(':') + 1));
      if (port > 65535) problems.push(`/listen/${i}: port must be 0–65535`);
    });
    checkPasswords(cfg.auth.users, problems);
    if (cfg.delivery.mode === 'relay' && !cfg.delivery.nextHop) problems.push('/delivery/nextHop: relay mode needs a next hop (or start with --relay HOST:PORT)');
  }
  if (!problems.length) {
    // Domains are matched case-insensitively.
    cfg.delivery.routes = Object.fromEntries(Object.entries(cfg.delivery.routes).map(([d, h]) => [d.toLowerCase(), h]));
  }
  if (problems.length) throw new ConfigError(source, problems);
  return cfg;
}

/** Splits "HOST:PORT" / "[v6]:PORT". */
export function parseListen(l: string): { host: string; port: number } {
  const i = l.lastIndexOf(':');
  return { host: l.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(l.slice(i + 1)) };
}
