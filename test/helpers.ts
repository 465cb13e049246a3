/**
 * Test helpers: a real host on an ephemeral 127.0.0.1 port with its own rules directory
 * and data directory, a raw SMTP client for exact reply lines, and spool readers.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { after } from 'node:test';
import nodemailer from 'nodemailer';
import { pino } from 'pino';
import { loadConfig } from '../host/config/config.js';
import { startHost, type Host } from '../host/host.js';
import { hashPassword } from '../host/password.js';
import { ROOT } from '../host/paths.js';
import { readSpoolFile, type SpoolEnvelope } from '../host/spool/spool.js';

export interface TestHost {
  host: Host;
  /** The config file the host reads (on reload too). */
  configFile: string;
  port: number;
  dir: string;
  dataDir: string;
  rulesDir: string;
  /** Parsed log records so far. */
  logs: Record<string, unknown>[];
  close(): Promise<void>;
}

export function tempDir(prefix = 'portcullis-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** For a test file's top level: a maker of temporary directories, all removed after the file's tests. */
export function scratchDirs(): () => string {
  const made: string[] = [];
  after(() => {
    for (const d of made) rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const d = tempDir();
    made.push(d);
    return d;
  };
}

/** Mounts a small tmpfs (a disk that fills up) and returns where; null when we may not mount (not root). */
export function mountTmpfs(sizeKb = 256): string | null {
  const mnt = tempDir('portcullis-tmpfs-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k`, 'tmpfs', mnt], { stdio: 'ignore' });
    return mnt;
  } catch {
    rmSync(mnt, { recursive: true, force: true });
    return null;
  }
}

export function unmountTmpfs(mnt: string): void {
  execFileSync('umount', [mnt]);
  rmSync(mnt, { recursive: true, force: true });
}

/** Runs the real `portcullis` binary in `cwd`. */
export function cli(cwd: string, args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), ...args], { cwd, encoding: 'utf8', input, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts a host with `rules` (file name → source) as its only rules unless `builtin` is set. */
export async function startTestHost(opts: { rules?: Record<string, string>; config?: Record<string, unknown>; builtin?: boolean; watch?: boolean } = {}): Promise<TestHost> {
  const dir = tempDir();
  const rulesDir = join(dir, 'rules');
  mkdirSync(rulesDir);
  for (const [name, src] of Object.entries(opts.rules ?? {})) {
    mkdirSync(dirname(join(rulesDir, name)), { recursive: true }); // 'lib/util.ts': a helper beside the rules
    writeFileSync(join(rulesDir, name), src);
  }
  const cfgFile = join(dir, 'config.json');
  const userRules = (opts.config?.rules ?? {}) as Record<string, unknown>;
  const cfg = {
    listen: ['127.0.0.1:0'],
    // The admin listener (/metrics) as a host runs it, on a free port: test files run in parallel.
    admin: { listen: '127.0.0.1:0' },
    dataDir: join(dir, 'data'),
    reverseDns: false,
    // The spool queue is held unless a test configures delivery: most tests read what was spooled.
    delivery: { queue: { hold: true } },
    ...opts.config,
    rules: { builtin: opts.builtin ?? false, dirs: [rulesDir], ...userRules },
  };
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  let host: Host;
  try {
    host = await startHost(loadConfig(cfgFile), { logger: pino({ level: 'debug' }, sink), configFile: cfgFile, watch: opts.watch ?? false });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    host, configFile: cfgFile, port: host.addresses[0]!.port, dir, dataDir: cfg.dataDir, rulesDir, logs,
    async close() {
      await host.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs `fn` against a fresh host and always closes it. */
export async function withHost(opts: Parameters<typeof startTestHost>[0], fn: (h: TestHost) => Promise<void>): Promise<void> {
  const h = await startTestHost(opts);
  try {
    await fn(h);
  } finally {
    await h.close();
  }
}

/** A rule file's source from its phases object literal (TypeScript). */
export function rule(name: string, phases: string, extra = ''): string {
  return `import { defineRule, next, accept, reject, tempfail, drop, discard, quarantine, redirect } from 'portcullis/sdk';
export default defineRule({ name: '${name}', ${extra} phases: ${phases} });
`;
}

/**
 * The hash a test config gives `auth.users` (plain text is refused). Cheap scrypt
 * parameters (the hash carries them): a login costs about a millisecond, not 100.
 */
export function testPasswordHash(password: string): Promise<string> {
  return hashPassword(password, { N: 1024, r: 8, p: 1 });
}

export function mailer(port: number) {
  return nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 10000 });
}

/** A raw SMTP client: send a line, get the complete (multi-line) reply. Every wait is bounded. */
export class RawSmtp {
  private buf = '';
  private waiters: (() => void)[] = [];
  closed = false;
  private constructor(private readonly sock: Socket) {
    sock.on('data', (d) => {
      this.buf += d.toString('latin1');
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /**
   * Connects to 127.0.0.1:port, from `from` (another 127.0.0.x, as a distinct client) if
   * given; `early` is a line sent at once, before the greeting (a pregreet talker).
   */
  static async open(port: number, from?: string, early?: string): Promise<{ c: RawSmtp; greeting: string }> {
    const sock = connect({ port, host: '127.0.0.1', ...(from ? { localAddress: from } : {}) });
    if (early !== undefined) sock.write(early + '\r\n');
    const c = new RawSmtp(sock);
    const greeting = await c.reply();
    return { c, greeting };
  }

  /** The next complete reply (all lines joined by \n), or '' if the server closed first. */
  async reply(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n/.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m[0].length);
        return m[0].trimEnd().replace(/\r\n/g, '\n');
      }
      if (this.closed) return '';
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms; buffer: ${JSON.stringify(this.buf)}`);
      await new Promise<void>((ok) => {
        const t = setTimeout(ok, left);
        this.waiters.push(() => {
          clearTimeout(t);
          ok();
        });
      });
    }
  }

  async cmd(line: string, timeoutMs?: number): Promise<string> {
    this.sock.write(line + '\r\n');
    return this.reply(timeoutMs);
  }

  write(data: string): void {
    this.sock.write(data);
  }

  /** Resolves true once the server closed the connection (false after timeoutMs). */
  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) {
      await new Promise<void>((ok) => {
        const t = setTimeout(ok, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          ok();
        });
      });
    }
    return this.closed;
  }

  end(): void {
    this.sock.end();
  }
}

export interface Spooled {
  id: string;
  env: SpoolEnvelope;
  eml: Buffer;
}

/** The messages in a spool area, oldest first: envelope and message of each `<id>.msg`. */
export function spooled(dataDir: string, area: 'spool' | 'quarantine' = 'spool'): Spooled[] {
  const dir = join(dataDir, area, 'new');
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch {
    return [];
  }
  return files.filter((f) => f.endsWith('.msg')).sort().flatMap((f) => {
    let file: Buffer;
    try {
      file = readFileSync(join(dir, f));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []; // delivered by the queue meanwhile
      throw e;
    }
    const { envelope, message } = readSpoolFile(file);
    return [{ id: f.slice(0, -4), env: envelope, eml: message }];
  });
}

/**
 * Splits the first `n` header fields (with their folded continuation lines) off a spooled
 * message: returns them as text and the rest, which must be what the client sent.
 */
export function splitFields(eml: Buffer, n: number): { fields: string[]; rest: Buffer } {
  const text = eml.toString('latin1');
  const fields: string[] = [];
  let pos = 0;
  while (fields.length < n) {
    let end = text.indexOf('\r\n', pos) + 2;
    while (text[end] === ' ' || text[end] === '\t') end = text.indexOf('\r\n', end) + 2;
    fields.push(text.slice(pos, end));
    pos = end;
  }
  return { fields, rest: Buffer.from(text.slice(pos), 'latin1') };
}

/** EHLO + MAIL + RCPT on a raw client; returns the replies. */
export async function envelopeOn(c: RawSmtp, from = 'sender@example.org', to = 'user@localhost'): Promise<string[]> {
  return [await c.cmd('EHLO client.example.org'), await c.cmd(`MAIL FROM:<${from}>`), await c.cmd(`RCPT TO:<${to}>`)];
}

/** Polls `check` every 20 ms until it returns true; fails after `ms`. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A new session up to one RCPT: returns that RCPT's reply. */
export async function rcptReply(port: number, rcpt: string): Promise<string> {
  const { c } = await RawSmtp.open(port);
  await c.cmd('EHLO probe.example');
  await c.cmd('MAIL FROM:<a@example.org>');
  const r = await c.cmd(`RCPT TO:<${rcpt}>`);
  c.end();
  return r;
}

/**
 * Runs `portcullis start ARGS` as a child process; resolves with it and its port once its
 * output matches `ready` (default: it listens on 127.0.0.1; group 1 is the port), and with
 * `output()`, all it wrote so far (stdout and stderr).
 */
export async function spawnHost(args: string[], ready = /listening on 127\.0\.0\.1:(\d+)/): Promise<{ child: ChildProcess; port: number; output: () => string }> {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), 'start', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const port = await new Promise<number>((ok, fail) => {
    const t = setTimeout(() => fail(new Error(`host did not start: ${out}`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) {
        clearTimeout(t);
        ok(Number(m[1]));
      }
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  });
  return { child, port, output: () => out };
}
