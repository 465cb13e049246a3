// What the DNS rules cost: Portcullis with every built-in rule, DNS off vs DNS on against
// real servers on 127.0.0.1 (rbldnsd serving ZEN/DBL-like zones, dnsmasq as the resolver,
// as in test/dns.test.ts), one message per connection so every session asks for its
// facts. smtp-source connects from 127.0.0.1, so after the first session the answers
// come from the store's cache; `--no-cache` (dns.cacheTtlSeconds 0) makes every session
// query DNS. Ratios are to the bare smtp-server measured in the same run.
//
//   npm run build && node bench/dns.mjs [--rounds N] [--messages N]
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runSmtpSource, startProcess, SMTP_SOURCE } from './lib.mjs';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const { startDnsServers } = await import(join(ROOT, 'dist', 'test', 'dns-servers.js'));
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, messages: { type: 'string', default: '3000' } } });
const ROUNDS = Number(values.rounds);
const N = Number(values.messages);

mkdirSync(join(ROOT, 'data'), { recursive: true });
const work = mkdtempSync(join(ROOT, 'data', 'bench-dns-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const dns = await startDnsServers(mkdtempSync(join(work, 'zones-')), {
  ipZones: { 'zen.test': ['127.0.0.2 :127.0.0.2:SBL'] },
  domainZones: { 'dbl.test': ['spam.example :127.0.1.2:DBL'] },
  localDomain: 'mail.test',
  mx: [],
  hosts: [],
});

const SETTINGS = {
  'spamhaus-zen': { options: { zone: 'zen.test' } },
  'spamhaus-dbl': { options: { zone: 'dbl.test' } },
  'invalid-recipient': { options: { dnsbl: 'zen.test' } },
  'identical-sender-rcpt': { options: { dnsbl: 'zen.test' } },
  'subject-spam': { options: { dnsbl: 'zen.test' } },
  // smtp-source's sender domain is the machine's name, which has no MX here
  'sender-domain': { enabled: false },
};

/** A fresh data dir per start: no run inherits another's cache, counters or blacklist. */
function portcullis(name, dnsConfig) {
  return () => {
    const dir = mkdtempSync(join(work, `${name}-`));
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({
      listen: ['127.0.0.1:0'], dataDir: join(dir, 'data'), reverseDns: false, limits: { maxClients: 1000 },
      rules: { builtin: true, settings: SETTINGS }, ...(dnsConfig ? { dns: dnsConfig } : {}),
      delivery: { queue: { hold: true } }, // measure the front door, not the queue
    }));
    return startProcess(process.execPath, [join(ROOT, 'bin', 'portcullis.js'), 'start', '--config', file], { readyPattern: /listening on 127\.0\.0\.1:(\d+)/ });
  };
}

const VARIANTS = {
  'bare smtp-server': () => startProcess(process.execPath, [join(ROOT, 'bench', 'bare-server.mjs'), '0'], { readyPattern: /LISTENING (\d+)/ }),
  'built-in rules, DNS off': portcullis('off', null),
  'built-in rules, DNS on (cached)': portcullis('on', { servers: [dns.server] }),
  'built-in rules, DNS on, no cache': portcullis('nocache', { servers: [dns.server], cacheTtlSeconds: 0 }),
};

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const scenario = { perConnection: false, sizeBytes: 1024, recipients: 1, messages: N };
console.log(`smtp-source: ${SMTP_SOURCE}, 20 sessions, one message per connection, ${N} messages; ${ROUNDS} rounds, median\n`);
const runs = Object.fromEntries(Object.keys(VARIANTS).map((v) => [v, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [v, start] of Object.entries(VARIANTS)) {
    const srv = await start();
    try {
      await runSmtpSource({ port: srv.port, messages: 300, perConnection: false, sizeBytes: 1024 }); // warm-up
      runs[v].push((await runSmtpSource({ port: srv.port, ...scenario })).msgsPerSec);
    } finally {
      await srv.stop();
    }
  }
}
const bare = median(runs['bare smtp-server']);
const off = median(runs['built-in rules, DNS off']);
console.table(Object.entries(runs).map(([v, rs]) => ({ variant: v, 'msgs/s': Math.round(median(rs)), 'ratio to bare': (median(rs) / bare).toFixed(2), 'ratio to DNS off': (median(rs) / off).toFixed(2) })));
console.log(`DNS queries for 1.0.0.127.zen.test seen by the resolver: ${dns.queries('1.0.0.127.zen.test')}`);
await dns.close();
