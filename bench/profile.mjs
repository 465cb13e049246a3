// Where the host's CPU goes under load: runs Portcullis under `node --cpu-prof` (every
// thread writes its own profile), drives one smtp-source load, stops it, and prints the
// self time of each thread by area (smtp-server, our smtp layer, sandbox bridge, spool,
// logging, GC, …), as a share of that thread's samples and in µs per message.
//
//   node bench/profile.mjs [--rules none|builtin] [--shape one|many|big|rcpts] [--messages N] [--relay]
//
// The areas are matched on each frame's script URL; what no area claims is "other JS"
// (V8 builtins, Node's native bindings such as postMessage or a socket write). Idle time
// is left out. PROFILE_OTHERS=1 lists the top functions of "other JS". The profiler's
// ticks are wall time on the thread: a thread the kernel preempted inside a call (e.g.
// right after postMessage woke a worker on a 2-core machine) is charged for the wait.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, runSmtpSource, startProcess, startSmtpSink } from './lib.mjs';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const { values } = parseArgs({ options: {
  rules: { type: 'string', default: 'builtin' },
  shape: { type: 'string', default: 'one' },
  messages: { type: 'string', default: '3000' },
  relay: { type: 'boolean', default: false },
} });
const SHAPES = {
  one: { perConnection: false, sizeBytes: 1024, recipients: 1 },
  many: { perConnection: true, sizeBytes: 1024, recipients: 1 },
  big: { perConnection: true, sizeBytes: 100 * 1024, recipients: 1 },
  rcpts: { perConnection: true, sizeBytes: 1024, recipients: 10 },
};
const shape = SHAPES[values.shape];
if (!shape) throw new Error(`--shape: one of ${Object.keys(SHAPES).join(', ')}`);
const N = Number(values.messages);

/** Areas, first match wins: [name, test on the frame's url or function name]. */
const AREAS = [
  ['GC', (url, fn) => fn === '(garbage collector)'],
  ['native (syscalls, libuv, V8 C++)', (url, fn) => fn === '(program)'],
  ['smtp-server', (url) => url.includes('/smtp-server/')],
  ['nodemailer (relay)', (url) => url.includes('/nodemailer/')],
  ['prom-client (metrics)', (url) => url.includes('/prom-client/') || url.includes('/dist/host/metrics.js')],
  ['pino / sonic-boom', (url) => /\/(pino|sonic-boom|thread-stream|pino-std-serializers|fast-redact)\//.test(url)],
  ['mailsplit', (url) => url.includes('/mailsplit/')],
  ['quickjs (wasm + bridge)', (url) => url.includes('quickjs') || url.startsWith('wasm://')],
  ['host/sandbox', (url) => url.includes('/dist/host/sandbox/')],
  ['host/pipeline', (url) => url.includes('/dist/host/pipeline/')],
  ['host/smtp', (url) => url.includes('/dist/host/smtp/')],
  ['host/spool + delivery', (url) => /\/dist\/host\/(spool|delivery)\//.test(url)],
  ['host/store + dns', (url) => /\/dist\/host\/(store|dns)\//.test(url)],
  ['host (other)', (url) => url.includes('/dist/host/')],
  ['node: net/stream/events', (url) => /node:(net|stream|internal\/streams|events|internal\/stream_base|_stream)/.test(url)],
  ['node: fs', (url) => /node:(fs|internal\/fs)/.test(url)],
  ['node: worker messaging', (url) => /node:internal\/(worker|per_context\/messageport)/.test(url)],
  ['node: crypto/zlib/buffer', (url) => /node:(crypto|internal\/crypto|zlib|buffer|internal\/buffer)/.test(url)],
];

/** Self µs per area in one .cpuprofile (idle excluded). */
function selfTimeByArea(file) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const nodes = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map();
  for (let i = 0; i < p.samples.length; i++) selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  const byArea = new Map();
  const others = new Map();
  let total = 0;
  for (const [id, us] of selfUs) {
    const { url, functionName } = nodes.get(id).callFrame;
    if (functionName === '(idle)') continue;
    const area = AREAS.find(([, test]) => test(url, functionName))?.[0] ?? 'other JS';
    byArea.set(area, (byArea.get(area) ?? 0) + us);
    if (area === 'other JS') {
      const k = `${functionName || '(anonymous)'} ${url.replace(/^.*\/node_modules\//, '')}`;
      others.set(k, (others.get(k) ?? 0) + us);
    }
    total += us;
  }
  return { byArea, total, others };
}

const work = mkdtempSync(join(ROOT, 'data', 'portcullis-profile-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const profDir = join(work, 'prof');
mkdirSync(profDir);
const config = join(work, 'config.json');
writeFileSync(config, JSON.stringify({
  listen: ['127.0.0.1:0'], dataDir: join(work, 'data'), reverseDns: false, limits: { maxClients: 1000 },
  rules: { builtin: values.rules === 'builtin', dirs: [] }, delivery: { queue: { hold: true } },
}));
const sink = values.relay ? await startSmtpSink(await freePort()) : null;
const srv = await startProcess(process.execPath, ['--cpu-prof', '--cpu-prof-dir', profDir, join(ROOT, 'bin', 'portcullis.js'), 'start', '--config', config,
  ...(sink ? ['--relay', `127.0.0.1:${sink.port}`] : [])], { readyPattern: /listening on 127\.0\.0\.1:(\d+)/ });
await runSmtpSource({ port: srv.port, messages: 500, perConnection: true, sizeBytes: 1024 }); // warm-up, profiled too (small next to N)
const r = await runSmtpSource({ port: srv.port, messages: N, ...shape });
await srv.stop();
await sink?.stop();

const total = N + 500;
console.log(`rules: ${values.rules}, shape: ${values.shape}${values.relay ? ', relay' : ''}; ${N} messages at ${Math.round(r.msgsPerSec)} msg/s (+500 warm-up, profiled too)\n`);
const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')).sort();
const threads = files.map((f) => ({ f, ...selfTimeByArea(join(profDir, f)) })).sort((a, b) => b.total - a.total);
threads.forEach((t, i) => {
  const name = i === 0 ? 'busiest thread (the main thread)' : `thread ${i + 1}`;
  console.log(`${name}: ${(t.total / total).toFixed(0)} µs CPU per message`);
  const rows = [...t.byArea].sort((a, b) => b[1] - a[1]).slice(0, 12)
    .map(([area, us]) => ({ area, share: `${((us / t.total) * 100).toFixed(1)} %`, 'µs/msg': Math.round(us / total) }));
  console.table(rows);
  if (process.env.PROFILE_OTHERS) console.table([...t.others].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([fn, us]) => ({ fn, 'µs/msg': Math.round(us / total) })));
});
