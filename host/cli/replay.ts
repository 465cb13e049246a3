/**
 * `portcullis replay [--config FILE] [--rules DIR] [--records DIR] [--since 24h | --from T --to T]
 * [--store snapshot|empty] [--only-changed] [--json] [--show ID] [--save-fixtures DIR --sessions ID...]`:
 * runs recorded sessions (config `record`) through the rules as they are now (the config's,
 * plus --rules) and prints what would change: per rule, sessions, recipients and messages
 * now refused, tempfailed, tagged or accepted that were not before, with sample session
 * ids, then each changed session command by command. Nothing is delivered or stored.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { RecordedAcceptance, RecordedSession } from '../../sdk/index.js';
import { loadConfig } from '../config/config.js';
import { commandLine, diffSession, isHostField, outcomeOf, ReplaySummary, type RuleChanges, type SessionDiff } from '../record/diff.js';
import { readRecords, recordFiles, type TimeRange } from '../record/reader.js';
import { recordDir } from '../record/recorder.js';
import type { ReplayedSession } from '../record/replay.js';
import { ReplayRun, type ReplayStore } from '../record/run.js';
import { UsageError } from './usage.js';

type Out = { write(s: string): unknown };

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `24h`, `90m`, `7d` → milliseconds. */
function duration(s: string): number {
  const m = /^(\d+)([smhd])$/.exec(s);
  if (!m) throw new UsageError(`--since ${s}: not a duration (e.g. 30m, 24h, 7d)`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

function time(flag: string, s: string): number {
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new UsageError(`${flag} ${s}: not a date and time (e.g. 2026-12-01T06:00:00Z)`);
  return t;
}

function rangeOf(v: { since?: string; from?: string; to?: string }, all: boolean): TimeRange {
  if (v.since && (v.from || v.to)) throw new UsageError('--since or --from/--to, not both');
  const now = Date.now();
  if (v.since) return { from: now - duration(v.since), to: now + 1 };
  if (v.from || v.to) return { from: v.from ? time('--from', v.from) : 0, to: v.to ? time('--to', v.to) : now + 1 };
  // --show and --sessions look for sessions wherever they are; a replay takes the last day.
  return all ? { from: 0, to: now + 1 } : { from: now - UNITS.d!, to: now + 1 };
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;
const iso = (t: number) => new Date(t).toISOString();

function ruleLine(r: RuleChanges): string {
  const what = r.change === 'reworded' ? 'now answers differently' : `now ${r.change === 'tagged' ? 'tags' : r.change === 'accepted' ? 'lets through' : r.change === 'refused' ? 'refuses' : 'tempfails'}`;
  const counts = [plural(r.sessions, 'session'), ...(r.recipients ? [plural(r.recipients, 'recipient')] : []), ...(r.messages ? [plural(r.messages, 'message')] : [])];
  const who = r.rule === 'host' ? 'the host (no rule)' : `rule ${r.rule}`;
  return `  ${who} ${what}: ${counts.join(', ')} (e.g. ${r.samples.join(', ')})\n`;
}

const cell = (reply: string | null, rule: string | null) => `${reply ?? 'ok'}${rule ? ` (rule ${rule})` : ''}`;

function printDiff(out: Out, d: SessionDiff): void {
  out.write(`  ${d.id} ${d.client} at ${iso(d.start)}\n`);
  for (const c of d.changes) out.write(`    ${c.command}: ${cell(c.recorded.reply, c.recorded.rule)} → ${cell(c.replayed.reply, c.replayed.rule)}${c.replayed.failure ? ` [the rule failed: ${c.replayed.failure}]` : ''}${c.change === 'tagged' || c.change === 'reworded' ? ` [${c.replayed.outcome}]` : ''}\n`);
  if (d.notReached) out.write(`    (${plural(d.notReached, 'later command')} not reached)\n`);
}

/** One session, recorded and replayed, command by command. */
function show(out: Out, rec: RecordedSession, r: ReplayedSession, scoreHeader: string): void {
  const d = diffSession(rec, r, scoreHeader);
  const changed = new Set(d.changes.map((c) => c.step));
  out.write(`session ${rec.id}: ${d.client} port ${rec.client.localPort}, ${iso(d.start)}, recorded with rule set ${rec.ruleSet}\n`);
  const w = [36, 46];
  out.write(`${'command'.padEnd(w[0]!)}${'recorded'.padEnd(w[1]!)}replayed\n`);
  rec.steps.forEach((s, i) => {
    const rr = r.steps[i]!;
    const before = s.cmd === 'rset' ? 'ok' : s.cmd === 'message' ? messageCell(s.reply, s.rule, s.accepted, scoreHeader) : cell(s.reply, s.rule);
    const after = (!rr.reached ? '(not reached)' : s.cmd === 'message' ? messageCell(rr.reply, rr.rule, rr.accepted, scoreHeader) : cell(rr.reply, rr.rule)) + (rr.failure ? ` [the rule failed: ${rr.failure}]` : '');
    out.write(`${commandLine(s).padEnd(w[0]! - 1)} ${before.padEnd(w[1]! - 1)} ${after}${changed.has(i) ? '   <- changed' : ''}\n`);
  });
  if (r.missing.length) out.write(`facts the record lacks: ${r.missing.join(', ')} (answered as failed lookups)\n`);
}

function messageCell(reply: string | null, rule: string | null, a: RecordedAcceptance | null, scoreHeader: string): string {
  if (reply || !a) return cell(reply, rule);
  const outcome = outcomeOf(null, a, scoreHeader);
  const fields = a.headers.filter(([n]) => !isHostField(n)).map(([n]) => n);
  return `${outcome}${a.disposition !== 'deliver' ? ` (${a.disposition}, rule ${a.rule})` : ''}${fields.length ? ` +${fields.join(' +')}` : ''}`;
}

export async function replay(argv: string[], out: Out = process.stdout, err: Out & { isTTY?: boolean } = process.stderr): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      config: { type: 'string' }, rules: { type: 'string' }, records: { type: 'string' }, since: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' },
      store: { type: 'string', default: 'snapshot' }, 'only-changed': { type: 'boolean', default: false }, json: { type: 'boolean', default: false },
      show: { type: 'string' }, 'save-fixtures': { type: 'string' }, sessions: { type: 'string', multiple: true }, workers: { type: 'string' },
    },
  });
  if (values.store !== 'snapshot' && values.store !== 'empty') throw new UsageError(`--store ${values.store}: snapshot or empty`);
  // `--sessions A B C` (and `--sessions A,B`): the IDs after it.
  const sessions = values.sessions && [...values.sessions, ...positionals].flatMap((x) => x.split(',')).filter(Boolean);
  if (positionals.length && !values.sessions) throw new UsageError(`unexpected ${positionals[0]}: session ids go after --sessions`);
  if (values['save-fixtures'] && !sessions?.length) throw new UsageError('--save-fixtures DIR needs --sessions ID... (the sessions to pin)');
  const workers = values.workers === undefined ? undefined : Number(values.workers);
  if (workers !== undefined && !(Number.isInteger(workers) && workers >= 1 && workers <= 64)) throw new UsageError(`--workers ${values.workers}: 1 to 64`);
  const config = loadConfig(values.config, values.rules ? { rulesDir: values.rules } : {});
  const dir = values.records ?? recordDir(config);
  const wanted = values.show ? [values.show] : sessions;
  const range = rangeOf(values, wanted !== undefined);
  const warnings: string[] = [];
  const warn = (w: string) => {
    warnings.push(w);
    if (!values.json) err.write(`warning: ${w}\n`);
  };
  let files: string[];
  try {
    files = recordFiles(dir, range);
  } catch (e) {
    err.write(`portcullis replay: cannot read the record directory ${dir}: ${(e as Error).message} (is config record.enabled on?)\n`);
    return 1;
  }
  const records = readRecords(files, range, warn);

  if (wanted) {
    const want = new Set(wanted);
    const found = new Map<string, RecordedSession>();
    for await (const rec of records) if (want.has(rec.id)) found.set(rec.id, rec);
    const absent = wanted.filter((id) => !found.has(id));
    if (absent.length) err.write(`portcullis replay: no recorded session ${absent.join(', ')} in ${dir}\n`);
    if (values['save-fixtures']) {
      const to = values['save-fixtures'];
      mkdirSync(to, { recursive: true });
      for (const rec of found.values()) {
        writeFileSync(join(to, `${rec.id}.json`), `${JSON.stringify(rec, null, 2)}\n`);
        out.write(`saved ${join(to, `${rec.id}.json`)}\n`);
      }
      return absent.length ? 1 : 0;
    }
    const rec = found.get(values.show!);
    if (!rec) return 1;
    const run = await ReplayRun.open({ config, store: values.store as ReplayStore, workers: 1 });
    try {
      const r = await run.replay(rec);
      if (values.json) out.write(`${JSON.stringify({ recorded: rec, replayed: r, diff: diffSession(rec, r, config.scores.header) }, null, 2)}\n`);
      else show(out, rec, r, config.scores.header);
    } finally {
      await run.close();
    }
    return 0;
  }

  const run = await ReplayRun.open({ config, store: values.store as ReplayStore, workers });
  const summary = new ReplaySummary();
  const diffs: SessionDiff[] = [];
  const total = err.isTTY && !values.json ? countLines(files) : 0;
  const t0 = performance.now();
  let first = Infinity;
  let last = -Infinity;
  const progress = err.isTTY && !values.json ? setInterval(() => {
    const s = (performance.now() - t0) / 1000;
    const rate = summary.sessions / s;
    const eta = rate > 0 ? Math.max(0, (total - summary.sessions) / rate) : 0;
    err.write(`\rreplayed ${summary.sessions}/~${total} sessions, ${Math.round(rate)}/s, ETA ${Math.ceil(eta)} s   `);
  }, 250) : null;
  try {
    await run.all(records, (rec, r) => {
      const d = diffSession(rec, r, config.scores.header);
      summary.add(d);
      first = Math.min(first, d.start);
      last = Math.max(last, d.start);
      if (d.changes.length || !values['only-changed']) diffs.push(d);
    });
  } finally {
    if (progress) {
      clearInterval(progress);
      err.write('\r\x1b[K');
    }
    await run.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  const rate = Math.round(summary.sessions / seconds);
  diffs.sort((a, b) => a.start - b.start || a.id.localeCompare(b.id));
  if (values.json) {
    out.write(`${JSON.stringify({
      dir, from: iso(range.from), to: iso(Math.min(range.to, Date.now())), store: run.storeNote, rules: run.rules,
      sessions: summary.sessions, changed: summary.changed, seconds: Math.round(seconds * 1000) / 1000, rate,
      changes: summary.rules(), missing: Object.fromEntries(summary.missing), warnings, diffs,
    }, null, 2)}\n`);
    return 0;
  }
  const span = summary.sessions ? ` recorded ${iso(first)} – ${iso(last)}` : '';
  out.write(`replayed ${plural(summary.sessions, 'session')}${span} from ${dir} in ${seconds.toFixed(2)} s (${rate}/s)\n`);
  out.write(`rules: ${run.rules.join(', ') || 'none'}; store: ${run.storeNote}\n`);
  if (!summary.changed) out.write('no session would change\n');
  else {
    out.write(`${plural(summary.changed, 'session')} would change:\n`);
    for (const r of summary.rules()) out.write(ruleLine(r));
    out.write('changed sessions:\n');
    for (const d of diffs) if (d.changes.length) printDiff(out, d);
  }
  for (const [need, n] of summary.missing) out.write(`the record lacks ${need} for ${plural(n, 'session')}: answered as a failed lookup (record again with the rule in place to see it)\n`);
  return 0;
}

/** Lines in the files: the progress line's estimate of the sessions to come. */
function countLines(files: string[]): number {
  let n = 0;
  for (const f of files) {
    const b = readFileSync(f);
    for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) n++;
  }
  return n;
}
