/**
 * `portcullis conn`, `portcullis kill ID` and `portcullis stats --window|--hourly|--routes`:
 * smtpf's CONN, KILL and STAT, asked of the running host through its admin API (the
 * config's `admin.listen`, with `admin.token` when set). Live sessions and traffic
 * windows exist only in the running host: with no host, these say so and exit 1.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, parseListen, type Config } from '../config/config.js';
import { hostPort } from '../net.js';
import type { LiveSession } from '../smtp/server.js';
import type { RouteDay, Slot } from '../smtp/traffic.js';
import { readStatus } from './status.js';
import { UsageError } from './usage.js';

type Out = { write(s: string): unknown };

/** Why a request could not be answered, in words for the admin. */
export class NoHost extends Error {}

/**
 * Where the running host's admin listener is: as it wrote it in status.json (the real port
 * when the config said 0), else as the config says.
 */
function adminAddress(c: Config): string {
  const recorded = readStatus(resolve(c.dataDir))?.admin;
  if (recorded) return recorded;
  if (c.admin.listen === null) throw new NoHost('the config has no admin listener (admin.listen is null)');
  const { host, port } = parseListen(c.admin.listen);
  return hostPort({ host: host === '0.0.0.0' ? '127.0.0.1' : host, port });
}

/** Asks the running host's admin API; NoHost when no host answers (or it refused the request). */
export async function ask<T>(c: Config, method: string, path: string): Promise<T> {
  const where = adminAddress(c);
  const headers: Record<string, string> = { ...(c.admin.token ? { Authorization: `Bearer ${c.admin.token}` } : {}), ...(method === 'GET' ? {} : { 'X-Portcullis-Admin': '1' }) };
  const res = await fetch(`http://${where}${path}`, { method, headers, signal: AbortSignal.timeout(10_000) }).catch((e: Error) => {
    throw new NoHost(`no host answers at http://${where} (${(e.cause as Error | undefined)?.message ?? e.message}): is it running with this config?`);
  });
  const body = (await res.json().catch(() => null)) as (T & { error?: string }) | null;
  if (!res.ok) throw new NoHost(`the host answered ${res.status}: ${body?.error ?? res.statusText}`);
  return body as T;
}

function configOf(argv: string[], extra: Record<string, { type: 'boolean' }> = {}) {
  const { values, positionals } = parseArgs({ args: argv, options: { config: { type: 'string' }, ...extra }, allowPositionals: true, strict: true });
  return { config: loadConfig(values.config), values: values as Record<string, unknown>, positionals };
}

async function run(cmd: string, err: Out, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (e) {
    if (!(e instanceof NoHost)) throw e;
    err.write(`portcullis ${cmd}: ${e.message}\n`);
    return 1;
  }
}

/** `portcullis conn`: one line per live session, oldest first. */
export function conn(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  const { config } = configOf(argv);
  return run('conn', err, async () => {
    const sessions = await ask<LiveSession[]>(config, 'GET', '/api/sessions');
    for (const s of sessions) {
      out.write(`${s.id} ${s.ptr ?? 'unknown'}[${s.ip}] helo=${s.helo ?? '-'}${s.user ? ` user=${s.user}` : ''} since ${s.since}${s.mailFrom !== null ? ` from=<${s.mailFrom}> rcpts=${s.rcpts}` : ''} transactions=${s.transactions}${s.worker ? ` worker=${s.worker.slot} pid=${s.worker.pid}` : ''}\n`);
    }
    if (!sessions.length) out.write('no live sessions\n');
    return 0;
  });
}

/** `portcullis kill ID`: ends that session with 421. */
export function kill(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  const { config, positionals } = configOf(argv);
  if (positionals.length !== 1) throw new UsageError('give one session id (portcullis conn lists them)');
  const id = positionals[0]!;
  return run('kill', err, async () => {
    await ask(config, 'POST', `/api/sessions/kill?id=${encodeURIComponent(id)}`);
    out.write(`ended session ${id}\n`);
    return 0;
  });
}

const slotLine = (s: Slot) => `${s.start} conn ${s.connections} accepted ${s.accepted} refused ${s.refused} abandoned ${s.abandoned} rcpt ${s.rcptAccepted}/${s.rcptAccepted + s.rcptRefused} KB ${Math.ceil(s.bytes / 1024)}\n`;

/** `portcullis stats --window|--hourly|--routes`: the running host's traffic (without a flag: see status.ts). */
export function traffic(argv: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  const { config, values } = configOf(argv, { window: { type: 'boolean' }, hourly: { type: 'boolean' }, routes: { type: 'boolean' } });
  return run('stats', err, async () => {
    if (values.routes) {
      for (const r of await ask<RouteDay[]>(config, 'GET', '/api/routes')) out.write(`${r.day} ${r.domain} accepted ${r.accepted} refused ${r.refused} KB ${r.kb}\n`);
      return 0;
    }
    const s = await ask<{ window: Slot[]; hourly: Slot[] }>(config, 'GET', '/api/stats');
    for (const slot of values.hourly ? s.hourly : s.window) out.write(slotLine(slot));
    return 0;
  });
}
