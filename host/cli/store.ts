/**
 * `portcullis blacklist list|add IP [--ttl SECONDS] [--reason TEXT]|remove IP|reset` and
 * `portcullis mailbox list|add ADDRESS|remove ADDRESS`: change the store on disk, then
 * tell a running host to re-read it (SIGHUP, as `portcullis reload`). `blacklist reset`
 * empties the blacklist and makes the host re-read its config too, like SmtpEvt's reset.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/config.js';
import type { ReloadStatus } from '../reload.js';
import { SqliteBackend, StoreError } from '../store/sqlite.js';
import { MemoryStore } from '../store/store.js';
import { UsageError } from './usage.js';

type Out = { write(s: string): unknown };

const OPTIONS = { config: { type: 'string' }, 'data-dir': { type: 'string' }, ttl: { type: 'string' }, reason: { type: 'string' } } as const;

interface StoreRun {
  /** `blacklist` or `mailbox`, for the messages. */
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
  const dataDir = resolve(loadConfig(values.config, { dataDir: values['data-dir'] }).dataDir);
  const file = join(dataDir, 'portcullis.db');
  if (!existsSync(file)) {
    run.err.write(`portcullis ${run.cmd}: no database at ${file} (\`portcullis start\` creates it there); is --config or --data-dir the one the host runs with?\n`);
    return 1;
  }
  const store = await MemoryStore.open(await SqliteBackend.open(file));
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
  try {
    const st = JSON.parse(readFileSync(join(dataDir, 'status.json'), 'utf8')) as ReloadStatus;
    process.kill(st.pid, 'SIGHUP');
    out.write(`told the running host (pid ${st.pid}) to re-read it\n`);
  } catch {
    // no host running with this data dir: it reads the store when it starts
  }
}

export async function blacklistCommand(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [action, ip] = positionals;
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
    if (!ip || !isIP(ip)) {
      err.write(`portcullis blacklist ${action}: give an IP address\n`);
      return 64;
    }
    const ttl = Number(values.ttl ?? 3600);
    if (!(ttl > 0)) {
      err.write('portcullis blacklist add: --ttl must be a number of seconds > 0\n');
      return 64;
    }
    return withStore(values, (s) => {
      if (action === 'add') s.blacklistAdd(ip, ttl, values.reason ?? 'added by the administrator', 'admin');
      else if (!s.blacklistRemove(ip)) {
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
