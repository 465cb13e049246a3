/**
 * The SPF fact (RFC 7208, through mailauth) against a real resolver: dnsmasq serves the
 * SPF records as TXT (see dns-servers.ts), and clients connect from 127.0.x.y addresses
 * those records name or do not. Then the rules that use it, over real SMTP: the access
 * map's SPF-PASS and greylisting keyed on the SPF-validated sender domain.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { nodeBackend } from '../host/dns/backend.js';
import { DnsChecker } from '../host/dns/checker.js';
import { Metrics } from '../host/metrics.js';
import { MemoryStore } from '../host/store/store.js';
import { dnsServersFor, dnsServersMissing, startSilentDns, type DnsZones } from './dns-servers.js';
import { RawSmtp, spooled, startTestHost, type TestHost } from './helpers.js';

const skip = dnsServersMissing();
if (skip) console.log(`# skipping the real-DNS SPF tests: ${skip}`);

const ZONES: DnsZones = {
  ipZones: { 'zen.test': ['127.0.0.61 :127.0.0.2:SBL', '127.0.0.62 :127.0.0.2:SBL'] },
  domainZones: {},
  localDomain: 'mail.test',
  mx: [],
  // The sender-domain rule wants the sender domains to exist: an A record each.
  hosts: ['partner.example,192.0.2.61', 'chain.example,192.0.2.62', 'rotating.example,192.0.2.71', 'quiet.example,192.0.2.81', 'nospf.mail.test,192.0.2.91'],
  spf: {
    'partner.example': 'v=spf1 ip4:127.0.0.61 -all',
    'soft.example': 'v=spf1 ip4:192.0.2.1 ~all',
    'neutral.example': 'v=spf1 ?all',
    'chain.example': 'v=spf1 include:partner.example -all',
    'broken.example': 'v=spf1 ip4:127.0.0.61 redirect=partner.example redirect=soft.example',
    'rotating.example': 'v=spf1 ip4:127.0.0.71 ip4:127.0.1.72 -all',
    'quiet.example': 'v=spf1 ip4:127.0.0.81 -all',
  },
};

// Keep the other DNS rules on the test's own zones (the resolver knows no public ones).
const QUIET_DNS_RULES = {
  'spamhaus-zen': { options: { zone: 'zen.test', noPtrIsSign: false } },
  'spamhaus-dbl': { enabled: false },
  'invalid-recipient': { options: { dnsbl: '' } },
  'identical-sender-rcpt': { options: { dnsbl: '' } },
  'subject-spam': { options: { dnsbl: '' } },
};

const silentLog = pino({ level: 'silent' });

// One dnsmasq serving the zones for every test of the file.
describe('SPF against dnsmasq', { skip: skip ?? false }, () => {
  const dns = dnsServersFor(ZONES, 'portcullis-spf-');

  describe('the SPF fact', () => {
    const checker = (metrics = new Metrics()) => new DnsChecker({ backend: nodeBackend([dns.server], 2000), cache: new MemoryStore(), metrics, log: silentLog, ttlSeconds: 1800, timeoutMs: 2000 });

    it('pass, fail, softfail, neutral and none, as the sender domain publishes them', async () => {
      const c = checker();
      const now = Date.now();
      const check = async (ip: string, sender: string) => (await c.spf(ip, sender, 'mx.example.net', now)).result;
      assert.equal(await check('127.0.0.61', 'news@partner.example'), 'pass');
      assert.equal(await check('127.0.0.62', 'news@partner.example'), 'fail');
      assert.equal(await check('127.0.0.62', 'news@soft.example'), 'softfail');
      assert.equal(await check('127.0.0.62', 'news@neutral.example'), 'neutral');
      assert.equal(await check('127.0.0.62', 'news@nospf.mail.test'), 'none', 'no TXT record');
      assert.equal(await check('127.0.0.62', 'news@nowhere.mail.test'), 'none', 'no such domain (RFC 7208 §4.3)');
      assert.equal(await check('127.0.0.61', 'news@chain.example'), 'pass', 'through an include');
      assert.equal(await check('127.0.0.61', 'news@broken.example'), 'permerror', 'an unknown mechanism');
      assert.deepEqual(await c.spf('127.0.0.61', 'news@Partner.Example', null, now), { result: 'pass', domain: 'partner.example', identity: 'mailfrom' });
    });

    it('for the null sender the HELO name is checked (RFC 7208 §2.4); a HELO that is no domain gives none without DNS', async () => {
      const c = checker();
      assert.deepEqual(await c.spf('127.0.0.61', '', 'partner.example', Date.now()), { result: 'pass', domain: 'partner.example', identity: 'helo' });
      assert.deepEqual(await c.spf('127.0.0.61', '', '[127.0.0.61]', Date.now()), { result: 'none', domain: '[127.0.0.61]', identity: 'helo' });
    });

    it('is cached per client IP and sender domain: the next sender of the domain from that client asks DNS nothing', async () => {
      const metrics = new Metrics();
      const c = checker(metrics);
      const before = dns.queries('quiet.example', 'TXT');
      assert.equal((await c.spf('127.0.0.81', 'a@quiet.example', null, Date.now())).result, 'pass');
      assert.equal((await c.spf('127.0.0.81', 'b@quiet.example', null, Date.now())).result, 'pass');
      assert.equal(dns.queries('quiet.example', 'TXT') - before, 1);
      assert.equal(await metrics.get('dns_cache_hits_total', { kind: 'spf' }), 1);
      assert.equal((await c.spf('127.0.0.82', 'a@quiet.example', null, Date.now())).result, 'fail', 'another client is another question');
      assert.equal(dns.queries('quiet.example', 'TXT') - before, 2);
    });
  });

  // No DNS server program needed: the "resolver" is a UDP socket that never answers.
  describe('the SPF fact when DNS does not answer', () => {
    it('is a temperror within dns.timeoutMs, counted as ETIMEOUT, and not cached', async () => {
      const silent = await startSilentDns();
      const metrics = new Metrics();
      const c = new DnsChecker({ backend: nodeBackend([silent.server], 300), cache: new MemoryStore(), metrics, log: silentLog, ttlSeconds: 1800, timeoutMs: 300 });
      try {
        assert.deepEqual(await c.spf('127.0.0.61', 'news@partner.example', null, Date.now()), { result: 'temperror', domain: 'partner.example', identity: 'mailfrom' });
        assert.equal(await metrics.get('dns_errors_total', { zone: 'spf', code: 'ETIMEOUT' }), 1);
        const sent = silent.received();
        assert.ok(sent >= 1, 'the TXT query was sent');
        assert.equal((await c.spf('127.0.0.61', 'news@partner.example', null, Date.now())).result, 'temperror');
        assert.ok(silent.received() > sent, 'asked again: a temperror is not cached');
      } finally {
        await silent.close();
      }
    });
  });

  /** One session from `ip`: EHLO, MAIL FROM `from`, RCPT user@localhost and, when that is accepted, a message. The RCPT (or MAIL) reply. */
  async function attempt(port: number, ip: string, from: string, subject = 'spf'): Promise<string> {
    const { c } = await RawSmtp.open(port, ip);
    try {
      await c.cmd('EHLO mx.example.net');
      const mail = await c.cmd(`MAIL FROM:<${from}>`);
      if (!mail.startsWith('250')) return mail;
      const rcpt = await c.cmd('RCPT TO:<user@localhost>');
      if (rcpt.startsWith('250')) {
        assert.match(await c.cmd('DATA'), /^354 /);
        assert.match(await c.cmd(`From: ${from}\r\nSubject: ${subject}\r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\n\r\nhello\r\n.`), /^250 /);
      }
      return rcpt;
    } finally {
      c.end();
    }
  }

  describe('rules on the SPF fact, over SMTP', () => {

    async function host(settings: Record<string, unknown>): Promise<TestHost> {
      return startTestHost({ builtin: true, config: { dns: { servers: [dns.server] }, delivery: { queue: { hold: true } }, mailboxes: ['user@localhost'], rules: { settings: { ...QUIET_DNS_RULES, ...settings } } } });
    }

    it('a host with no rule that needs SPF makes no SPF lookup', async () => {
      const h = await host({ access: { enabled: true, options: { entries: ['From:quiet.example OK'], storeList: null } } });
      try {
        const before = dns.queries('quiet.example', 'TXT');
        assert.equal(await attempt(h.port, '127.0.0.81', 'news@quiet.example'), '250 2.1.5 Accepted');
        assert.equal(dns.queries('quiet.example', 'TXT'), before);
        assert.ok(dns.queries('quiet.example', 'A') >= 1, 'the sender domain was looked up for its MX/A, so DNS was on');
      } finally {
        await h.close();
      }
    });

    it('access OK: a whitelisted sender delivers although rbldnsd lists its client (whitelists are honored first); another sender from it is refused', async () => {
      const h = await host({ access: { enabled: true, options: { entries: ['From:quiet.example OK'], storeList: null } } });
      try {
        assert.equal(await attempt(h.port, '127.0.0.62', 'news@quiet.example', 'whitelisted'), '250 2.1.5 Accepted');
        assert.equal(spooled(h.dataDir).length, 1);
        assert.equal(await attempt(h.port, '127.0.0.62', 'news@chain.example'), '554 5.7.1 Service unavailable; client [127.0.0.62] blocked using zen.test (SBL)');
      } finally {
        await h.close();
      }
    });

    it("access SPF-PASS: a partner's own server is whitelisted although a block list names it; another listed client is refused", async () => {
      const h = await host({ access: { enabled: true, options: { entries: ['From:partner.example SPF-PASS'] } } });
      try {
        assert.equal(await attempt(h.port, '127.0.0.61', 'news@partner.example', 'from-partner'), '250 2.1.5 Accepted');
        assert.equal(spooled(h.dataDir).length, 1);
        assert.ok(h.logs.some((l) => l.rule === 'access' && l.phase === 'mail' && l.action === 'accept' && l.reason === 'access-spf-pass'), 'the access rule whitelisted it');
        assert.equal(await attempt(h.port, '127.0.0.62', 'news@partner.example'), '554 5.7.1 Service unavailable; client [127.0.0.62] blocked using zen.test (SBL)', 'SPF fails for it');
        assert.equal(await attempt(h.port, '127.0.0.61', 'news@chain.example'), '554 5.7.1 Service unavailable; client [127.0.0.61] blocked using zen.test (SBL)', 'SPF passes, but the map does not name that domain');
      } finally {
        await h.close();
      }
    });

    it('greylisting keyed on the SPF domain: a retry from another network the sender publishes passes; without a pass, the network is the key', async () => {
      const h = await host({ greylist: { enabled: true, options: { key: 'spf-domain', retrySeconds: 1 } } });
      const GREY = '421 4.7.1 Greylisted: please try again later';
      try {
        assert.equal(await attempt(h.port, '127.0.0.71', 'news@rotating.example'), GREY);
        assert.equal(await attempt(h.port, '127.0.2.73', 'news@nospf.mail.test'), GREY);
        const first = Date.now();
        // Retry as an MTA's queue would, from the sender's other server, until the window has gone by (bounded).
        let reply = '';
        while (Date.now() - first < 5000 && !(reply = await attempt(h.port, '127.0.1.72', 'news@rotating.example', 'rotated')).startsWith('250')) await new Promise((r) => setTimeout(r, 250));
        assert.equal(reply, '250 2.1.5 Accepted');
        const passed = spooled(h.dataDir).map((m) => m.eml.toString()).find((m) => m.includes('Subject: rotated'));
        assert.match(passed!, /\r\nX-Grey-Report: age=\d+s; key=spf-domain; triplet=rotating\.example\|news@rotating\.example\|user@localhost; started=\S+\r\n/);
        assert.equal(await attempt(h.port, '127.0.3.74', 'news@nospf.mail.test'), GREY, 'no SPF: another network is another triplet');
        assert.equal(await attempt(h.port, '127.0.2.75', 'news@nospf.mail.test'), '250 2.1.5 Accepted', 'no SPF: the same /24 is the same triplet');
      } finally {
        await h.close();
      }
    });
  });
});
