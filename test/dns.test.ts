/**
 * DNS rules over real SMTP against real DNS servers on 127.0.0.1 (rbldnsd for the lists,
 * dnsmasq as the resolver: see dns-servers.ts). Clients connect from 127.0.0.x source
 * addresses, so each address is a different listing in the test's ZEN-like zone.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { pino } from 'pino';
import { loadConfig } from '../host/config/config.js';
import { nodeBackend } from '../host/dns/backend.js';
import { DnsChecker } from '../host/dns/checker.js';
import { startHost } from '../host/host.js';
import { Metrics } from '../host/metrics.js';
import { MemoryStore } from '../host/store/store.js';
import { dnsServersMissing, startDnsServers, startSilentDns, type DnsServers } from './dns-servers.js';
import { spooled, startTestHost, tempDir, testPasswordHash, type TestHost } from './helpers.js';

const skip = dnsServersMissing();
if (skip) console.log(`# skipping the real-DNS tests: ${skip}`);

const ZONES = {
  ipZones: {
    'zen.test': [
      ':127.0.0.2:Listed in the test SBL, see https://zen.test/$',
      '127.0.0.2',
      '127.0.0.4 :127.0.0.4:XBL listing',
      '127.0.0.10 :127.0.0.10:PBL listing',
      '127.0.0.20 :127.255.255.254:refused',
      '127.0.0.40 :127.0.0.2:SBL',
    ],
    'wl.test': ['127.0.0.40 :127.0.10.3:allow-listed'],
  },
  domainZones: { 'dbl.test': ['spam.example :127.0.1.2:DBL spam domain', 'abused.example :127.0.1.102:abused legit'] },
  localDomain: 'mail.test',
  mx: ['mx.mail.test,mx1.mail.test,10'],
  hosts: ['mx1.mail.test,192.0.2.25', 'aonly.mail.test,192.0.2.26'],
};

const SETTINGS = {
  'spamhaus-zen': { options: { zone: 'zen.test', noPtrIsSign: false } },
  'spamhaus-dbl': { options: { zone: 'dbl.test' } },
  'invalid-recipient': { options: { dnsbl: 'zen.test', noPtrIsSign: false } },
  'identical-sender-rcpt': { options: { dnsbl: 'zen.test' } },
  'subject-spam': { options: { dnsbl: 'zen.test' } },
};

interface SendOptions {
  from?: string;
  to?: string;
  helo?: string;
  auth?: { user: string; pass: string };
}

/** Sends one message from client address `ip`: '250 …' or the refusing reply. */
async function send(port: number, ip: string, subject: string, o: SendOptions = {}): Promise<string> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, localAddress: ip, name: o.helo ?? 'mx.example.org', secure: false, ignoreTLS: true, connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 10000, ...(o.auth ? { auth: o.auth } : {}) });
  try {
    const info = await t.sendMail({ from: o.from ?? 'sender@example.org', to: o.to ?? 'user@localhost', subject, text: 'hello\n', date: new Date() });
    return info.response;
  } catch (e) {
    return (e as { response?: string }).response ?? (e as Error).message;
  } finally {
    t.close();
  }
}

const headerOf = (h: TestHost, subject: string, name: string): string[] => {
  const m = spooled(h.dataDir).find((x) => x.eml.includes(`Subject: ${subject}`));
  assert.ok(m, `message "${subject}" is in the spool`);
  const head = m.eml.toString('latin1').split('\r\n\r\n')[0]!;
  return head.split('\r\n').filter((l) => l.toLowerCase().startsWith(name.toLowerCase() + ':')).map((l) => l.slice(name.length + 1).trim());
};

describe('DNS rules against rbldnsd and dnsmasq', { skip: skip ?? false }, () => {
  let dns: DnsServers;
  let h: TestHost;
  let dir: string;
  before(async () => {
    dir = tempDir('portcullis-dns-');
    dns = await startDnsServers(dir, ZONES);
    h = await startTestHost({
      builtin: true,
      config: { dns: { servers: [dns.server], timeoutMs: 2000 }, mailboxes: ['user@localhost'], auth: { users: { alice: await testPasswordHash('pw') }, allowInsecure: true }, rules: { settings: SETTINGS } },
    });
  });
  after(async () => {
    await h?.close();
    await dns?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ZEN SBL: refused at RCPT with the list named', async () => {
    assert.equal(await send(h.port, '127.0.0.2', 'sbl'), '554 5.7.1 Service unavailable; client [127.0.0.2] blocked using zen.test (SBL)');
    assert.ok(h.logs.some((l) => l.rule === 'spamhaus-zen' && /is in the SBL \(127\.0\.0\.2\)/.test(String(l.msg))));
  });

  it('ZEN XBL: tagged X-Blocked from a clean-looking client, refused after a suspicious HELO', async () => {
    assert.match(await send(h.port, '127.0.0.4', 'xbl-clean'), /^250 /);
    assert.deepEqual(headerOf(h, 'xbl-clean', 'X-Blocked'), ['zen.test (XBL 127.0.0.4)']);
    assert.equal(await send(h.port, '127.0.0.4', 'xbl-bot', { helo: 'bot' }), '554 5.7.1 Service unavailable; client [127.0.0.4] blocked using zen.test (XBL)');
  });

  it('ZEN PBL: X-PBL on port 25, none after AUTH', async () => {
    assert.match(await send(h.port, '127.0.0.10', 'pbl'), /^250 /);
    assert.deepEqual(headerOf(h, 'pbl', 'X-PBL'), ['127.0.0.10 listed in the Spamhaus PBL']);
    assert.match(await send(h.port, '127.0.0.10', 'pbl-auth', { auth: { user: 'alice', pass: 'pw' }, from: 'alice@localhost' }), /^250 /);
    assert.deepEqual(headerOf(h, 'pbl-auth', 'X-PBL'), []);
  });

  it('a refused query (127.255.255.254) is not a listing, and is logged as an error', async () => {
    assert.match(await send(h.port, '127.0.0.20', 'refused'), /^250 /);
    assert.deepEqual(headerOf(h, 'refused', 'X-Blocked'), []);
    assert.ok(h.logs.some((l) => l.level === 50 && /DNS list zen\.test REFUSED our queries/.test(String(l.msg))));
  });

  it('DBL: a spam sender domain is refused at MAIL FROM; an abused legit one is tagged', async () => {
    assert.equal(await send(h.port, '127.0.0.1', 'dbl', { from: 'x@spam.example' }), '550 5.7.1 Sender address rejected: spam.example blocked using dbl.test');
    assert.match(await send(h.port, '127.0.0.1', 'dbl-abused', { from: 'x@abused.example' }), /^250 /);
    assert.deepEqual(headerOf(h, 'dbl-abused', 'X-DBL'), ['abused.example abused-legit (127.0.1.102)']);
  });

  it('sender domain: no MX and no A is refused 550 5.1.8; an MX or an A record is enough', async () => {
    assert.equal(await send(h.port, '127.0.0.1', 'nx', { from: 'x@nowhere.mail.test' }), '550 5.1.8 Sender address rejected: Domain nowhere.mail.test not found');
    assert.match(await send(h.port, '127.0.0.1', 'mx', { from: 'x@mx.mail.test' }), /^250 /);
    assert.match(await send(h.port, '127.0.0.1', 'a-only', { from: 'x@aonly.mail.test' }), /^250 /);
  });

  it('SmtpEvt with a DNSBL hit: a missing mailbox from a listed client is refused; identical sender is dropped', async () => {
    assert.equal(await send(h.port, '127.0.0.4', 'bad-rcpt', { to: 'nobody@localhost' }), '550 5.1.1 No such user here: nobody@localhost');
    assert.equal(await send(h.port, '127.0.0.4', 'identical', { from: 'user@localhost', to: 'user@localhost' }), '421 4.7.0 Message refused');
  });

  it('caches answers: a second session from the same client asks DNS nothing, even after a restart', async () => {
    const name = '30.0.0.127.zen.test';
    const c = await startTestHost({ builtin: true, config: { dns: { servers: [dns.server] }, rules: { settings: SETTINGS } } });
    try {
      assert.match(await send(c.port, '127.0.0.30', 'cache-1'), /^250 /);
      assert.equal(dns.queries(name), 1);
      assert.match(await send(c.port, '127.0.0.30', 'cache-2'), /^250 /);
      assert.equal(dns.queries(name), 1);
      assert.ok((await c.host.metrics.get('dns_cache_hits_total', { kind: 'dnsbl' })) >= 1);
      // The cache lives in the store (SQLite): a restarted host still knows the answer.
      await c.host.close();
      const again = await startHost(loadConfig(c.configFile), { logger: pino({ level: 'silent' }) });
      try {
        assert.match(await send(again.addresses[0]!.port, '127.0.0.30', 'cache-3'), /^250 /);
        assert.equal(dns.queries(name), 1);
      } finally {
        await again.close();
      }
    } finally {
      rmSync(c.dir, { recursive: true, force: true });
    }
  });
});

// These need no DNS server program: the "resolver" is a UDP socket that never answers.
describe('DNS that does not answer', () => {
  it('a lookup past dns.timeoutMs is an error, counted as ETIMEOUT, never a listing', async (t) => {
    const silent = await startSilentDns();
    const metrics = new Metrics();
    const checker = new DnsChecker({ backend: nodeBackend([silent.server], 300), cache: new MemoryStore(), metrics, log: pino({ level: 'silent' }), ttlSeconds: 1800, timeoutMs: 300 });
    try {
      const t0 = performance.now();
      const answer = await checker.list('dnsbl', 'zen.test', '127.0.0.2', Date.now());
      // Timing is for benchmarks; this only shows it (Node's own resolver overshoots on a coarse tick).
      t.diagnostic(`dns.timeoutMs 300: the lookup gave up after ${Math.round(performance.now() - t0)} ms`);
      assert.deepEqual(answer, { status: 'error', codes: [], text: null });
      assert.ok(silent.received() >= 1, 'the query was sent');
      assert.equal(await metrics.get('dns_errors_total', { zone: 'zen.test', code: 'ETIMEOUT' }), 1);
    } finally {
      await silent.close();
    }
  });

  it('times out within dns.timeoutMs: the client counts as not listed and the session proceeds', async () => {
    const silent = await startSilentDns();
    const h = await startTestHost({ builtin: true, config: { dns: { servers: [silent.server], timeoutMs: 300 }, rules: { settings: SETTINGS } } });
    try {
      assert.match(await send(h.port, '127.0.0.2', 'no-dns'), /^250 /);
      assert.ok(silent.received() >= 1, 'the query was sent');
      assert.ok((await h.host.metrics.get('dns_errors_total', { zone: 'zen.test', code: 'ETIMEOUT' })) >= 1);
      assert.ok(h.logs.some((l) => /DNS list zen\.test lookup for 127\.0\.0\.2 failed \(ETIMEOUT\): treated as not listed/.test(String(l.msg))));
    } finally {
      await h.close();
      await silent.close();
    }
  });
});

describe('Weighted lists against rbldnsd', { skip: skip ?? false }, () => {
  it('a listing below the threshold passes, above is refused with the configured text; an allow list subtracts', async () => {
    const dir = tempDir('portcullis-dns-');
    const dns = await startDnsServers(dir, ZONES);
    const settings = {
      'spamhaus-zen': { enabled: false }, 'spamhaus-dbl': { enabled: false }, 'sender-domain': { enabled: false },
      'invalid-recipient': { options: { dnsbl: '' } }, 'identical-sender-rcpt': { options: { dnsbl: '' } }, 'subject-spam': { options: { dnsbl: '' } },
      dnsbl: {
        options: {
          threshold: 2,
          lists: [
            { name: 'zen', zone: 'zen.test', answers: ['127.0.0.[2..3]'], weight: 2, text: 'Mail refused. {ip} is listed: {text}' },
            { name: 'xbl', zone: 'zen.test', answers: ['127.0.0.[4..7]'], weight: 1, action: 'tag', header: 'X-XBL' },
            { name: 'dnswl', zone: 'wl.test', weight: -3 },
          ],
        },
      },
    };
    const h = await startTestHost({ builtin: true, config: { dns: { servers: [dns.server] }, rules: { settings } } });
    try {
      assert.equal(await send(h.port, '127.0.0.2', 'w-sbl'), '550 5.7.1 Mail refused. 127.0.0.2 is listed: Listed in the test SBL, see https://zen.test/127.0.0.2');
      assert.match(await send(h.port, '127.0.0.40', 'w-allowed'), /^250 /); // 2 - 3
      assert.match(await send(h.port, '127.0.0.4', 'w-xbl'), /^250 /); // 1 < 2: not even tagged
      assert.deepEqual(headerOf(h, 'w-xbl', 'X-XBL'), []);
      assert.equal(dns.queries('40.0.0.127.zen.test'), 1); // one lookup per zone, shared by both zen lists
      assert.equal(dns.queries('40.0.0.127.zen.test', 'TXT'), 1); // and the TXT of a listing
    } finally {
      await h.close();
      await dns.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Greylisting and a DNS whitelist against rbldnsd', { skip: skip ?? false }, () => {
  it('a client listed in the dnswl zone is never greylisted; an unlisted one is', async () => {
    const dir = tempDir('portcullis-dns-');
    const dns = await startDnsServers(dir, ZONES);
    const settings = {
      'spamhaus-zen': { enabled: false }, 'spamhaus-dbl': { enabled: false }, 'sender-domain': { enabled: false },
      'invalid-recipient': { options: { dnsbl: '' } }, 'identical-sender-rcpt': { options: { dnsbl: '' } }, 'subject-spam': { options: { dnsbl: '' } },
      greylist: { enabled: true, options: { dnswl: 'wl.test' } },
    };
    const h = await startTestHost({ builtin: true, config: { dns: { servers: [dns.server] }, rules: { settings } } });
    try {
      assert.match(await send(h.port, '127.0.0.40', 'g-listed'), /^250 /);
      assert.equal(await send(h.port, '127.0.0.41', 'g-unlisted'), '421 4.7.1 Greylisted: please try again later');
    } finally {
      await h.close();
      await dns.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
