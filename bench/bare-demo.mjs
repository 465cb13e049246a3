// Baseline: bare smtp-server (no 100 ms greeting delay) under smtp-source.
// Usage: node bench/bare-demo.mjs
import { fileURLToPath } from 'node:url';
import { runSmtpSource, sampleRss, startProcess } from './lib.mjs';

const serverPath = fileURLToPath(new URL('./bare-server.mjs', import.meta.url));
const scenarios = [
  { name: 'many/conn  1KB  1 rcpt', perConnection: true, sizeBytes: 1024, recipients: 1, messages: 5000 },
  { name: 'one/conn   1KB  1 rcpt', perConnection: false, sizeBytes: 1024, recipients: 1, messages: 5000 },
  { name: 'many/conn 100KB 1 rcpt', perConnection: true, sizeBytes: 100 * 1024, recipients: 1, messages: 1000 },
  { name: 'many/conn  1KB 10 rcpt', perConnection: true, sizeBytes: 1024, recipients: 10, messages: 5000 },
];

const server = await startProcess(process.execPath, [serverPath, '0'], { readyPattern: /LISTENING (\d+)/ });
try {
  // Warm-up so the first scenario doesn't also pay for JIT compilation.
  await runSmtpSource({ port: server.port, messages: 500, perConnection: true, sizeBytes: 1024, recipients: 1 });
  console.log(`bare smtp-server on port ${server.port}, pid ${server.child.pid}, 20 sessions`);
  for (const s of scenarios) {
    const rss = sampleRss(server.child.pid);
    const r = await runSmtpSource({ port: server.port, ...s });
    const peak = rss.stop();
    console.log(`${s.name}: ${String(r.msgs).padStart(5)} msgs in ${r.seconds.toFixed(2)} s = ${r.msgsPerSec.toFixed(0).padStart(6)} msgs/s, peak RSS ${peak.toFixed(1)} MB`);
  }
} finally {
  await server.stop();
}
