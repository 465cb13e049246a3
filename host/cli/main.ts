/** The `portcullis` command: see USAGE. */
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from '../config/config.js';
import { DataDirInUseError } from '../control.js';
import { WorkerStartError } from '../cluster/ipc.js';
import { RuleSetError } from '../pipeline/ruleset.js';
import { check } from './check.js';
import { reload, stats, status } from './status.js';
import { newRule } from './new-rule.js';
import { passwd } from './passwd.js';
import { runTests } from './test.js';
import { tryTranscript } from './try.js';
import { UsageError } from './usage.js';
import { conn, kill, traffic } from './admin.js';

const USAGE = `usage:
  portcullis start [--config FILE] [--listen HOST:PORT] [--admin HOST:PORT|off] [--data-dir DIR] [--rules DIR] [--dns HOST:PORT] [--relay HOST:PORT] [--log-format json|pretty] [--processes N|auto]
      run the SMTP front door (embedded defaults: 127.0.0.1:2525, metrics on 127.0.0.1:8025, built-in rules, ./data)
  portcullis check [--config FILE] [--rules DIR]
      validate the config and every rule (compile, load, options); exit 1 on any problem
  portcullis try [--config FILE] [--rules DIR] [--ip IP] [--port 25|587] [--ptr NAME] [--helo NAME] [--auth USER] [--dns HOST:PORT] [TRANSCRIPT]
      replay client lines (a file, or stdin) against the rules; print replies and decisions
  portcullis replay [--config FILE] [--rules DIR] [--records DIR] [--since 24h | --from TIME --to TIME] [--store snapshot|empty] [--only-changed] [--json] [--workers N]
  portcullis replay --show ID | --save-fixtures DIR --sessions ID...  [--config FILE] [--rules DIR] [--records DIR]
      run recorded sessions (config record) through the rules as they are now; print what would change,
      per rule and session; --show: one session side by side; --save-fixtures: test fixtures (loadRecordedSession)
  portcullis test [--config FILE] [--rules DIR] [PATHS...]
      run rule tests (*.test.ts) with node's test runner (default: the rules directories)
  portcullis new-rule NAME [--dir DIR]
      write DIR/NAME.ts and DIR/NAME.test.ts from a template
  portcullis reload [--config FILE] [--data-dir DIR]
      make the running host re-read its config and rules (as SIGHUP does); exit 1 if that failed
  portcullis status [--config FILE] [--data-dir DIR]
      the running host's rule set version, reloads and last reload error
  portcullis stats [--config FILE] [--data-dir DIR] [--window | --hourly | --routes]
      the running host's counters: hits per rule and verdict, failures, refusals; --window: per
      minute, the last hour; --hourly: per hour, the last day; --routes: per recipient domain and day
  portcullis conn [--config FILE]
      the running host's live sessions (admin API)
  portcullis kill [--config FILE] ID
      end a live session with 421 (admin API)
  portcullis blacklist [--config FILE] [--data-dir DIR] list | add IP [--ttl SECONDS] [--reason TEXT] | remove IP | reset
      the internal blacklist (reset also makes the host re-read its config)
  portcullis mailbox [--config FILE] [--data-dir DIR] list | add ADDRESS | remove ADDRESS
      local mailboxes (ADDRESS: user@domain, or *@domain for all of a domain)
  portcullis access [--config FILE] [--data-dir DIR] list | add LINE... | remove LINE
      the access map's lines in the store, read after the config's (LINE, quoted: 'Connect:192.0.2.1 REJECT Go away')
  portcullis passwd [USER]
      read a password (terminal, or the first line of stdin) and print the hash auth.users.USER takes
  portcullis queue list | show ID | retry ID|--all | delete ID  [--config FILE] [--data-dir DIR]
      the delivery queue: retry makes it due now, delete removes it for good (no bounce)
  portcullis quarantine list | show ID | release ID | delete ID  [--config FILE] [--data-dir DIR]
      quarantined mail: release queues it for delivery with its original envelope

options:
  --config FILE        JSON config (see schemas/config.schema.json)
  --listen HOST:PORT   listen here instead of the config's addresses
  --admin HOST:PORT    serve /metrics here instead of the config's admin.listen ("off": nowhere)
  --data-dir DIR       spool and state under DIR
  --rules DIR          also load rules from DIR (beside the built-in rules)
  --dns HOST:PORT      resolver for DNS checks (DNSBL, sender MX); "system" for /etc/resolv.conf
  --relay HOST:PORT    relay mode: pass each message to this next hop during DATA, answer with its verdict
  --log-format pretty  human-readable log lines for a terminal (default json: one object per line)
  --processes N|auto   serve SMTP from N worker processes sharing the listening sockets (auto: one per core; default 1)
  --records DIR        the session record files (default: the config's record.dir, or DATA_DIR/record)
  --since 24h          replay the sessions of the last 30m, 24h, 7d… (default 24h); or --from/--to TIME (ISO 8601)
  --store snapshot     what rules' store reads see: the host's store as it is (read only, counters left out), or empty
  --only-changed       --json: only the sessions that change
  --json               machine-readable output
  --show ID            one session, recorded and replayed, command by command
  --save-fixtures DIR  write the sessions named by --sessions to DIR/ID.json for the test harness
  --workers N          sandbox workers for the replay (default: the config's sandbox.workers)
`;

/**
 * One command's part of USAGE: its synopsis lines (a command may have several), what it
 * does, and the options it names; null for a command USAGE does not list. USAGE stays the
 * one home of the text: `portcullis CMD --help` is cut from it.
 */
export function usageOf(cmd: string): string | null {
  const lines = USAGE.split('\n');
  const own: string[] = [];
  lines.forEach((l, i) => {
    if (l !== `  portcullis ${cmd}` && !l.startsWith(`  portcullis ${cmd} `)) return;
    own.push(l);
    for (let j = i + 1; lines[j]?.startsWith('      '); j++) own.push(lines[j]!);
  });
  if (!own.length) return null;
  const named = own.join('\n');
  const options = lines.slice(lines.indexOf('options:') + 1).filter((l) => {
    const flag = /^ {2}(--[a-z-]+)/.exec(l)?.[1];
    return flag !== undefined && new RegExp(`${flag}\\b`).test(named);
  });
  return `usage:\n${named}\n${options.length ? `\noptions:\n${options.join('\n')}\n` : ''}`;
}

/** `--help` or `-h` anywhere before a `--` (after which arguments are data, not options). */
function wantsHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

async function start(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string' }, listen: { type: 'string' }, admin: { type: 'string' }, 'data-dir': { type: 'string' }, rules: { type: 'string' }, dns: { type: 'string' }, relay: { type: 'string' }, 'log-format': { type: 'string' }, processes: { type: 'string' } },
    strict: true,
  });
  const processes = processCount(values.processes);
  const overrides = { listen: values.listen, admin: values.admin, dataDir: values['data-dir'], rulesDir: values.rules, dns: values.dns, relay: values.relay, logFormat: values['log-format'] };
  const config = loadConfig(values.config, overrides);
  const hostOptions = { configFile: values.config, overrides, watch: config.watch };
  if (cluster.isPrimary && processes > 1) return primary(config, processes);
  const host = cluster.isWorker
    ? await (await import('../cluster/worker.js')).runWorker(config, hostOptions)
    : await (await import('../host.js')).startHost(config, hostOptions);
  // SIGHUP: re-read config and rules (and reopen the log file, as most daemons do);
  // SIGUSR1: only reopen the log file (logrotate's postrotate).
  process.on('SIGHUP', () => {
    host.reopenLog();
    void host.reload('SIGHUP');
  });
  process.on('SIGUSR1', () => host.reopenLog());
  const stop = stopOnSignals(host.log, 'closing connections and stopping', () => host.close());
  // A worker whose primary is gone (killed with -9) stops too: nobody replaces it or holds the lock.
  if (cluster.isWorker) process.once('disconnect', () => stop('the primary is gone'));
  return new Promise<number>(() => undefined); // runs until a signal
}

/**
 * SIGTERM (the unit's KillSignal) and SIGINT close once (`doing` is logged) and exit 0;
 * returns the stop, for other reasons to stop.
 */
function stopOnSignals(log: { info(msg: string): void }, doing: string, close: () => Promise<void>): (why: string) => void {
  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    log.info(`${why}: ${doing}`);
    void close().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return stop;
}

/** `--processes N|auto`: how many worker processes serve SMTP (auto: one per core). */
function processCount(v: string | undefined): number {
  if (v === undefined) return 1;
  if (v === 'auto') return availableParallelism();
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > MAX_PROCESSES) throw new UsageError(`--processes: a number from 1 to ${MAX_PROCESSES}, or auto (one per core), not ${JSON.stringify(v)}`);
  return n;
}

const MAX_PROCESSES = 256;

/** `portcullis start --processes N` (N > 1): the cluster's primary (host/cluster/primary.ts), with the signals a single host takes. */
async function primary(config: Config, processes: number): Promise<number> {
  const { startPrimary } = await import('../cluster/primary.js');
  const p = await startPrimary(config, { processes });
  // SIGHUP: the workers re-read config and rules (and every process reopens its log file).
  process.on('SIGHUP', () => p.hangup());
  process.on('SIGUSR1', () => p.reopenLog());
  stopOnSignals(p.log, 'stopping the worker processes', () => p.close());
  return new Promise<number>(() => undefined);
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  // Every command's help, before its own parsing (which would refuse an unknown --help).
  if (cmd && cmd !== 'help' && wantsHelp(rest)) {
    process.stdout.write(usageOf(cmd) ?? USAGE);
    return 0;
  }
  try {
    switch (cmd) {
      case 'start':
        return await start(rest);
      case 'check':
        return await check(rest);
      case 'try':
        return await tryTranscript(rest);
      case 'replay':
        return await (await import('./replay.js')).replay(rest);
      case 'test':
        return await runTests(rest);
      case 'new-rule':
        return newRule(rest);
      case 'reload':
        return await reload(rest);
      case 'status':
        return status(rest);
      case 'stats':
        return rest.some((a) => ['--window', '--hourly', '--routes'].includes(a)) ? await traffic(rest) : stats(rest);
      case 'conn':
        return await conn(rest);
      case 'kill':
        return await kill(rest);
      // The server and the store commands load sqlite3's native module, imported only
      // here: check, test, try and new-rule work where it was not built (npm --ignore-scripts).
      case 'blacklist':
        return await (await import('./store.js')).blacklistCommand(rest);
      case 'mailbox':
        return await (await import('./store.js')).mailboxCommand(rest);
      case 'access':
        return await (await import('./store.js')).accessCommand(rest);
      case 'passwd':
        return await passwd(rest);
      // queue.ts reaches the spool and the running host's control socket, not sqlite3.
      case 'queue':
        return await (await import('./queue.js')).queueCommand(rest);
      case 'quarantine':
        return await (await import('./queue.js')).quarantineCommand(rest);
      case 'help':
        process.stdout.write((rest[0] && usageOf(rest[0])) || USAGE);
        return 0;
      case undefined:
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return cmd ? 0 : 64;
      default:
        process.stderr.write(`portcullis: unknown command "${cmd}"\n${USAGE}`);
        return 64;
    }
  } catch (e) {
    if (e instanceof WorkerStartError) {
      process.stderr.write(`portcullis: ${e.message}\n`);
      return e.exitCode || 70; // the worker's own code (78: a rule that does not load), told above it
    }
    if (e instanceof DataDirInUseError) {
      process.stderr.write(`portcullis: ${e.message}\n`);
      return 1;
    }
    if (e instanceof ConfigError || e instanceof RuleSetError) {
      process.stderr.write(`portcullis: ${e.message}\n`);
      return 78; // EX_CONFIG
    }
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`portcullis ${cmd}: ${(e as Error).message}\n${usageOf(cmd!) ?? USAGE}`);
      return 64; // EX_USAGE
    }
    // A system error (port in use, data dir not writable…) is the admin's to fix: say it plainly.
    if (typeof (e as NodeJS.ErrnoException).code === 'string' && /^E[A-Z]+$/.test((e as NodeJS.ErrnoException).code!)) {
      process.stderr.write(`portcullis: ${(e as Error).message}\n`);
      return 71; // EX_OSERR
    }
    process.stderr.write(`portcullis: ${(e as Error).stack ?? String(e)}\n`);
    return 70; // EX_SOFTWARE
  }
}
