/**
 * Portcullis rule test harness: `import { loadRule, loadRuleSet } from 'portcullis/sdk/testing'`.
 * It lives with the host (it drives the host's own session logic) and is published as
 * `portcullis/sdk/testing`; the SDK itself imports nothing from the host.
 *
 * It loads rules through the same compile path and the same QuickJS sandbox as the
 * server, and drives them with scripted sessions through the server's own session logic
 * (relay control, whitelisting, verdict combination, fail policy, shadow mode), so a
 * verdict seen in a test is the one a client would see. Time comes from a fake clock you
 * advance; tarpit delays are recorded, not slept. Works with any test runner.
 *
 * @example
 * import { test } from 'node:test';
 * import assert from 'node:assert/strict';
 * import { loadRule } from 'portcullis/sdk/testing';
 *
 * test('refuses blockme@', async (t) => {
 *   const h = await loadRule('./rules/no-blockme.ts');
 *   t.after(() => h.close());
 *   const s = await h.connect({ ip: '203.0.113.9', helo: 'mx.example.net' });
 *   await s.mail('someone@example.net');
 *   assert.equal((await s.rcpt('blockme@localhost')).reply, '550 5.7.1 Blocked');
 * });
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import type { Json, RecordedSession } from '../../sdk/index.js';
import { diffSession, type StepChange } from '../record/diff.js';
import { notARecord } from '../record/reader.js';
import { replaySession } from '../record/replay.js';
import { configFrom, loadConfig, type Config, type RuleSettings } from '../config/config.js';
import { Metrics } from '../metrics.js';
import { Pipeline, type PhaseDecision } from '../pipeline/pipeline.js';
import { loadRuleSet as buildRuleSet, type RuleSet } from '../pipeline/ruleset.js';
import { compileRule } from '../sandbox/compile.js';
import { Sandbox } from '../sandbox/sandbox.js';
import { formatReply } from '../smtp/reply.js';
import { SessionPolicy, SmtpSession, type CommandResult, type Disposition } from '../smtp/session.js';
import { SpamdClient } from '../content/spamd.js';
import { CallAhead } from '../delivery/callahead.js';
import { dmarcSample as randomDmarcSample } from '../dns/auth.js';
import { DnsChecker, dnsCheckerFor, reversedIp } from '../dns/checker.js';
import { tableBackend, type DnsTable } from '../dns/backend.js';
import { storeAccess } from '../store/access.js';
import { applyMailboxConfig, MemoryStore } from '../store/store.js';

/**
 * What one command did: the phase's decision (winning `verdict`, the `rule` that made
 * it, a rule `failure` under the tempfail policy, `headers`, `blacklist` and
 * `wellBehaved` effects, `delayMs` of tarpit asked for), the reply the client gets, and
 * what rules logged.
 */
export interface Step extends Pick<PhaseDecision, 'verdict' | 'rule' | 'failure' | 'blacklist' | 'wellBehaved'> {
  /** The reply line that refuses the command (`'550 5.7.1 …'`), or null when it proceeds. */
  reply: string | null;
  /** Headers the phase's rules added: `[name, value]`. */
  headers: [string, string][];
  /** Score symbols the phase's rules added (`ctx.score`): `[symbol, points]`. */
  scores: [string, number][];
  /** Tarpit delay applied (capped by limits.maxDelayMs). */
  delayMs: number;
  /** Lines rules logged at this command (ctx.log). */
  logs: string[];
}

/** What end of data did: refused (reply), or accepted with where it goes and the headers added. */
export interface MessageStep extends Step {
  accepted: { disposition: Disposition['action']; rule: string | null; reason: string | null; redirectTo: string | null; headers: [string, string][]; removedHeaders: string[] } | null;
}

export interface ConnectOptions {
  /** Client address (default 192.0.2.1, TEST-NET-1). */
  ip?: string;
  port?: number;
  /** Reverse DNS name of the client (default none). */
  ptr?: string | null;
  /** Our port: 25 (default), or 587/2525 for submission. */
  localPort?: number;
  tls?: boolean;
  /** Send EHLO with this name right after connecting. */
  helo?: string;
}

export interface HarnessOptions {
  /** Config as a file path or an object (validated like the server's). Default: embedded defaults. */
  config?: string | Record<string, unknown>;
  /** Start of the fake clock (default 2026-01-05T10:00:00Z, a Monday). */
  start?: Date | number;
  /**
   * Fake DNS answers, name → records (or an error code such as `'ETIMEOUT'`); names not
   * in the table are NXDOMAIN. Without it DNS is off and rules see no DNS facts. Build
   * entries with `fakeDns.listed(...)` / `fakeDns.mx(...)` / `fakeDns.ns(...)` / `fakeDns.address(...)` / `fakeDns.ptr(...)` / `fakeDns.spf(...)` / `fakeDns.dkimKey(...)` / `fakeDns.dmarc(...)`, joined with `fakeDns.merge(...)`. `'config'` queries the
   * config's real `dns.servers` (what `portcullis try` does).
   * @example dns: { ...fakeDns.listed('zen.spamhaus.org', '192.0.2.1', '127.0.0.4') }
   */
  dns?: DnsTable | 'config';
  /**
   * The DMARC pct sample (0–99, `ev.dns.dmarc.sample`) of every message, instead of a
   * random one: a policy with `pct=` applies when `sample < pct` (RFC 7489 §6.6.4).
   * Change it between messages with `harness.dmarcSample`.
   */
  dmarcSample?: number;
}

/** Builders of fake DNS answers for `HarnessOptions.dns`. */
export const fakeDns = {
  /** `subject` (an IP, or a domain for RHSBLs) listed in `zone` with A record `code` and an optional TXT. */
  listed(zone: string, subject: string, code = '127.0.0.2', text?: string): DnsTable {
    const label = reversedIp(subject) ?? subject.toLowerCase();
    return { [`${label}.${zone}`]: { A: [code], ...(text ? { TXT: [text] } : {}) } };
  },
  /** `zone` does not answer for `subject` (the lookup times out). */
  timeout(zone: string, subject: string): DnsTable {
    return { [`${reversedIp(subject) ?? subject.toLowerCase()}.${zone}`]: 'ETIMEOUT' };
  },
  /** `domain` has these MX hosts (none: only an A record). */
  mx(domain: string, ...hosts: string[]): DnsTable {
    return { [domain]: hosts.length ? { MX: hosts } : { A: ['192.0.2.80'] } };
  },
  /** `domain` publishes this SPF record (`'v=spf1 ip4:192.0.2.7 -all'`) as its TXT. */
  spf(domain: string, record: string): DnsTable {
    return { [domain]: { TXT: [record] } };
  },
  /** `domain` publishes the DKIM public key `p` (base64 SPKI) under `selector` (RFC 6376 §3.6.2). */
  dkimKey(domain: string, selector: string, p: string): DnsTable {
    return { [`${selector}._domainkey.${domain}`]: { TXT: [`v=DKIM1; k=rsa; p=${p}`] } };
  },
  /** `domain` publishes this DMARC record (`'v=DMARC1; p=reject'`, RFC 7489 §6.1). */
  dmarc(domain: string, record: string): DnsTable {
    return { [`_dmarc.${domain}`]: { TXT: [record] } };
  },
  /** `domain` is delegated to these name servers (its NS records). */
  ns(domain: string, ...servers: string[]): DnsTable {
    return { [domain]: { NS: servers } };
  },
  /** `host` exists with this address (an A record): a link host that resolves, a name server's domain that exists. */
  address(host: string, ip = '192.0.2.80'): DnsTable {
    return { [host]: { A: [ip] } };
  },
  /** `ip` has the reverse DNS name `name` (a PTR record under in-addr.arpa or ip6.arpa). */
  ptr(ip: string, name: string): DnsTable {
    return { [`${reversedIp(ip)}.${ip.includes(':') ? 'ip6' : 'in-addr'}.arpa`]: { PTR: [name] } };
  },
  /**
   * Tables in one, records of the same name joined (`{ ...a, ...b }` would keep only
   * b's records of a name both have).
   * @example dns: fakeDns.merge(fakeDns.mx('example.com'), fakeDns.ns('example.com', 'ns1.example.net'))
   */
  merge(...tables: DnsTable[]): DnsTable {
    const out: DnsTable = {};
    for (const t of tables) {
      for (const [name, v] of Object.entries(t)) {
        const had = out[name];
        out[name] = typeof v === 'string' || typeof had !== 'object' ? v : { ...had, ...v };
      }
    }
    return out;
  },
};

export interface RuleOptions extends HarnessOptions {
  /** The rule's options (validated against its schema). */
  options?: Record<string, unknown>;
  /** Other per-rule settings: action ('shadow'…), failPolicy, timeoutMs… */
  settings?: Partial<RuleSettings>;
}

/** What `Harness.replay` found. */
export interface ReplayResult {
  /** Each command answered otherwise than recorded: the command, recorded and replayed reply and rule, the rule the change is counted for. */
  changes: StepChange[];
  /** Recorded commands the client could not have sent now (an earlier one is refused now). */
  notReached: number;
  /** Facts the rules asked for that the record lacks (`dnsbl:<zone>`, `spf`, `body`…): answered as failed lookups. */
  missing: string[];
  /** Per recorded command, the reply line that refuses it now, null when it proceeds, undefined when not reached. */
  replies: (string | null | undefined)[];
}

/**
 * Reads a recorded session saved by `portcullis replay --save-fixtures DIR --sessions ID`
 * (DIR/ID.json), for `Harness.replay`. Throws, naming the file, when it is not one.
 * @example
 * const spam = loadRecordedSession(new URL('./fixtures/g7263b9f42t625ph.json', import.meta.url));
 */
export function loadRecordedSession(file: string | URL): RecordedSession {
  const path = file instanceof URL ? fileURLToPath(file) : file;
  let x: unknown;
  try {
    x = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: not a recorded session: ${(e as Error).message}`);
  }
  const why = notARecord(x);
  if (why) throw new Error(`${path}: not a recorded session: ${why}`);
  return x as RecordedSession;
}

/** A log record written by the host while the harness ran. */
export type LogRecord = Record<string, unknown> & { msg?: string };

export class Harness {
  /** The fake clock every event's `session.time` comes from. */
  readonly clock: { now(): number; advance(ms: number): void; set(t: Date | number): void };
  /** Every log record (rule logs, decisions, refusals). */
  readonly logs: LogRecord[] = [];
  private fixedSample: number | null = null;
  /** The DMARC pct sample of the next messages (0–99), or null for a random one (`HarnessOptions.dmarcSample`). */
  get dmarcSample(): number | null {
    return this.fixedSample;
  }
  set dmarcSample(v: number | null) {
    if (v !== null && !(Number.isInteger(v) && v >= 0 && v < 100)) throw new RangeError(`dmarcSample must be a whole number from 0 to 99, or null for a random one; got ${v}`);
    this.fixedSample = v;
  }
  /** The host's metrics, as /metrics would show them: `await metrics.get('rule_verdicts_total', { rule, phase, action, mode })`. */
  readonly metrics = new Metrics();
  private readonly pipeline: Pipeline;
  private readonly policy: SessionPolicy;
  private readonly log: Logger;
  private readonly dns: DnsChecker | null;
  /** Sessions open (connected and not closed) per client IP: the connect event's `clientSessions`. */
  private readonly open = new Map<string, number>();

  /** @internal use loadRule / loadRuleSet */
  constructor(
    private readonly sandbox: Sandbox,
    readonly ruleSet: RuleSet,
    readonly config: Config,
    /**
     * The watchlist store, in memory: preset blacklist entries, counters, mailboxes and
     * lists, or read what rules put there (its times are the fake clock's).
     */
    readonly store: MemoryStore,
    start: number,
    dns?: DnsTable | 'config',
    dmarcSample?: number,
  ) {
    this.dmarcSample = dmarcSample ?? null;
    const sample = () => this.fixedSample ?? randomDmarcSample();
    let now = start;
    this.clock = { now: () => now, advance: (ms) => void (now += ms), set: (t) => void (now = +t) };
    const sink = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        for (const line of chunk.toString().split('\n')) if (line) this.logs.push(JSON.parse(line) as LogRecord);
        cb();
      },
    });
    this.log = pino({ level: 'debug' }, sink);
    this.pipeline = new Pipeline(sandbox, this.log, this.metrics);
    this.policy = new SessionPolicy(config);
    this.dns = dns === 'config' ? dnsCheckerFor(config.dns, store, this.metrics, this.log, sample) : dns ? new DnsChecker({ backend: tableBackend(dns), cache: store, metrics: this.metrics, log: this.log, ttlSeconds: config.dns.cacheTtlSeconds, timeoutMs: config.dns.timeoutMs, dmarcSample: sample }) : null;
  }

  /** The rules loaded, in run order. */
  get rules(): string[] {
    return this.ruleSet.rules.map((r) => r.name);
  }

  /** Opens a session (runs the connect phase, and EHLO when `helo` is given). */
  async connect(o: ConnectOptions = {}): Promise<TestSession> {
    const delays: number[] = [];
    const ip = o.ip ?? '192.0.2.1';
    this.open.set(ip, (this.open.get(ip) ?? 0) + 1);
    const session = new SmtpSession(
      {
        policy: this.policy, pipeline: this.pipeline, store: this.store, log: this.log, metrics: this.metrics, now: () => this.clock.now(), delay: async (ms) => void delays.push(ms), dns: this.dns,
        spamd: this.config.spamd ? new SpamdClient(this.config.spamd) : null,
        callahead: new CallAhead({ delivery: this.config.delivery, heloName: this.config.hostname, cache: this.store, log: (m) => this.log.info(m) }),
        clientSessions: (a) => this.open.get(a) ?? 0,
      },
      { id: randomBytes(8).toString('hex'), ip, port: o.port ?? 40000, ptr: o.ptr ?? null, localIp: '192.0.2.25', localPort: o.localPort ?? 25, tls: () => o.tls ?? false },
      this.ruleSet,
    );
    let closed = false;
    const s = new TestSession(session, this, delays, this.pipeline, () => {
      if (closed) return;
      closed = true;
      const n = (this.open.get(ip) ?? 1) - 1;
      if (n > 0) this.open.set(ip, n);
      else this.open.delete(ip);
    });
    s.connected = await s.step(() => session.connect());
    if (o.helo !== undefined && !s.connected.reply) await s.helo(o.helo);
    return s;
  }

  /**
   * Replays a recorded session (a fixture `portcullis replay --save-fixtures` wrote, read
   * with `loadRecordedSession`) through these rules, with its recorded clock and facts:
   * `changes` lists every command now answered otherwise than it was recorded (empty: the
   * rules still decide it the same way), `missing` the facts the rules asked for that the
   * record lacks.
   * @example
   * const r = await h.replay(loadRecordedSession(new URL('./fixtures/customer.json', import.meta.url)));
   * assert.deepEqual(r.changes, []);
   */
  async replay(rec: RecordedSession): Promise<ReplayResult> {
    const r = await replaySession(rec, this.ruleSet, { policy: this.policy, pipeline: this.pipeline, store: this.store, log: this.log, metrics: this.metrics });
    const d = diffSession(rec, r, this.config.scores.header);
    return { changes: d.changes, notReached: d.notReached, missing: r.missing, replies: r.steps.map((s) => (s.reached ? s.reply : undefined)) };
  }

  /** Lines rules logged with ctx.log so far (of one rule, if named). */
  ruleLogs(rule?: string): string[] {
    return this.logs.filter((l) => l.ruleLog === true && (!rule || l.rule === rule)).map((l) => String(l.msg));
  }

  /** Frees the sandboxes. Use `await using`, or call it in an after() hook. */
  async close(): Promise<void> {
    await this.sandbox.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

export class TestSession {
  /** What the connect phase did (its reply refuses the connection). */
  connected!: Step;

  /** @internal */
  constructor(
    private readonly s: SmtpSession,
    private readonly h: Harness,
    private readonly delays: number[],
    private readonly pipeline: Pipeline,
    private readonly closed: () => void,
  ) {}

  /** @internal runs one command and reports what its phase did. */
  async step(run: () => Promise<CommandResult>): Promise<Step> {
    const logsBefore = this.h.logs.length;
    this.delays.length = 0;
    const { reply, decision: d } = await run();
    return {
      verdict: d.verdict,
      rule: d.rule,
      failure: d.failure,
      blacklist: d.blacklist,
      wellBehaved: d.wellBehaved,
      scores: d.scores.map((x): [string, number] => [x.symbol, x.points]),
      headers: d.headers.map((h): [string, string] => [h.name, h.value]),
      reply: reply ? formatReply(reply) : null,
      delayMs: this.delays.reduce((a, b) => a + b, 0),
      logs: this.h.logs.slice(logsBefore).filter((l) => l.ruleLog === true).map((l) => String(l.msg)),
    };
  }

  /** The notes rules wrote so far: for the session, and for the transaction in progress. */
  get notes(): { session: Readonly<Record<string, Json>>; tx: Readonly<Record<string, Json>> } {
    return structuredClone({ session: this.s.info().notes, tx: this.s.tx.notes });
  }

  helo(name: string, verb: 'HELO' | 'EHLO' = 'EHLO'): Promise<Step> {
    return this.step(() => this.s.heloCommand(verb, name));
  }

  /** An AUTH attempt; `success` says whether the password was right (default true). */
  auth(username: string, o: { success?: boolean; method?: string } = {}): Promise<Step> {
    return this.step(() => this.s.auth(o.method ?? 'PLAIN', username, o.success ?? true));
  }

  /** MAIL FROM; `''` is the null sender. `args` are ESMTP parameters, e.g. `{ SIZE: '12000' }`. */
  mail(address: string, args: Record<string, string> = {}): Promise<Step> {
    return this.step(() => this.s.mail(address, args));
  }

  rcpt(address: string, args: Record<string, string> = {}): Promise<Step> {
    return this.step(() => this.s.rcpt(address, args));
  }

  /** RSET: abandons the transaction. */
  rset(): void {
    this.s.rset();
  }

  /** The DATA command (before 354). */
  data(): Promise<Step> {
    return this.step(() => this.s.data());
  }

  /**
   * End of data with this message: raw RFC 5322 text, or headers and a body. Runs the
   * DATA command first unless `{ skipData: true }`.
   */
  async message(msg: string | Buffer | { headers: Record<string, string> | [string, string][]; body?: string }, o: { skipData?: boolean } = {}): Promise<MessageStep> {
    if (!o.skipData) {
      const d = await this.data();
      if (d.reply) return { ...d, accepted: null };
    }
    const raw = Buffer.isBuffer(msg) ? msg : typeof msg === 'string' ? Buffer.from(msg.replace(/\r?\n/g, '\r\n')) : compose(msg);
    let accepted: MessageStep['accepted'] = null;
    const step = await this.step(async () => {
      const out = await this.s.message(raw);
      if (out.accepted) {
        const disp = out.accepted.disposition;
        accepted = { disposition: disp.action, rule: disp.rule, reason: disp.reason, redirectTo: disp.address ?? null, headers: out.accepted.headers, removedHeaders: out.accepted.removeHeaders };
      }
      return out;
    });
    return { ...step, accepted };
  }

  /** Ends the session (the close phase runs; its verdicts are only logged). */
  async close(): Promise<Step> {
    const step = await this.step(() => this.s.close());
    this.pipeline.endSession(this.s.conn.id);
    this.closed();
    return step;
  }
}

function compose(m: { headers: Record<string, string> | [string, string][]; body?: string }): Buffer {
  const headers = Array.isArray(m.headers) ? m.headers : Object.entries(m.headers);
  return Buffer.from(`${headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n${(m.body ?? '').replace(/\r?\n/g, '\r\n')}`);
}

function harnessConfig(o: HarnessOptions): Config {
  if (typeof o.config === 'string') return loadConfig(o.config);
  return configFrom(o.config ?? {}, '(test config)');
}

const DEFAULT_START = Date.UTC(2026, 0, 5, 10, 0, 0);


/**
 * Loads one rule file, alone, with its options. A path is relative to the working
 * directory; `new URL('./my-rule.ts', import.meta.url)` names the file beside the test.
 */
export async function loadRule(rule: string | URL, o: RuleOptions = {}): Promise<Harness> {
  const file = rule instanceof URL ? fileURLToPath(rule) : rule;
  const store = new MemoryStore();
  const sandbox = new Sandbox({ workers: 1, storeCall: storeAccess(store) });
  try {
    const meta = await sandbox.inspect(file, (await compileRule(file)).code);
    const base = harnessConfig(o);
    const settings = { ...base.rules.settings, [meta.name]: { enabled: true, action: 'enforce' as const, ...o.settings, ...(o.options ? { options: o.options } : {}) } };
    const config = configFrom({ ...base, rules: { ...base.rules, builtin: false, dirs: [], settings } }, '(test config)');
    const rs = await buildRuleSet(config, sandbox, 1, { files: [file] });
    applyMailboxConfig(store, config);
    return new Harness(sandbox, rs, config, store, +(o.start ?? DEFAULT_START), o.dns, o.dmarcSample);
  } catch (e) {
    await sandbox.close();
    throw e;
  }
}

/**
 * Loads every enabled rule the config names (built-in ones and its `rules.dirs`), in
 * priority order with the real verdict combination: how your rule works with the rest.
 */
export async function loadRuleSet(o: HarnessOptions & { rulesDirs?: string[] } = {}): Promise<Harness> {
  const store = new MemoryStore();
  const sandbox = new Sandbox({ workers: 1, storeCall: storeAccess(store) });
  try {
    const base = harnessConfig(o);
    const config = o.rulesDirs ? configFrom({ ...base, rules: { ...base.rules, dirs: [...base.rules.dirs, ...o.rulesDirs] } }, '(test config)') : base;
    const rs = await buildRuleSet(config, sandbox, 1);
    applyMailboxConfig(store, config);
    return new Harness(sandbox, rs, config, store, +(o.start ?? DEFAULT_START), o.dns, o.dmarcSample);
  } catch (e) {
    await sandbox.close();
    throw e;
  }
}

export type { DnsTable } from '../dns/backend.js';
export type { RecordedSession } from '../../sdk/index.js';
export type { StepChange } from '../record/diff.js';
