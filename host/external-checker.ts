/**
 * The external checker (Obtuse smtpd's Spammer Deterrent "check program"): a command the
 * admin names, run at end of data for every accepted message, before delivery:
 *
 *     <command…> <message file> <client IP> <sender or "<>"> <recipient>…
 *
 * Exit 0 accepts, exit 1 rejects (552 5.7.1, RFC 5321 §4.2.2: the message is refused for
 * its content); any other exit, a signal, or running past `timeoutMs` tempfails (451
 * 4.7.1) so the client retries and no mail is lost to a broken checker. Lines of stdout
 * shaped like header fields (`X-Checked: clean`) are added to the message.
 *
 * It runs as a child process — outside the SMTP event loop — in its own process group
 * (a timeout kills the whole group), with at most `concurrency` at once; a message that
 * cannot get a slot within the timeout tempfails too.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { Logger } from 'pino';
import type { Metrics } from './metrics.js';

export interface CheckerConfig {
  /** The program and its fixed arguments. */
  command: string[];
  timeoutMs: number;
  concurrency: number;
}

export interface CheckInput {
  /** For the file name and the log. */
  session: string;
  message: Buffer[];
  ip: string;
  sender: string;
  rcpts: string[];
}

export type CheckResult =
  | { verdict: 'accept'; headers: [string, string][] }
  | { verdict: 'reject' | 'tempfail'; why: string };

/** Header field lines the checker may print: a field name, a colon, a printable value. */
const FIELD = /^([!-9;-~]{1,76}):[ \t]*([ -~\t]{0,900})$/;
const MAX_OUTPUT = 64 * 1024;

export class ExternalChecker {
  private running = 0;
  private waiting: (() => void)[] = [];
  private seq = 0;
  private readonly dir: string;

  constructor(private readonly cfg: CheckerConfig, dataDir: string, private readonly log: Logger, private readonly metrics: Metrics) {
    this.dir = join(dataDir, 'checker');
    mkdirSync(this.dir, { recursive: true });
    const problem = checkerCommandProblem(cfg.command);
    if (problem) log.warn({ command: cfg.command }, `external checker: ${problem}; every accepted message will be answered 451 until it is fixed`);
  }

  async check(input: CheckInput): Promise<CheckResult> {
    const started = Date.now();
    const deadline = started + this.cfg.timeoutMs;
    if (!(await this.slot(deadline))) return this.done(input, { verdict: 'tempfail', why: `no free checker slot within ${this.cfg.timeoutMs} ms` }, started);
    const file = join(this.dir, `${input.session}-${++this.seq}.eml`);
    try {
      await writeFile(file, input.message, { mode: 0o640 });
      return this.done(input, await this.runProgram(file, input, deadline - Date.now()), started);
    } catch (e) {
      return this.done(input, { verdict: 'tempfail', why: `could not run the checker: ${(e as Error).message}` }, started);
    } finally {
      await rm(file, { force: true });
      this.release();
    }
  }

  private runProgram(file: string, input: CheckInput, timeoutMs: number): Promise<CheckResult> {
    const [cmd, ...fixed] = this.cfg.command as [string, ...string[]];
    const args = [...fixed, file, input.ip, input.sender || '<>', ...input.rcpts];
    return new Promise((resolve) => {
      const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: checkerPath() } });
      let out = '';
      let err = '';
      let timedOut = false;
      child.stdout.on('data', (d: Buffer) => void (out.length < MAX_OUTPUT && (out += d.toString('utf8'))));
      child.stderr.on('data', (d: Buffer) => void (err.length < MAX_OUTPUT && (err += d.toString('utf8'))));
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup(child.pid);
      }, Math.max(1, timeoutMs));
      child.on('error', (e) => {
        clearTimeout(timer);
        resolve({ verdict: 'tempfail', why: `could not start ${cmd}: ${e.message}` });
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (err.trim()) this.log.warn({ session: input.session, stderr: err.slice(0, 2000) }, `external checker wrote to stderr: ${err.trim().split('\n')[0]}`);
        if (timedOut) return resolve({ verdict: 'tempfail', why: `timed out after ${this.cfg.timeoutMs} ms (killed)` });
        if (code === 0) return resolve({ verdict: 'accept', headers: headerLines(out) });
        if (code === 1) return resolve({ verdict: 'reject', why: 'exit 1' });
        resolve({ verdict: 'tempfail', why: signal ? `killed by ${signal}` : `exit ${code}` });
      });
    });
  }

  private done(input: CheckInput, r: CheckResult, started: number): CheckResult {
    const ms = Date.now() - started;
    this.metrics.inc('checker_results_total', { result: r.verdict });
    const what = r.verdict === 'accept' ? `accepted${r.headers.length ? ` (+${r.headers.length} headers)` : ''}` : `${r.verdict}: ${r.why}`;
    this.log.info({ session: input.session, ip: input.ip, checker: r.verdict, ms }, `external checker ${what}`);
    return r;
  }

  /** Waits for a free slot until `deadline`; false if none came. */
  private async slot(deadline: number): Promise<boolean> {
    if (this.running < this.cfg.concurrency) {
      this.running++;
      return true;
    }
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(t);
        this.running++;
        resolve(true);
      };
      const t = setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w !== wake);
        resolve(false);
      }, Math.max(1, deadline - Date.now()));
      this.waiting.push(wake);
    });
  }

  private release(): void {
    this.running--;
    this.waiting.shift()?.();
  }
}

/** The PATH the checker runs with (and is looked up in): the host's own. */
function checkerPath(): string {
  return process.env.PATH ?? '/usr/bin:/bin';
}

/**
 * Why the checker's program cannot be run, or null when it can: for `portcullis check`
 * and the start, since a missing program tempfails every message (451) and is otherwise
 * found only in the log of each refusal. A name without a slash is looked up in PATH, as
 * spawn does.
 */
export function checkerCommandProblem(command: readonly string[]): string | null {
  const cmd = command[0] ?? '';
  const runnable = (file: string): 'ok' | 'missing' | 'not a file' | 'not executable' => {
    try {
      if (!statSync(file).isFile()) return 'not a file';
      accessSync(file, constants.X_OK);
      return 'ok';
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR' ? 'missing' : 'not executable';
    }
  };
  if (cmd.includes('/')) {
    switch (runnable(cmd)) {
      case 'ok':
        return null;
      case 'missing':
        return `${cmd} does not exist`;
      case 'not a file':
        return `${cmd} is not a file`;
      default:
        return `${cmd} is not executable (chmod +x?)`;
    }
  }
  const path = checkerPath();
  if (path.split(delimiter).some((dir) => runnable(join(dir || '.', cmd)) === 'ok')) return null;
  return `"${cmd}" was not found in PATH (${path}); give its full path`;
}

/** The header fields among the checker's output lines (others are ignored). */
function headerLines(out: string): [string, string][] {
  const fields: [string, string][] = [];
  for (const line of out.split(/\r?\n/)) {
    const m = FIELD.exec(line);
    if (m) fields.push([m[1]!, m[2]!.trim()]);
  }
  return fields;
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL'); // the checker and anything it started
  } catch {
    /* already gone */
  }
}
