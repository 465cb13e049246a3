// What sharing the store through Redis costs (issue 17): two hosts' stores on one real
// redis-server on 127.0.0.1 (test/redis-server.ts), through the factory the host uses.
//  - propagation: a blacklist entry made on A, until B's in-memory front has it (A's
//    write-behind tick, 50 ms at most, + the write + the announcement);
//  - throughput: watchlist hits written through A's write-behind (one Lua step each),
//    until Redis has them all and until B counts them all.
// Nothing here is asserted; the tests check behaviour (test/redis.test.ts).
//
//   npx tsc -p . && node bench/redis-store.mjs [--samples N] [--hits N]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const { startRedis } = await import(join(ROOT, 'dist', 'test', 'redis-server.js'));
const { openStore } = await import(join(ROOT, 'dist', 'host', 'store', 'open.js'));
const { configFrom } = await import(join(ROOT, 'dist', 'host', 'config', 'config.js'));
const { Metrics } = await import(join(ROOT, 'dist', 'host', 'metrics.js'));
const { pino } = await import('pino');
const { values } = parseArgs({ options: { samples: { type: 'string', default: '200' }, hits: { type: 'string', default: '100000' } } });

const redis = await startRedis();
const work = mkdtempSync(join(tmpdir(), 'bench-redis-'));
const config = configFrom({ store: { backend: 'redis', redis: { url: redis.url, keyPrefix: 'bench:' } } }, 'bench');
const open = () => openStore(config, work, { log: pino({ level: 'silent' }), metrics: new Metrics() });
const [a, b] = [await open(), await open()];
let total = 0;
const waitFor = async (check) => {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within 10 s (total ${total})`);
    await new Promise((r) => setImmediate(r));
  }
};
const pct = (xs, p) => xs.slice().sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

const lat = [];
for (let i = 0; i < Number(values.samples); i++) {
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  const t0 = performance.now();
  a.blacklistAdd(ip, 3600, 'bench', 'admin');
  await waitFor(() => b.blacklistGet(ip) !== undefined);
  lat.push(performance.now() - t0);
}
console.log(`propagation A → B, ${lat.length} entries one after another: p50 ${pct(lat, 50).toFixed(1)} ms, p95 ${pct(lat, 95).toFixed(1)} ms, max ${Math.max(...lat).toFixed(1)} ms`);

const N = Number(values.hits);
const t0 = performance.now();
const now = Date.now();
for (let i = 0; i < N; i++) a.watchHit(`bench:${i % 1000}`, 600, now);
await a.flush();
const written = performance.now() - t0;
await waitFor(() => {
  total = 0;
  for (let k = 0; k < 1000; k++) total += b.watchCount(`bench:${k}`, 600, now);
  return total === N;
});
const seen = performance.now() - t0;
console.log(`${N} watchlist hits on 1000 keys: in Redis after ${written.toFixed(0)} ms (${Math.round(N / (written / 1000))} hits/s), all counted on B after ${seen.toFixed(0)} ms`);

await Promise.all([a.close(), b.close()]);
await redis.close();
rmSync(work, { recursive: true, force: true });
