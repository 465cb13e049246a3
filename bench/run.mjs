// npm run bench: throughput and peak RSS of Portcullis against a bare smtp-server, all
// driven by Postfix's smtp-source in ONE run (the content part by a client of our own),
// printed as ratios to the bare server; then how much a rule stuck at its deadline delays
// other sessions' replies.
//
//   node bench/run.mjs [--rounds N] [--messages N] [--baseline DIR] [--parts LIST]
//
// --parts picks what runs (comma-separated; default all): throughput (msgs/s, CPU, peak
// RSS per load), rules (each built-in rule alone against none), content (the content
// rules' per-message cost, on and off, over a multipart/alternative message with links
// and one with an attachment, sent by our own client: bench/content-cost.mjs), latency
// (per-command reply times at light load), idle (RSS with 10,000 idle connections),
// runaway (a rule stuck at its deadline), reload, replay (recorded sessions replayed per
// second: bench/replay.mjs).
//
// --baseline DIR also runs the Portcullis variants from another built checkout (an
// earlier commit in a git worktree), so a change is measured against what it replaces
// in the same run.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { commandLatencies, idleConnections, smtpClient } from './clients.mjs';
import { contentCost } from './content-cost.mjs';
import { ruleCost } from './rule-cost.mjs';
import { freePort, measureLoad, runSmtpSource, sampleRss, startProcess, startSmtpSink, SMTP_SOURCE } from './lib.mjs';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const { values } = parseArgs({ options: {
  rounds: { type: 'string', default: '3' },
  messages: { type: 'string', default: '5000' },
  only: { type: 'string' }, // run only the loads, or the variants (beside the bare server), named or whose name contains this; several separated by ';'
  parts: { type: 'string', default: 'throughput,rules,content,latency,idle,runaway,reload,replay' },
  idle: { type: 'string', default: '10000' }, // idle connections for the idle part
  'spool-on-shm': { type: 'boolean', default: false },
  baseline: { type: 'string' }, // another checkout (built) whose Portcullis variants run beside ours
} });
const ROUNDS = Number(values.rounds);
const PARTS = new Set(values.parts.split(','));
const N = Number(values.messages);

// Spools live on the project's disk (data/ is git-ignored), as in a real deployment; with
// --spool-on-shm they live in /dev/shm (RAM), which takes the disk out of the figures and
// leaves the CPU cost of the host itself.
const onShm = values['spool-on-shm'];
const base = onShm ? '/dev/shm' : join(ROOT, 'data');
mkdirSync(base, { recursive: true });
const work = mkdtempSync(join(base, 'portcullis-bench-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

/** A trivial rule with a handler on all 8 phases: measures the sandbox bridge, not rule logic. */
const TRIVIAL = `import { defineRule, next } from 'portcullis/sdk';
export default defineRule({ name: 'trivial', phases: {
  connect: () => next(), helo: () => next(), auth: () => next(), mail: () => next(),
  rcpt: () => next(), data: () => next(), message: () => next(), close: () => next(),
} });
`;
/** Spins until its deadline for recipients spin@…, says nothing otherwise. */
const RUNAWAY = `import { defineRule, next } from 'portcullis/sdk';
export default defineRule({ name: 'runaway', phases: { rcpt: (ev) => { if (ev.rcpt.address.startsWith('spin@')) for (;;) {} return next(); } } });
`;

/**
 * A fresh directory (rules, config, spool) per server start, so no run inherits a full
 * spool. `extra.rules` is merged into the rules section; `files` (name → text) are
 * written beside the config (option files, which the config names relative to itself).
 */
function portcullisConfig(name, ruleSource, extra = {}, builtin = false, limits = {}, files = {}) {
  const dir = mkdtempSync(join(work, `${name}-`));
  mkdirSync(join(dir, 'rules'), { recursive: true });
  if (ruleSource) writeFileSync(join(dir, 'rules', 'rule.ts'), ruleSource);
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  const file = join(dir, 'config.json');
  const { rules, ...rest } = extra;
  writeFileSync(file, JSON.stringify({
    listen: ['127.0.0.1:0'], dataDir: join(dir, 'data'), reverseDns: false,
    limits: { maxClients: 1000, ...limits },
    rules: { builtin, dirs: ruleSource ? [join(dir, 'rules')] : [], ...rules },
    // The front door only, like 'bare smtp-server + spool': the queue's delivery is not measured.
    delivery: { queue: { hold: true } },
    ...rest,
  }));
  return file;
}

const VARIANTS = {
  'bare smtp-server': () => startProcess(process.execPath, [join(ROOT, 'bench', 'bare-server.mjs'), '0'], { readyPattern: /LISTENING (\d+)/ }),
  'bare smtp-server + spool': () => {
    const dir = mkdtempSync(join(work, 'bare-spool-'));
    return startProcess(process.execPath, [join(ROOT, 'bench', 'bare-server.mjs'), '0', '--spool', dir], { readyPattern: /LISTENING (\d+)/ });
  },
  ...portcullisVariants(ROOT, ''),
  ...(values.baseline ? portcullisVariants(values.baseline, 'baseline: ') : {}),
};

/** Portcullis from the checkout at `root`: no rules, one trivial rule on all 8 phases, all built-in rules (the SmtpEvt set, defaults). */
function portcullisVariants(root, prefix) {
  const start = (config) => portcullis(root, config);
  return {
    [`${prefix}portcullis, no rules`]: () => start(portcullisConfig('none', null)),
    [`${prefix}portcullis, 8-phase rule`]: () => start(portcullisConfig('trivial', TRIVIAL)),
    [`${prefix}portcullis, all built-in rules`]: () => start(portcullisConfig('builtin', null, {}, true)),
    // What logging costs: the same without the info lines (the transaction line among them).
    // (It logs nothing when ready: it listens on a port chosen here, and is ready once that takes a connection.)
    ...(prefix ? {} : { 'portcullis, all built-in rules, log off': async () => {
      const port = await freePort();
      return portcullis(root, portcullisConfig('builtin-quiet', null, { listen: [`127.0.0.1:${port}`], log: { level: 'warn' } }, true), [], { readyPort: port });
    } }),
    // What counting the metrics costs: the same with admin.metrics false.
    ...(prefix ? {} : { 'portcullis, all built-in rules, metrics off': () => start(portcullisConfig('builtin-uncounted', null, { admin: { listen: null, metrics: false } }, true)) }),
    // One process per core (issue 17): the same with a primary and 2 worker processes sharing the socket.
    ...(prefix ? {} : { 'portcullis, all built-in rules, 2 processes': () => portcullis(root, portcullisConfig('builtin-cluster', null, {}, true), ['--processes', '2'], { readyPattern: /listening on 127\.0\.0\.1:(\d+) with 2 processes/ }) }),
    // The same with one sandbox worker per process: as many rule threads as with 1 process.
    ...(prefix ? {} : { 'portcullis, all built-in rules, 2 processes × 1 sandbox worker': () => portcullis(root, portcullisConfig('builtin-cluster-1w', null, { sandbox: { workers: 1 } }, true), ['--processes', '2'], { readyPattern: /listening on 127\.0\.0\.1:(\d+) with 2 processes/ }) }),
    // The shared store (issue 17): the same on Redis (a redis-server started for the run, a key prefix per start), with 1 and 2 processes.
    ...(prefix ? {} : { 'portcullis, all built-in rules, Redis store': async () => start(portcullisConfig('builtin-redis', null, await redisStore(), true)) }),
    ...(prefix ? {} : { 'portcullis, all built-in rules, 2 processes, Redis store': async () => portcullis(root, portcullisConfig('builtin-cluster-redis', null, await redisStore(), true), ['--processes', '2'], { readyPattern: /listening on 127\.0\.0\.1:(\d+) with 2 processes/ }) }),
    // What recording every session costs (config record, bodies none): portcullis replay's input.
    ...(prefix ? {} : { 'portcullis, all built-in rules, recording': () => start(portcullisConfig('builtin-recording', null, { record: { enabled: true } }, true)) }),
    // Relay mode: each message goes to Postfix's smtp-sink during DATA, the client hears its answer.
    ...(prefix ? {} : { [`portcullis, all built-in rules, relay`]: () => relaying(root) }),
  };
}

/** The Redis variants' store config: one redis-server for the run (the tests' fixture), a fresh key prefix each start. */
let redisServer = null;
let redisStarts = 0;
async function redisStore() {
  redisServer ??= await (await import(join(ROOT, 'dist', 'test', 'redis-server.js'))).startRedis();
  return { store: { backend: 'redis', redis: { url: redisServer.url, keyPrefix: `bench${++redisStarts}:` } } };
}

function portcullis(root, config, args = [], ready = { readyPattern: /listening on 127\.0\.0\.1:(\d+)/ }) {
  return startProcess(process.execPath, [join(root, 'bin', 'portcullis.js'), 'start', '--config', config, ...args], ready);
}

async function relaying(root) {
  const sink = await startSmtpSink(await freePort());
  try {
    const srv = await portcullis(root, portcullisConfig('relay', null, {}, true), ['--relay', `127.0.0.1:${sink.port}`]);
    return { ...srv, stop: async () => { await srv.stop(); await sink.stop(); } };
  } catch (e) {
    await sink.stop();
    throw e;
  }
}

const SCENARIOS = [
  { name: 'many/conn 1 KB 1 rcpt', perConnection: true, sizeBytes: 1024, recipients: 1, messages: N },
  { name: 'one/conn 1 KB 1 rcpt', perConnection: false, sizeBytes: 1024, recipients: 1, messages: N },
  { name: 'many/conn 100 KB 1 rcpt', perConnection: true, sizeBytes: 100 * 1024, recipients: 1, messages: Math.ceil(N / 5) },
  { name: 'many/conn 1 KB 10 rcpt', perConnection: true, sizeBytes: 1024, recipients: 10, messages: N },
];

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function throughput() {
  console.log(`smtp-source: ${SMTP_SOURCE}, 20 sessions; ${ROUNDS} rounds, variants interleaved, median per cell; spools in ${base}\n`);
  const rows = [];
  // --only A;B;…: a name equal to an item, or (an item equal to no name) containing it; scenarios and variants alike.
  const items = values.only?.split(';').map((x) => x.trim()).filter(Boolean) ?? [];
  const matches = (names, n) => items.some((i) => (names.includes(i) ? n === i : n.includes(i)));
  const pick = (names) => (names.some((n) => matches(names, n)) ? names.filter((n) => matches(names, n)) : names);
  const scenarios = pick(SCENARIOS.map((sc) => sc.name));
  const chosen = new Set(['bare smtp-server', ...pick(Object.keys(VARIANTS))]);
  for (const sc of SCENARIOS.filter((s) => scenarios.includes(s.name))) {
    const variants = Object.entries(VARIANTS).filter(([v]) => chosen.has(v));
    const runs = Object.fromEntries(variants.map(([v]) => [v, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [v, start] of variants) {
        process.stderr.write(`${sc.name}, round ${round + 1}: ${v}\n`); // which one failed, when one does
        runs[v].push(await measureLoad(start, sc));
      }
    }
    const rateOf = (v) => (runs[v] ? median(runs[v].map((r) => r.rate)) : NaN);
    const bare = rateOf('bare smtp-server');
    for (const [v, rs] of Object.entries(runs)) {
      const rate = rateOf(v);
      rows.push({ scenario: sc.name, variant: v, 'msgs/s': Math.round(rate), 'ratio to bare': (rate / bare).toFixed(2),
        'server CPU (cores)': median(rs.map((r) => r.cores)).toFixed(2), 'peak RSS MB': Math.round(Math.max(...rs.map((r) => r.rss))) });
    }
    // The yardstick: what the built-in rule set costs against the same host without rules.
    const cost = 1 - rateOf('portcullis, all built-in rules') / rateOf('portcullis, no rules');
    if (Number.isFinite(cost)) rows.push({ scenario: sc.name, variant: '→ built-in rules cost (1 − built-ins / no rules)', 'ratio to bare': `${Math.round(cost * 100)} %` });
    const logCost = 1 - rateOf('portcullis, all built-in rules') / rateOf('portcullis, all built-in rules, log off');
    const metricsCost = 1 - rateOf('portcullis, all built-in rules') / rateOf('portcullis, all built-in rules, metrics off');
    if (Number.isFinite(metricsCost)) rows.push({ scenario: sc.name, variant: '→ metrics cost (1 − built-ins / built-ins metrics off)', 'ratio to bare': `${Math.round(metricsCost * 100)} %` });
    const clusterGain = rateOf('portcullis, all built-in rules, 2 processes') / rateOf('portcullis, all built-in rules') - 1;
    if (Number.isFinite(clusterGain)) rows.push({ scenario: sc.name, variant: '→ 2 processes gain (built-ins with 2 / with 1 − 1)', 'ratio to bare': `${Math.round(clusterGain * 100)} %` });
    const redisCost = 1 - rateOf('portcullis, all built-in rules, Redis store') / rateOf('portcullis, all built-in rules');
    if (Number.isFinite(redisCost)) rows.push({ scenario: sc.name, variant: '→ Redis store cost (1 − built-ins on Redis / on SQLite)', 'ratio to bare': `${Math.round(redisCost * 100)} %` });
    const recordCost = 1 - rateOf('portcullis, all built-in rules, recording') / rateOf('portcullis, all built-in rules');
    if (Number.isFinite(recordCost)) rows.push({ scenario: sc.name, variant: '→ recording cost (1 − built-ins recording / built-ins)', 'ratio to bare': `${Math.round(recordCost * 100)} %` });
    if (Number.isFinite(logCost)) rows.push({ scenario: sc.name, variant: '→ info logging cost (1 − built-ins / built-ins log off)', 'ratio to bare': `${Math.round(logCost * 100)} %` });
  }
  console.table(rows);
}

const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)];

/** Per-command reply times at light load: one client, 300 sequential sessions, each from its own address. */
async function latency() {
  const SESSIONS = 300;
  const variants = ['bare smtp-server', 'portcullis, no rules', 'portcullis, all built-in rules'];
  const results = {};
  for (const v of variants) {
    const srv = await VARIANTS[v]();
    try {
      await commandLatencies(srv.port, 50); // warm-up
      results[v] = await commandLatencies(srv.port, SESSIONS);
    } finally {
      await srv.stop();
    }
  }
  const rows = [];
  for (const cmd of Object.keys(results[variants[0]])) {
    const row = { command: cmd };
    for (const v of variants) row[v.replace('portcullis, ', '')] = `${pct(results[v][cmd], 0.5).toFixed(2)} / ${pct(results[v][cmd], 0.99).toFixed(2)}`;
    const [none, all] = [results[variants[1]][cmd], results[variants[2]][cmd]];
    row['built-ins add (p50 / p99)'] = `${(pct(all, 0.5) - pct(none, 0.5)).toFixed(2)} / ${(pct(all, 0.99) - pct(none, 0.99)).toFixed(2)}`;
    rows.push(row);
  }
  console.log(`\nReply time per command at light load (one client, ${SESSIONS} sequential sessions from distinct 127.0.x.y, 1 KB message), ms p50 / p99:`);
  console.table(rows);
}

/** Peak RSS of the host with all built-in rules holding many idle connections. */
async function idleMemory() {
  const n = Number(values.idle);
  const srv = await portcullis(ROOT, portcullisConfig('idle', null, {}, true, { maxClients: n + 100 }));
  try {
    await runSmtpSource({ port: srv.port, messages: 500, perConnection: true, sizeBytes: 1024 }); // warm, as in use
    const rss = sampleRss(srv.child.pid);
    const conns = await idleConnections(srv.port, n);
    const peak = rss.stop();
    conns.close();
    console.log(`\nIdle connections: all built-in rules holding ${n} greeted, idle sessions (each from its own 127.1.x.y): peak RSS ${Math.round(peak)} MB`);
  } finally {
    await srv.stop();
  }
}

/** Reply latency of one client doing MAIL/RCPT/RSET in a loop, in ms. */
async function latencies(port, count, rcpt = 'ok@localhost', localAddress = '127.0.0.1') {
  const c = smtpClient(port, localAddress);
  await c.reply();
  await c.timed('EHLO bench.example');
  const out = [];
  for (let i = 0; i < count; i++) {
    await c.timed('MAIL FROM:<a@example.org>');
    out.push((await c.timed(`RCPT TO:<${rcpt}>`)).ms);
    await c.timed('RSET');
  }
  c.sock.end();
  return out;
}

async function runawayBlastRadius() {
  const srv = await portcullis(ROOT, portcullisConfig('runaway', RUNAWAY));
  try {
    await latencies(srv.port, 300);
    const quiet = (await Promise.all([latencies(srv.port, 1000), latencies(srv.port, 1000)])).flat();
    const row = (name, xs) => ({ case: name, p50: pct(xs, 0.5).toFixed(2), p99: pct(xs, 0.99).toFixed(2), max: Math.max(...xs).toFixed(2) });
    const rows = [row('no runaway', quiet)];
    // k clients keep a rule spinning to its 50 ms deadline while two others are measured.
    for (const k of [1, 2, 4]) {
      // The attackers come from other loopback addresses than the measured clients.
      const spinning = Promise.all(Array.from({ length: k }, (_, i) => latencies(srv.port, 40, 'spin@localhost', `127.0.0.${2 + i}`)));
      const busy = (await Promise.all([latencies(srv.port, 1000), latencies(srv.port, 1000)])).flat();
      const spin = (await spinning).flat();
      rows.push(row(`${k} client(s) hitting the runaway rule`, busy), row(`  (their runaway calls)`, spin));
    }
    console.log('\nRunaway rule (50 ms deadline), RCPT reply latency of other sessions (2 clients, 2000 RCPTs), ms:');
    console.table(rows);
  } finally {
    await srv.stop();
  }
}

/** Save → first new session that sees the change, over 50 saves of a watched rule file. */
async function reloadLatency() {
  const variant = (k) => `import { defineRule, next, reject } from 'portcullis/sdk';
export default defineRule({ name: 'edit', phases: { rcpt: (ev) => ev.rcpt.address.startsWith('x@') ? reject(550, 'v${k}') : next() } });
`;
  const config = portcullisConfig('reload', variant('start'));
  const ruleFile = join(dirname(config), 'rules', 'rule.ts');
  const srv = await portcullis(ROOT, config);
  try {
    /** A new session up to RCPT x@localhost: that reply's line. */
    const probe = async () => {
      const c = smtpClient(srv.port);
      try {
        await c.reply();
        await c.timed('EHLO probe.example');
        await c.timed('MAIL FROM:<a@example.org>');
        return (await c.timed('RCPT TO:<x@localhost>')).text.trimEnd();
      } finally {
        c.sock.end('QUIT\r\n');
      }
    };
    const ms = [];
    for (let k = 0; k < 50; k++) {
      writeFileSync(ruleFile, variant(k));
      const t0 = performance.now();
      while (!(await probe()).includes(`v${k}`)) {
        if (performance.now() - t0 > 10_000) throw new Error(`save ${k} not seen within 10 s`);
      }
      ms.push(performance.now() - t0);
    }
    ms.sort((a, b) => a - b);
    console.log(`\nReload latency (save of a watched rule → first new session that sees it), 50 saves: median ${ms[25].toFixed(0)} ms, max ${ms[49].toFixed(0)} ms (includes a 50 ms debounce)`);
  } finally {
    await srv.stop();
  }
}

if (PARTS.has('throughput')) await throughput();
if (PARTS.has('rules')) {
  const rows = await ruleCost(ROOT, (settings) => portcullis(ROOT, portcullisConfig('rule', null, { rules: { builtin: true, dirs: [], settings } }, true)), { messages: Math.ceil(N / 2), rounds: ROUNDS });
  console.log('\nEach built-in rule alone (many/conn, 1 KB, 1 rcpt; greylist and require-size left out: this load never retries and declares no SIZE):');
  console.table(rows);
}
if (PARTS.has('content')) {
  const { rows, notes } = await contentCost(ROOT, ({ settings, source, files }) => portcullis(ROOT, portcullisConfig('content', source, { rules: { settings } }, true, {}, files)), { messages: Math.ceil(N / 2), rounds: ROUNDS });
  console.log('\nContent rules, each alone against no rules (our client: 20 sessions, many messages per connection, 1 rcpt; server CPU per message from /proc):');
  console.table(rows);
  for (const n of notes) console.log(`  ${n}`);
}
if (PARTS.has('latency')) await latency();
if (PARTS.has('idle')) await idleMemory();
if (PARTS.has('runaway')) await runawayBlastRadius();
if (PARTS.has('reload')) await reloadLatency();
if (PARTS.has('replay')) {
  console.log('');
  await (await import('./replay.mjs')).replayBench();
}
// The Redis variants' server (a child process with open pipes) would keep the run alive.
await redisServer?.close();
