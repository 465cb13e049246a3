/**
 * uri-check and sender-domain's name-server checks over real SMTP, against real DNS
 * servers on 127.0.0.1 (rbldnsd serves the URI and IP lists, dnsmasq the link hosts,
 * the NS records and NXDOMAIN for everything else under .test: see dns-servers.ts).
 * Messages go in with nodemailer; the tests read the exact reply, the log line naming
 * the rule, and the spool.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import nodemailer from 'nodemailer';
import { dnsServersFor, dnsServersMissing, startSilentDns, type DnsZones } from './dns-servers.js';
import { spooled, startTestHost, type TestHost } from './helpers.js';

const skip = dnsServersMissing();
if (skip) console.log(`# skipping the real-DNS URI tests: ${skip}`);

const ZONES: DnsZones = {
  ipZones: { 'sbl.test': ['192.0.2.66 :127.0.0.2:IP link listed'] },
  domainZones: { 'multi.uribl.test': ['spam-site.test :127.0.0.2:listed in the test URIBL', 'refused-site.test :127.0.0.1:query refused'] },
  localDomain: 'uri.test',
  // Every other name under .test is NXDOMAIN (gone-parent.test, no-such-site.test), and so is
  // the reverse name of every address not given one.
  local: ['test', 'in-addr.arpa'],
  address: { 'www.home-site.test': '192.0.2.91', 'www.noptr-site.test': '192.0.2.93' },
  ptr: { '192.0.2.91': 'host-192-0-2-91.broadband.test' },
  mx: ['flux-sender.test,mx.uri.test,10', 'dynns-sender.test,mx.uri.test,10', 'good-sender.test,mx.uri.test,10', 'cached-sender.test,mx.uri.test,10'],
  hosts: ['mx.uri.test,192.0.2.25', 'www.good-site.test,192.0.2.80', 'www.flux-site.test,192.0.2.81', 'www.refused-site.test,192.0.2.82', 'dns-host.test,192.0.2.53', 'dyn-dns.test,192.0.2.54'],
  ns: {
    'good-site.test': ['ns1.dns-host.test'],
    'home-site.test': ['ns1.dns-host.test'],
    'noptr-site.test': ['ns1.dns-host.test'],
    'refused-site.test': ['ns1.dns-host.test'],
    'flux-site.test': ['ns1.gone-parent.test'],
    'flux-sender.test': ['ns1.gone-parent.test'],
    'dynns-sender.test': ['ns-198-51-100-4.dyn-dns.test'],
    'good-sender.test': ['ns1.dns-host.test'],
    'cached-sender.test': ['ns1.dns-host.test'],
  },
};

/** The built-in rules with DNS options pointed at nothing real, and the two rules under test turned on. */
const SETTINGS = {
  'spamhaus-zen': { enabled: false },
  'spamhaus-dbl': { enabled: false },
  'invalid-recipient': { options: { dnsbl: '' } },
  'identical-sender-rcpt': { options: { dnsbl: '' } },
  'subject-spam': { options: { dnsbl: '' } },
  'uri-check': { enabled: true, options: { lists: [{ zone: 'multi.uribl.test', answers: ['127.0.0.[2..255]'] }, { zone: 'sbl.test', on: 'ip' }], unknownHost: true, nsNxdomain: true, requirePtr: true, ipInPtr: true } },
  'sender-domain': { options: { nsNxdomain: true, ipInNs: true } },
};

/** Sends one message: '250 …' or the refusing reply. */
async function send(port: number, subject: string, o: { from?: string; text?: string; html?: string } = {}): Promise<string> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, name: 'mx.example.org', secure: false, ignoreTLS: true, connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: 10000 });
  try {
    const info = await t.sendMail({ from: o.from ?? 'sender@good-sender.test', to: 'user@localhost', subject, date: new Date(), messageId: `<${subject}@good-sender.test>`, ...(o.text !== undefined ? { text: o.text } : {}), ...(o.html !== undefined ? { html: o.html } : {}) });
    return info.response;
  } catch (e) {
    return (e as { response?: string }).response ?? (e as Error).message;
  } finally {
    t.close();
  }
}

const isSpooled = (h: TestHost, subject: string) => spooled(h.dataDir).some((m) => m.eml.includes(`Subject: ${subject}`));
const ruleLog = (h: TestHost, rule: string, pattern: RegExp) => h.logs.some((l) => l.rule === rule && pattern.test(String(l.msg)));

describe('URI and name-server checks against rbldnsd and dnsmasq', { skip: skip ?? false }, () => {
  const dns = dnsServersFor(ZONES, 'portcullis-uri-');
  let h: TestHost;
  before(async () => {
    h = await startTestHost({ builtin: true, config: { dns: { servers: [dns.server], timeoutMs: 2000 }, mailboxes: ['user@localhost'], rules: { settings: SETTINGS } } });
  });
  after(async () => h?.close());

  it('a link to a domain in the URI list is refused after DATA with 554 5.7.1 naming the domain and the zone, and nothing is spooled', async () => {
    assert.equal(await send(h.port, 'uribl-text', { text: 'Cheap pills at http://www.spam-site.test/buy now\n' }), '554 5.7.1 Message refused: it links to spam-site.test, listed in multi.uribl.test');
    // www.spam-site.test has no address either: the log names every finding, the reply the first.
    assert.ok(ruleLog(h, 'uri-check', /^it links to spam-site\.test, listed in multi\.uribl\.test; link host www\.spam-site\.test does not exist: refused$/));
    assert.equal(isSpooled(h, 'uribl-text'), false);
  });

  it('an HTML link by IP address listed in the IP zone is refused', async () => {
    assert.equal(await send(h.port, 'uribl-ip', { html: '<p>Log in <a href="http://192.0.2.66/bank">here</a></p>' }), '554 5.7.1 Message refused: it links to 192.0.2.66, listed in sbl.test');
  });

  it('a link host that does not exist, and one whose name server is under a non-existent domain, are refused', async () => {
    assert.equal(await send(h.port, 'unknown-host', { text: 'see http://www.no-such-site.test/\n' }), '554 5.7.1 Message refused: link host www.no-such-site.test does not exist');
    assert.equal(await send(h.port, 'ns-nxdomain', { text: 'see http://www.flux-site.test/\n' }), '554 5.7.1 Message refused: name server ns1.gone-parent.test of link domain flux-site.test is under a domain that does not exist');
    assert.ok(ruleLog(h, 'uri-check', /ns1\.gone-parent\.test of link domain flux-site\.test/));
  });

  it('a link host whose address has no reverse DNS, or a reverse name with the address in it, is refused', async () => {
    assert.equal(await send(h.port, 'no-ptr', { text: 'see http://www.noptr-site.test/\n' }), '554 5.7.1 Message refused: link host www.noptr-site.test (192.0.2.93) has no reverse DNS');
    assert.equal(await send(h.port, 'ip-in-ptr', { html: '<a href="https://www.home-site.test/">x</a>' }), '554 5.7.1 Message refused: link host www.home-site.test (192.0.2.91) has reverse DNS name host-192-0-2-91.broadband.test with an IP address in it');
    assert.ok(ruleLog(h, 'uri-check', /host-192-0-2-91\.broadband\.test with an IP address in it: refused/));
  });

  it('clean links, and a list answer outside `answers` (127.0.0.1, a refused query), are delivered', async () => {
    assert.match(await send(h.port, 'clean-links', { text: 'see http://www.good-site.test/ and http://www.refused-site.test/\n' }), /^250 /);
    assert.ok(isSpooled(h, 'clean-links'));
  });

  it('a sender domain delegated to a name server under a non-existent domain is refused at MAIL FROM, 550 5.1.8', async () => {
    assert.equal(await send(h.port, 'sender-ns', { from: 'x@flux-sender.test', text: 'hi\n' }), '550 5.1.8 Sender address rejected: name server ns1.gone-parent.test of flux-sender.test is under a domain that does not exist');
    assert.ok(ruleLog(h, 'sender-domain', /ns1\.gone-parent\.test of flux-sender\.test .*\(gone-parent\.test\): refused with 550/));
  });

  it('name-server answers are cached: a second message from the same sender domain asks DNS nothing more', async () => {
    assert.match(await send(h.port, 'ns-cache-1', { from: 'a@cached-sender.test', text: 'hi\n' }), /^250 /);
    assert.match(await send(h.port, 'ns-cache-2', { from: 'b@cached-sender.test', text: 'hi\n' }), /^250 /);
    assert.equal(dns.queries('cached-sender.test', 'NS'), 1);
  });

  it('a sender domain whose name server has an IP address in its name is refused at MAIL FROM', async () => {
    assert.equal(await send(h.port, 'sender-ip-ns', { from: 'x@dynns-sender.test', text: 'hi\n' }), '550 5.1.8 Sender address rejected: name server ns-198-51-100-4.dyn-dns.test of dynns-sender.test has an IP address in its name');
  });
});

// No DNS server program needed: the resolver is a UDP socket that never answers.
describe('uri-check when DNS does not answer', () => {
  let h: TestHost;
  let silent: Awaited<ReturnType<typeof startSilentDns>>;
  before(async () => {
    silent = await startSilentDns();
    h = await startTestHost({ builtin: true, config: { dns: { servers: [silent.server], timeoutMs: 300 }, mailboxes: ['user@localhost'], rules: { settings: SETTINGS } } });
  });
  after(async () => {
    await h?.close();
    await silent?.close();
  });

  it('answers 451 4.4.3 (the default onDnsError: the sender retries), logged with the rule, nothing spooled', async () => {
    assert.equal(await send(h.port, 'dns-down', { text: 'see http://www.spam-site.test/\n' }), '451 4.4.3 Could not check the links in the message now; try again later');
    assert.ok(ruleLog(h, 'uri-check', /a DNS lookup about its links failed: tempfailed/));
    assert.equal(isSpooled(h, 'dns-down'), false);
  });
});
