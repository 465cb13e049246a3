/**
 * `portcullis queue list | show ID | retry ID|--all | delete ID` and
 * `portcullis quarantine list | show ID | release ID | delete ID`.
 *
 * list and show only read: the spool files and the queue's retry state, straight from the
 * data dir, beside a running host or not (a file that goes between the listing and the
 * read was delivered meanwhile, and is left out).
 *
 * The changes are made by whoever holds the data dir's control socket (host/control.ts):
 * the running host, asked over the socket, since only its queue knows which delivery is
 * under way; or, when no host runs, this command, which takes the socket itself for the
 * time it works (a host starting meanwhile waits for it) and does the same work
 * (delivery/admin.ts) on the spool directly.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/config.js';
import { ask, ControlServer } from '../control.js';
import { angle, MailAdmin, MESSAGE_ID, type AdminAnswer, type AdminRequest } from '../delivery/admin.js';
import { bodyOffset } from '../delivery/header.js';
import { firstAttempt, readRetryState, type RetryState } from '../delivery/retry-state.js';
import { adoptOrphanSlots, spoolRoots } from '../delivery/slots.js';
import { areaDir, readEnvelope, readSpoolFile, Spool, type SpoolEnvelope } from '../spool/spool.js';
import { UsageError } from './usage.js';

type Out = { write(s: string): unknown };
type Area = 'spool' | 'quarantine';

const OPTIONS = { config: { type: 'string' }, 'data-dir': { type: 'string' }, all: { type: 'boolean' } } as const;

const WHERE: Record<Area, string> = { spool: 'in the queue', quarantine: 'in quarantine' };
/** How long a command keeps asking a host that is starting or stopping. */
const AGAIN_MS = 15_000;

/** `2m`, `3h05m`, `2d04h`: how long, for people. */
export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

const count = (n: number, area: Area): string => `${n} message${n === 1 ? '' : 's'} ${WHERE[area]}`;
const angles = (addresses: string[]): string => addresses.map(angle).join(', ');

interface Entry {
  id: string;
  env: SpoolEnvelope;
  state: RetryState;
}

/** The messages of an area, oldest first, with their retry state (spool only). */
async function entries(dataDir: string, area: Area): Promise<Entry[]> {
  // A cluster's workers each have a spool (delivery/slots.ts): all of them, oldest first.
  const all = (await Promise.all(spoolRoots(dataDir).map((root) => entriesOf(root, area)))).flat();
  return all.sort((a, b) => a.id.localeCompare(b.id));
}

async function entriesOf(dataDir: string, area: Area): Promise<Entry[]> {
  const dir = areaDir(dataDir, area);
  const ids = (await readdir(dir).catch(() => [])).filter((f) => f.endsWith('.msg')).map((f) => f.slice(0, -4)).sort();
  const out: Entry[] = [];
  for (const id of ids) {
    const env = await readEnvelope(join(dir, `${id}.msg`)).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return null; // delivered (or released) since the listing
      throw e;
    });
    if (env) out.push({ id, env, state: (area === 'spool' && (await readRetryState(dataDir, id))) || firstAttempt() });
  }
  return out;
}

/** When the queue tries it next, as `queue list` says it. */
function nextAttempt(s: RetryState, hold: boolean, now: number): string {
  if (hold) return 'held';
  return s.nextAttemptAt <= now ? 'now' : `in ${span(s.nextAttemptAt - now)}`;
}

/** Rows under a header, in columns (the last one as long as it is). */
function table(header: string[], rows: string[][], out: Out): void {
  if (!rows.length) return;
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [header, ...rows]) out.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ') + '\n');
}

async function list(dataDir: string, area: Area, hold: boolean, out: Out): Promise<number> {
  const now = Date.now();
  const all = await entries(dataDir, area);
  if (area === 'spool') {
    table(['ID', 'AGE', 'FROM', 'TO', 'ATTEMPTS', 'NEXT', 'LAST ERROR'], all.map(({ id, env, state }) => {
      const left = env.rcptTo.filter((r) => !state.done.includes(r));
      const to = angles(left) + (state.done.length ? ` (+${state.done.length} done)` : '');
      return [id, span(now - Date.parse(env.receivedAt)), angle(env.mailFrom), to, String(state.attempts), nextAttempt(state, hold, now), state.lastError ?? '-'];
    }), out);
  } else {
    table(['ID', 'AGE', 'FROM', 'TO', 'RULE', 'REASON'], all.map(({ id, env }) => [id, span(now - Date.parse(env.receivedAt)), angle(env.mailFrom), angles(env.rcptTo), env.disposition?.rule ?? '-', env.disposition?.reason ?? '-']), out);
  }
  out.write(`${count(all.length, area)}\n`);
  return 0;
}

async function show(slot1: string, area: Area, id: string, hold: boolean, out: Out, err: Out): Promise<number> {
  let file: Buffer;
  const dataDir = spoolRoots(slot1).find((root) => existsSync(join(areaDir(root, area), `${id}.msg`))) ?? slot1;
  try {
    file = await readFile(join(areaDir(dataDir, area), `${id}.msg`));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    err.write(`portcullis ${area === 'spool' ? 'queue' : 'quarantine'} show: no message ${id} ${WHERE[area]}\n`);
    return 1;
  }
  const { envelope: env, message } = readSpoolFile(file);
  const state = (area === 'spool' && (await readRetryState(dataDir, id))) || firstAttempt();
  const now = Date.now();
  const c = env.client;
  const line = (label: string, value: string): unknown => out.write(`${`${label}:`.padEnd(14)}${value}\n`);
  line('id', id);
  line('received', `${env.receivedAt} (${span(now - Date.parse(env.receivedAt))} ago) from ${c.helo ?? 'unknown'} (${c.ptr ? `${c.ptr} ` : ''}[${c.ip}]:${c.port})${c.user ? `, authenticated as ${c.user}` : ''}`);
  line('from', angle(env.mailFrom));
  line('to', area === 'spool' ? env.rcptTo.map((r) => `${angle(r)} (${state.done.includes(r) ? 'done' : 'pending'})`).join(', ') : angles(env.rcptTo));
  const d = env.disposition;
  const ruled = d && `rule ${d.rule ?? '?'}: ${d.reason ?? 'no reason given'}`;
  if (d?.action === 'quarantine') line(area === 'spool' ? 'released' : 'quarantined', `${area === 'spool' ? 'from quarantine, ' : ''}${ruled}`);
  if (d?.action === 'redirect') line('redirected', `${ruled}; the client gave ${angles(d.originalRcptTo ?? [])}`);
  if (env.dsn) line('dsn', JSON.stringify(env.dsn));
  line('size', `${message.length} bytes`);
  if (area === 'spool') {
    line('attempts', String(state.attempts));
    line('next attempt', hold ? 'held (delivery.queue.hold)' : state.nextAttemptAt <= now ? 'now' : `${new Date(state.nextAttemptAt).toISOString()} (in ${span(state.nextAttemptAt - now)})`);
    line('last error', state.lastError ?? '-');
  }
  // The header as it will be delivered (our Received and the rules' fields first).
  out.write(`\n${message.subarray(0, bodyOffset(message)).toString('utf8').replace(/\r\n/g, '\n').replace(/\n+$/, '')}\n`);
  return 0;
}

/**
 * Has `req` carried out: by the running host, or, with none running, here with the data
 * dir's control socket held. A host that is starting or stopping is asked again.
 */
async function change(dataDir: string, hold: boolean, req: AdminRequest): Promise<AdminAnswer> {
  const deadline = Date.now() + AGAIN_MS;
  for (;;) {
    const asked = await ask(dataDir, req);
    let answer: AdminAnswer | null = asked?.answer ?? null;
    if (!asked) {
      const lock = await ControlServer.acquire(dataDir, 'command', 0);
      // Not taken: a host (or another command) took it since we asked; ask it.
      if (lock instanceof ControlServer) answer = await offline(dataDir, hold, req, lock);
    }
    if (answer && !answer.again) return answer;
    if (Date.now() > deadline) return answer ?? { ok: false, text: 'the data dir changed hands for too long; try again' };
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** No host runs: do it here, holding the lock (another command meanwhile is served in turn). */
async function offline(dataDir: string, hold: boolean, req: AdminRequest, lock: ControlServer): Promise<AdminAnswer> {
  let spool: Spool | undefined;
  try {
    // What a bigger cluster's other slots hold comes into slot 1's spool first, as a host's start does.
    await adoptOrphanSlots(dataDir, 1);
    spool = new Spool(dataDir);
    // As a host's start does: what the journal holds is in the spool before anything changes,
    // and the journal knows every message there (so a delete is recorded against it).
    await spool.recover();
    const admin = new MailAdmin({ spool, dataDir, queue: null, hold, log: null });
    lock.serve((r) => admin.handle(r));
    return await admin.handle(req);
  } finally {
    await lock.drain();
    await spool?.close();
    await lock.close();
  }
}

async function command(area: Area, argv: string[], out: Out, err: Out): Promise<number> {
  const name = area === 'spool' ? 'queue' : 'quarantine';
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const [action, id, ...extra] = positionals;
  const config = loadConfig(values.config, { dataDir: values['data-dir'] });
  const dataDir = resolve(config.dataDir);
  const hold = config.delivery.queue.hold;
  const changes: Record<string, AdminRequest['op'] | undefined> = area === 'spool'
    ? { retry: values.all ? 'queue-retry-all' : 'queue-retry', delete: 'queue-delete' }
    : { release: 'quarantine-release', delete: 'quarantine-delete' };
  const op = action === undefined ? undefined : Object.hasOwn(changes, action) ? changes[action] : undefined;
  const wantsId = action === 'show' || (op !== undefined && op !== 'queue-retry-all');
  // main.ts prints the message and this command's usage (USAGE there is its one home).
  const actions = ['list', 'show', ...Object.keys(changes)];
  if (action !== 'list' && action !== 'show' && !op) throw new UsageError(action === undefined ? `say ${actions.join(', ')}` : `"${action}" is not one of ${actions.join(', ')}`);
  if (values.all && op !== 'queue-retry-all') throw new UsageError('--all goes with retry only');
  if (wantsId && !id) throw new UsageError(`give the ID to ${action}`);
  if (!wantsId && id !== undefined) throw new UsageError(`${action} takes no ID`);
  if (extra.length) throw new UsageError('one ID at a time');
  if (!existsSync(dataDir)) {
    err.write(`portcullis ${name} ${action}: no data dir at ${dataDir} (give --data-dir or --config)\n`);
    return 1;
  }
  if (action === 'list') return list(dataDir, area, hold, out);
  if (id !== undefined && !MESSAGE_ID.test(id)) {
    err.write(`portcullis ${name} ${action}: no message ${id} ${WHERE[area]}\n`);
    return 1;
  }
  if (action === 'show') return show(dataDir, area, id!, hold, out, err);
  const answer = await change(dataDir, hold, op === 'queue-retry-all' ? { op } : { op: op!, id: id! });
  if (answer.ok) out.write(`${answer.text}\n`);
  else err.write(`portcullis ${name} ${action}: ${answer.text}\n`);
  return answer.ok ? 0 : 1;
}

export function queueCommand(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  return command('spool', argv, out, err);
}

export function quarantineCommand(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  return command('quarantine', argv, out, err);
}
