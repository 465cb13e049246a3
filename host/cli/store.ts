/**
 * `portcullis blacklist list|add IP [--ttl SECONDS] [--reason TEXT]|remove IP|reset`,
 * `portcullis mailbox list|add ADDRESS|remove ADDRESS` and `portcullis access list|add
 * LINE...|remove LINE`: change the store on disk, then tell a running host to re-read it
 * (SIGHUP, as `portcullis reload`). The blacklist's list, add and remove go through the
 * running host's admin API when one answers (no reload, and its live view; reset also
 * makes it re-read its config). `blacklist reset` empties the blacklist and makes the
 * host re-read its config too, like SmtpEvt's reset.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { ACCESS_STORE_LIST, parseAccessLine } from '../../sdk/index.js';
import { loadConfig, type Config } from '../config/config.js';
import { openBackend, sqliteFile } from '../store/open.js';
import { StoreError } from '../store/sqlite.js';
import { MemoryStore } from '../store/store.js';
import { ask, NoHost } from './admin.js';
import { readStatus } from './status.js';
import { UsageError } from './usage.js';

type Out = { write(s: string): unknown };

/** Where the store is: every store command takes these. */
const WHERE = { config: { type: 'string' }, 'data-dir': { type: 'string' } } as const;
const OPTIONS = { ...WHERE, ttl: { type: 'string' }, reason: { type: 'string' } } as const;

interface StoreRun {
  /** `blacklist`, `mailbox` or `access`, for the messages. */
  cmd: string;
  out: Out;
  err: Out;
  /** Tell a running host to re-read the store when `fn` returned 0. */
  notify?: boolean;
}

/**
 * Runs `fn` on the store; once its changes are committed (the store closed), tells a
 * running host to re-read it when `fn` returned 0 with `notify`. A write the database
 * refused is a StoreError (exit 71), not a silent success.
 *
 * Only `portcullis start` creates the database. Here a missing one means a wrong
 * --config or --data-dir: creating it would "succeed" into a file no host reads, and the
 * admin would wonder why the blacklisted client still gets in.
 */
async function withStore(values: { config?: string; 'data-dir'?: string }, fn: (s: MemoryStore) => number, run: StoreRun): Promise<number> {
  const config = loadConfig(values.config, { dataDir: values['data-dir'] });
  const dataDir = resolve(config.dataDir);
  const file = sqliteFile(dataDir);
  if (config.store.backend === 'sqlite' && !existsSync(file)) {
    run.err.write(`portcullis ${run.cmd}: no database at ${file} (\`portcullis start\` creates it there); is --config or --data-dir the one the host runs with?\n`);
    return 1;
  }
  // Redis: the change reaches every host through its channel; unreachable is an error here, never held.
  const store = await MemoryStore.open(await openBackend(config, dataDir, { holdWhileDown: false }));
  let code: number;
  try {
    code = fn(store);
  } finally {
    await store.close();
  }
  if (store.lastWriteError) throw new StoreError(`could not write the store (the change was not saved): ${store.lastWriteError.message}`);
  if (code === 0 && run.notify) signalHost(dataDir, run.out);
  return code;
}

/** Tells a running host (found through status.json) to re-read the store and config. */
function signalHost(dataDir: string, out: Out): void {
  const st = readStatus(dataDir);
  if (!st) return; // no host ever ran with this data dir: it reads the store when it starts
  try {
    process.kill(st.pid, 'SIGHUP');
    out.write(`told the running host (pid ${st.pid}) to re-read it\n`);
  } catch {
    // that host is gone: the next one reads the store when it starts
  }
}

/**
 * The blacklist through the running host's admin API: the change applies to the next
 * connection with no reload, and `list` shows the host's live entries (its database
 * lags by the write-behind). Null when no host answers: the caller uses the database.
 */
async function blacklistViaHost(values: { config?: string; 'data-dir'?: string; ttl?: string; reason?: string }, action: string, ip: string | undefined, out: Out, err: Out): Promise<number | null> {
  const config = loadConfig(values.config, { dataDir: values['data-dir'] });
  const q = (o: Record<string, string>) => new URLSearchParams(o).toString();
  try {
    if (action === 'list') {
      const now = Date.now();
      for (const e of await ask<{ ip: string; rule: string; reason: string; expires: string }[]>(config, 'GET', '/api/blacklist')) {
        out.write(`${e.ip}\t${e.rule}\t${Math.ceil((Date.parse(e.expires) - now) / 60000)} min left\t${e.reason}\n`);
      }
    } else if (action === 'add') {
      await ask(config, 'POST', `/api/blacklist?${q({ ip: ip!, ttl: values.ttl ?? '3600', ...(values.reason ? { reason: values.reason } : {}) })}`);
      out.write(`blacklisted ${ip} (the running host applied it)\n`);
    } else if (action === 'remove') {
      const gone = await ask(config, 'DELETE', `/api/blacklist?${q({ ip: ip! })}`).then(() => true, (e: unknown) => {
        if (e instanceof NoHost && / 404: /.test(e.message)) return false;
        throw e;
      });
      if (!gone) {
        err.write(`portcullis blacklist remove: ${ip} is not blacklisted\n`);
        return 1;
      }
      out.write(`removed ${ip} (the running host applied it)\n`);
    } else if (action === 'reset') {
      await ask(config, 'DELETE', '/api/blacklist?all=1');
      out.write('blacklist emptied (the running host applied it)\n');
      signalHost(resolve(config.dataDir), out); // SmtpEvt's reset re-reads the config too
    } else return null;
    return 0;
  } catch (e) {
    if (e instanceof NoHost) return null;
    throw e;
  }
}

export async function blacklistCommand(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [action, ip] = positionals;
  if ((action === 'add' || action === 'remove') && (!ip || !isIP(ip))) {
    err.write(`portcullis blacklist ${action}: give an IP address\n`);
    return 64;
  }
  if (action === 'add' && !(Number(values.ttl ?? 3600) > 0)) {
    err.write('portcullis blacklist add: --ttl must be a number of seconds > 0\n');
    return 64;
  }
  const viaHost = action ? await blacklistViaHost(values, action, ip, out, err) : null;
  if (viaHost !== null) return viaHost;
  if (action === 'list') {
    return withStore(values, (s) => {
      const now = Date.now();
      for (const e of s.blacklistList(now).sort((a, b) => a.expires - b.expires)) {
        out.write(`${e.ip}\t${e.rule}\t${Math.ceil((e.expires - now) / 60000)} min left\t${e.reason}\n`);
      }
      return 0;
    }, { cmd: 'blacklist', out, err });
  }
  if (action === 'add' || action === 'remove') {
    return withStore(values, (s) => {
      if (action === 'add') s.blacklistAdd(ip!, Number(values.ttl ?? 3600), values.reason ?? 'added by the administrator', 'admin');
      else if (!s.blacklistRemove(ip!)) {
        err.write(`portcullis blacklist remove: ${ip} is not blacklisted\n`);
        return 1;
      }
      out.write(`${action === 'add' ? 'blacklisted' : 'removed'} ${ip}\n`);
      return 0;
    }, { cmd: 'blacklist', out, err, notify: true });
  }
  if (action === 'reset') {
    return withStore(values, (s) => {
      s.blacklistClear();
      out.write('blacklist emptied\n');
      return 0;
    }, { cmd: 'blacklist', out, err, notify: true });
  }
  throw new UsageError(action ? `"${action}" is not list, add, remove or reset` : 'say list, add, remove or reset');
}

export async function mailboxCommand(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [action, address] = positionals;
  if (action === 'list') {
    const fromConfig = new Set(loadConfig(values.config, { dataDir: values['data-dir'] }).mailboxes.map((m) => m.toLowerCase()));
    return withStore(values, (s) => {
      const all = new Set([...s.mailboxList(), ...fromConfig]);
      for (const m of [...all].sort()) out.write(`${m}${fromConfig.has(m) ? ' (config)' : ''}\n`);
      return 0;
    }, { cmd: 'mailbox', out, err });
  }
  if ((action === 'add' || action === 'remove') && address && /^[^@\s]+@[A-Za-z0-9.-]+$/.test(address)) {
    return withStore(values, (s) => {
      if (action === 'add') s.mailboxAdd(address);
      else if (!s.mailboxRemove(address)) {
        err.write(`portcullis mailbox remove: ${address} is not listed\n`);
        return 1;
      }
      out.write(`${action === 'add' ? 'added' : 'removed'} ${address.toLowerCase()}\n`);
      return 0;
    }, { cmd: 'mailbox', out, err, notify: true });
  }
  if (action === 'add' || action === 'remove') throw new UsageError(address ? `"${address}" is not user@domain or *@domain` : `give the ADDRESS to ${action}`);
  throw new UsageError(action ? `"${action}" is not list, add or remove` : 'say list, add or remove');
}

/**
 * The store list the access rule reads: its `storeList` option in the config (default
 * ACCESS_STORE_LIST), or null when the config says it reads none.
 */
function accessList(config: Config): string | null {
  const named = config.rules.settings.access?.options?.storeList;
  return typeof named === 'string' || named === null ? named : ACCESS_STORE_LIST;
}

/** Each LINE as the access rule reads it (its one spelling); a UsageError naming the first that is not an access line. */
function accessLines(lines: string[], action: string): string[] {
  if (!lines.length) throw new UsageError(`give the LINE to ${action}, quoted: '${EXAMPLE_LINE}'`);
  return lines.map((line) => {
    const e = parseAccessLine(line);
    if (typeof e !== 'string') return e.line;
    // `access add Connect:192.0.2.1 REJECT Go away` unquoted is four lines, the first without its action.
    const unquoted = lines.length > 1 && !/\s/.test(line.trim()) ? ` (each LINE is one argument: quote it, as in '${EXAMPLE_LINE}')` : '';
    throw new UsageError(`"${line}" is not an access line: ${e}${unquoted}`);
  });
}
const EXAMPLE_LINE = 'Connect:192.0.2.1 REJECT Go away';

export async function accessCommand(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: WHERE, allowPositionals: true, strict: true });
  const [action, ...lines] = positionals;
  if (action !== 'list' && action !== 'add' && action !== 'remove') throw new UsageError(action ? `"${action}" is not list, add or remove` : 'say list, add or remove');
  if (action === 'remove' && lines.length > 1) throw new UsageError(`remove takes one LINE, quoted: '${EXAMPLE_LINE}'`);
  // Checked before the store is opened: a bad line changes nothing.
  const wanted = action === 'list' ? [] : accessLines(lines, action);
  const config = loadConfig(values.config, { dataDir: values['data-dir'] });
  const list = accessList(config);
  if (list === null) {
    err.write('portcullis access: the access rule reads no store list here (rules.settings.access.options.storeList is null in the config)\n');
    return 1;
  }
  if (action === 'list') {
    const own = (config.rules.settings.access?.options?.entries ?? []) as string[];
    return withStore(values, (s) => {
      // In the rule's order: the config's lines (options or their file), then the store's.
      for (const line of own) out.write(`${line}\t(config)\n`);
      for (const line of s.listValues(list)) out.write(`${line}\n`);
      return 0;
    }, { cmd: 'access', out, err });
  }
  return withStore(values, (s) => {
    if (action === 'add') {
      for (const line of wanted) {
        // The same entry spelled otherwise (spaces, case of a value) is the same line.
        const had = s.listValues(list).some((v) => sameLine(v, line));
        if (!had) s.listAdd(list, line);
        out.write(had ? `already listed: ${line}\n` : `added ${line}\n`);
      }
      return 0;
    }
    const line = wanted[0]!;
    const stored = s.listValues(list).find((v) => sameLine(v, line));
    if (stored === undefined) {
      err.write(`portcullis access remove: "${line}" is not listed\n`);
      return 1;
    }
    s.listRemove(list, stored);
    out.write(`removed ${stored}\n`);
    return 0;
  }, { cmd: 'access', out, err, notify: true });
}

/** Whether a line the store holds is `line` (in its one spelling). */
function sameLine(stored: string, line: string): boolean {
  const e = parseAccessLine(stored);
  return typeof e !== 'string' && e.line === line;
}
