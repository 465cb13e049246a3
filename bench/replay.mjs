// The replay rate (issue 18: ≥ 5,000 recorded sessions/s with the built-in rules on the
// 2-core VM): synthetic recorded sessions written to a record file as the host writes
// them, then read back and replayed through all built-in rules the way `portcullis
// replay` does (reader → ReplayRun over the sandbox pool → diff), with 1 and 2 workers.
//
//   node bench/replay.mjs [--sessions N] [--workers 1,2] [--concurrency N] [--rules builtin|none]
//
// Each session: connect, EHLO, MAIL, one RCPT (one in ten is refused by a rule now:
// the diff has work to do), DATA, a 1 KB message's header, close, with its DNS facts
// (client on the DNS lists: clear; sender domain: MX found, not on the RHSBL), as a host
// with DNS on records them.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const dist = (p) => import(join(ROOT, 'dist', p));

export async function replayBench(o = {}) {
  const { configFrom } = await dist('host/config/config.js');
  const { ReplayRun } = await dist('host/record/run.js');
  const { readRecords, recordFiles } = await dist('host/record/reader.js');
  const { diffSession, ReplaySummary } = await dist('host/record/diff.js');
  const n = o.sessions ?? 20000;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-replay-'));
  try {
    // The host's DNS config only says DNS was on when recorded: a replay asks no server.
    const config = configFrom({ dataDir: join(dir, 'data'), dns: { servers: ['127.0.0.1:53'] }, rules: { builtin: o.rules !== 'none' } }, '(bench)');
    const probe = await ReplayRun.open({ config, store: 'empty', workers: 1 });
    const needs = probe.ruleSet.dnsAll;
    await probe.close();
    const start = Date.UTC(2026, 11, 1, 0, 0, 0);
    const lines = [];
    for (let i = 0; i < n; i++) lines.push(JSON.stringify(session(i, start + i * 4, needs)));
    writeFileSync(join(dir, 'sessions-2026-12-01.jsonl'), lines.join('\n') + '\n');
    const range = { from: start, to: start + 86_400_000 };
    console.log(`replay: ${n} recorded sessions, ${o.rules === 'none' ? 'no rules (the replay machinery alone)' : `all built-in rules (${needs.length} DNS needs, facts from the record)`}`);
    for (const workers of o.workers ?? [1, 2]) {
      const run = await ReplayRun.open({ config, store: 'empty', workers, concurrency: o.concurrency });
      try {
        // A warm-up pass (QuickJS contexts, JIT), then the measured one.
        await run.all(readRecords(recordFiles(dir, range), range, () => undefined), () => undefined);
        const summary = new ReplaySummary();
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        await run.all(readRecords(recordFiles(dir, range), range, () => undefined), (rec, r) => summary.add(diffSession(rec, r, config.scores.header)));
        const s = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        console.log(`  ${workers} worker(s), ${run.concurrency} in flight: ${Math.round(n / s)} sessions/s (${s.toFixed(2)} s; process CPU ${((cpu.user + cpu.system) / 1e6 / s).toFixed(2)} cores; ${summary.changed} changed)`);
        // A change here is no edit's doing (the rules are those recorded): say what it was.
        for (const r of summary.rules()) console.log(`    changed: rule ${r.rule} now ${r.change}: ${r.sessions} session(s), e.g. ${r.samples.join(', ')}`);
      } finally {
        await run.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function session(i, t, needs) {
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  const domain = `sender${i % 50}.example`;
  const rcpt = i % 10 === 0 ? 'nobody@localhost' : 'postmaster@localhost';
  const facts = { clientSessions: 1, [`mailbox:${rcpt}`]: 'unknown' };
  for (const need of needs) {
    if (need.kind === 'dnsbl') facts[`dnsbl:${need.zone}:${ip}`] = { status: 'clear', codes: [], text: null };
    if (need.kind === 'rhsbl') facts[`rhsbl:${need.zone}:${domain}`] = { status: 'clear', codes: [], text: null };
    if (need.kind === 'mx') facts[`mx:${domain}`] = { status: 'found', hosts: [`mx.${domain}`] };
  }
  const head = `Received: from mx.${domain}\r\nFrom: <a@${domain}>\r\nTo: <${rcpt}>\r\nSubject: hello ${i}\r\nDate: Tue, 01 Dec 2026 00:00:00 +0000\r\nMessage-ID: <${i}@${domain}>\r\n${'X-Filler: ' + 'x'.repeat(60) + '\r\n'}\r\n`;
  return {
    v: 1, id: `bench${i.toString(36).padStart(8, '0')}`, ruleSet: 1,
    client: { ip, port: 40000 + (i % 20000), ptr: `mx.${domain}`, localIp: '127.0.0.1', localPort: 25 },
    blacklist: null, wellBehaved: false, dns: true,
    steps: [
      { cmd: 'connect', t, reply: null, rule: null },
      { cmd: 'helo', t: t + 1, verb: 'EHLO', name: `mx.${domain}`, reply: null, rule: null },
      { cmd: 'mail', t: t + 2, address: `a@${domain}`, args: {}, reply: null, rule: null },
      { cmd: 'rcpt', t: t + 3, address: rcpt, args: {}, reply: null, rule: null },
      { cmd: 'data', t: t + 4, reply: null, rule: null },
      { cmd: 'message', t: t + 5, head, body: null, size: 1024, reply: null, rule: null, accepted: { disposition: 'deliver', rule: null, headers: [] }, wire: '250 2.0.0 Ok: queued' },
      { cmd: 'close', t: t + 6, reply: null, rule: null },
    ],
    facts,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { sessions: { type: 'string', default: '20000' }, workers: { type: 'string', default: '1,2' }, concurrency: { type: 'string' }, rules: { type: 'string', default: 'builtin' } } });
  await replayBench({ sessions: Number(values.sessions), workers: values.workers.split(',').map(Number), concurrency: values.concurrency ? Number(values.concurrency) : undefined, rules: values.rules });
}
