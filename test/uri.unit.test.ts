/**
 * Link hosts and what their names say (host/smtp/uris.ts, host/dns/names.ts), then the
 * uri-check rule and sender-domain's name-server checks through the rule harness with
 * fake DNS. test/uri.test.ts runs them over SMTP against real DNS servers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { URI_MAX_HOSTS, type MimeFacts } from '../sdk/index.js';
import { ipInName, registeredDomain } from '../host/dns/names.js';
import { linkHost, uriFacts } from '../host/smtp/uris.js';
import { fakeDns, loadRule, type DnsTable } from '../host/testing/harness.js';

const mime = (text: string, html = ''): MimeFacts => ({ text, html, attachments: [], truncated: false, malformed: false });

describe('IP-in-name', () => {
  const cases: [string, string | null][] = [
    ['host-192-0-2-7.dyn.example', '192.0.2.7'],
    ['192.0.2.7.example', '192.0.2.7'],
    ['7-2-0-192.pool.example.net', '7.2.0.192'],
    ['dsl_198_51_100_23.isp.example', '198.51.100.23'],
    ['192000002007.static.example', '192.0.2.7'],
    ['c0000207.dsl.example', '192.0.2.7'],
    ['ns-c0000207-a.example.com', '192.0.2.7'],
    ['www.example.com', null],
    ['mail2024.example.com', null],
    ['host-300-1-2-3.example', null], // 300 is no octet
    ['cafebabe.example', null], // a hex word without a digit
    ['mx1.mail.co.uk', null],
    ['192.0.2.7', null], // an address, not a name
  ];
  for (const [name, ip] of cases) it(`${name} → ${ip ?? 'none'}`, () => assert.equal(ipInName(name), ip));
});

describe('registered domains (Public Suffix List via tldts)', () => {
  it('are the label under the public suffix; IP addresses have none', () => {
    assert.deepEqual(
      ['www.foo.co.uk', 'a.b.example.com', 'ns1.nx-parent.test', 'x.blogspot.com', '192.0.2.7', 'co.uk'].map(registeredDomain),
      ['foo.co.uk', 'example.com', 'nx-parent.test', 'blogspot.com', null, null],
    );
  });
});

describe('link hosts', () => {
  it('reads the host as a browser would: punycode, obfuscated IPs, trailing punctuation, www. links', () => {
    assert.deepEqual(
      ['http://BÜCHER.example/x', 'http://0xC0000207/', 'http://3221225991/a', 'https://shop.example.com/a?b=1).', 'www.example.org,', '//cdn.example.net/x.js', 'http://[2001:db8::1]/', 'mailto:a@b.example', 'http://intranet/', 'cid:part1'].map(linkHost),
      ['xn--bcher-kva.example', '192.0.2.7', '192.0.2.7', 'shop.example.com', 'www.example.org', 'cdn.example.net', '2001:db8::1', null, null, null],
    );
  });

  it('takes bare links from text and HTML and href/src values, each host once, with its domain and IP facts', () => {
    const html = '<a href="http://click.spam.example/track">x</a> <img src=\'//img.host-192-0-2-7.dyn.example/p.gif\'> <a href="http&#58;//hidden.example/">y</a> <a href="/relative">z</a> see www.text-in-html.example';
    const u = uriFacts(mime('Visit https://www.shop.example.co.uk/deal and http://192.0.2.9/x or https://www.shop.example.co.uk/other', html));
    assert.deepEqual(u, {
      truncated: false,
      hosts: [
        { host: 'www.shop.example.co.uk', domain: 'example.co.uk', ip: null, ipInName: null },
        { host: '192.0.2.9', domain: null, ip: '192.0.2.9', ipInName: null },
        { host: 'click.spam.example', domain: 'spam.example', ip: null, ipInName: null },
        { host: 'www.text-in-html.example', domain: 'text-in-html.example', ip: null, ipInName: null },
        { host: 'img.host-192-0-2-7.dyn.example', domain: 'dyn.example', ip: null, ipInName: '192.0.2.7' },
        { host: 'hidden.example', domain: 'hidden.example', ip: null, ipInName: null },
      ],
    });
  });

  it(`keeps at most ${URI_MAX_HOSTS} distinct hosts and says it cut`, () => {
    const text = Array.from({ length: URI_MAX_HOSTS + 5 }, (_, i) => `http://h${i}.example.com/`).join(' ');
    const u = uriFacts(mime(text));
    assert.equal(u.hosts.length, URI_MAX_HOSTS);
    assert.equal(u.hosts.at(-1)!.host, `h${URI_MAX_HOSTS - 1}.example.com`);
    assert.equal(u.truncated, true);
  });
});

const RULE = 'rules/uri-check.ts';
const good = { ip: '192.0.2.1', ptr: 'mx.example.org', helo: 'mx.example.org' };
function message(body: string, html?: string): { headers: Record<string, string>; body: string } {
  const headers: Record<string, string> = { From: 'a@example.org', To: 'user@localhost', Subject: 'links' };
  if (html === undefined) return { headers, body };
  return { headers: { ...headers, 'MIME-Version': '1.0', 'Content-Type': 'text/html; charset=utf-8' }, body: html };
}

async function send(h: Awaited<ReturnType<typeof loadRule>>, body: string, html?: string) {
  const s = await h.connect(good);
  await s.mail('a@example.org');
  await s.rcpt('user@localhost');
  return s.message(message(body, html));
}

describe('uri-check', () => {
  const lists = [
    { zone: 'multi.surbl.test', answers: ['127.0.0.[2..255]'] },
    { zone: 'sbl.test', on: 'ip' },
  ];
  const dns: DnsTable = fakeDns.merge(
    fakeDns.listed('multi.surbl.test', 'spam.example', '127.0.0.16'),
    fakeDns.listed('multi.surbl.test', 'refused.example', '127.0.0.1'),
    fakeDns.listed('sbl.test', '192.0.2.66', '127.0.0.2'),
    fakeDns.timeout('multi.surbl.test', 'slow.example'),
    fakeDns.address('www.good.example'),
    fakeDns.address('www.flux.example'),
    fakeDns.ns('good.example', 'ns1.good.example', 'ns.dns-host.example'),
    fakeDns.address('dns-host.example'),
    fakeDns.ns('flux.example', 'ns1.gone-parent.example', 'ns-198-51-100-4.dyn.example'),
    fakeDns.address('dyn.example'),
  );

  it('refuses a message linking to a listed domain at end of data, 554 5.7.1 naming the domain and the zone', async () => {
    await using h = await loadRule(RULE, { dns, options: { lists } });
    const r = await send(h, 'Buy now: http://www.spam.example/offer');
    assert.equal(r.reply, '554 5.7.1 Message refused: it links to spam.example, listed in multi.surbl.test');
    assert.deepEqual(r.logs, ['it links to spam.example, listed in multi.surbl.test: refused']);
    assert.equal(r.verdict?.action === 'reject' && r.verdict.reason, 'uribl');
  });

  it('finds a listed domain in an HTML href, and an IP link in an IP list', async () => {
    await using h = await loadRule(RULE, { dns, options: { lists } });
    assert.equal((await send(h, '', '<p><a href="https://click.spam.example/x">here</a></p>')).reply, '554 5.7.1 Message refused: it links to spam.example, listed in multi.surbl.test');
    assert.equal((await send(h, 'see http://192.0.2.66/login')).reply, '554 5.7.1 Message refused: it links to 192.0.2.66, listed in sbl.test');
  });

  it('passes clean links, and a code outside `answers` (127.0.0.1: the list refused the query)', async () => {
    await using h = await loadRule(RULE, { dns, options: { lists } });
    const r = await send(h, 'http://www.good.example/ and http://refused.example/');
    assert.equal(r.reply, null);
    assert.deepEqual(r.accepted?.headers, []);
  });

  it('a list that times out: 451 4.4.3 by default, passed and logged with onDnsError ignore', async () => {
    await using h = await loadRule(RULE, { dns, options: { lists } });
    const r = await send(h, 'http://www.slow.example/');
    assert.equal(r.reply, '451 4.4.3 Could not check the links in the message now; try again later');
    assert.deepEqual(r.logs, ['a DNS lookup about its links failed: tempfailed (onDnsError tempfail)']);
    await using lax = await loadRule(RULE, { dns, options: { lists, onDnsError: 'ignore' } });
    const p = await send(lax, 'http://www.slow.example/');
    assert.equal(p.reply, null);
    assert.deepEqual(p.logs, ['a DNS lookup about its links failed: passed (onDnsError ignore)']);
  });

  it('ipLiteral and ipInName refuse links by address and hosts named after one, without DNS', async () => {
    await using h = await loadRule(RULE, { options: { lists: [], ipLiteral: true, ipInName: true } });
    assert.equal((await send(h, 'http://0xC0000207/x')).reply, '554 5.7.1 Message refused: it links to an IP address (192.0.2.7)');
    assert.equal((await send(h, 'http://host-192-0-2-7.dyn.example/')).reply, '554 5.7.1 Message refused: link host host-192-0-2-7.dyn.example has an IP address in its name');
    assert.equal((await send(h, 'http://www.example.com/')).reply, null);
  });

  it('unknownHost, nsNxdomain and ipInNs read the link hosts\' DNS', async () => {
    await using h = await loadRule(RULE, { dns, options: { lists: [], unknownHost: true } });
    assert.equal((await send(h, 'http://www.nowhere.example/')).reply, '554 5.7.1 Message refused: link host www.nowhere.example does not exist');
    assert.equal((await send(h, 'http://www.good.example/')).reply, null);
    await using ns = await loadRule(RULE, { dns, options: { lists: [], nsNxdomain: true } });
    assert.equal((await send(ns, 'http://www.flux.example/')).reply, '554 5.7.1 Message refused: name server ns1.gone-parent.example of link domain flux.example is under a domain that does not exist');
    assert.equal((await send(ns, 'http://www.good.example/')).reply, null);
    await using ip = await loadRule(RULE, { dns, options: { lists: [], ipInNs: true } });
    assert.equal((await send(ip, 'http://www.flux.example/')).reply, '554 5.7.1 Message refused: name server ns-198-51-100-4.dyn.example of link domain flux.example has an IP address in its name');
  });

  it('requirePtr and ipInPtr read the reverse DNS of each link host\'s address, and of links by address', async () => {
    const ptrs = fakeDns.merge(
      fakeDns.address('www.home.example', '198.51.100.7'),
      fakeDns.ptr('198.51.100.7', 'host-198-51-100-7.broadband.example'),
      fakeDns.address('www.good.example', '192.0.2.80'),
      fakeDns.ptr('192.0.2.80', 'www.good.example'),
      fakeDns.address('www.noptr.example', '192.0.2.81'),
    );
    await using h = await loadRule(RULE, { dns: ptrs, options: { lists: [], requirePtr: true, ipInPtr: true } });
    assert.equal((await send(h, 'http://www.noptr.example/')).reply, '554 5.7.1 Message refused: link host www.noptr.example (192.0.2.81) has no reverse DNS');
    assert.equal((await send(h, 'http://198.51.100.99/')).reply, '554 5.7.1 Message refused: link address 198.51.100.99 has no reverse DNS');
    assert.equal((await send(h, 'http://www.home.example/')).reply, '554 5.7.1 Message refused: link host www.home.example (198.51.100.7) has reverse DNS name host-198-51-100-7.broadband.example with an IP address in it');
    assert.equal((await send(h, 'http://www.good.example/ http://192.0.2.80/')).reply, null);
  });

  it('tags with X-URI-Check instead, or scores each kind of finding once', async () => {
    await using tag = await loadRule(RULE, { dns, options: { lists, action: 'tag' } });
    const t = await send(tag, 'http://spam.example/ http://www.spam.example/');
    assert.equal(t.reply, null);
    assert.deepEqual(t.accepted?.headers, [['X-URI-Check', 'it links to spam.example, listed in multi.surbl.test']]);
    await using score = await loadRule(RULE, { dns, options: { lists, ipLiteral: true, score: 3 } });
    const s = await send(score, 'http://spam.example/ http://192.0.2.66/ http://192.0.2.67/');
    assert.equal(s.reply, null);
    assert.deepEqual(s.scores, [['uribl', 3], ['uri-ip-literal', 3]]);
  });

  it('with DNS off it still runs: no lookups, no errors, only the name checks can act', async () => {
    await using h = await loadRule(RULE, { options: { lists } });
    const r = await send(h, 'http://www.spam.example/');
    assert.equal(r.reply, null);
    assert.equal(r.failure, null);
  });

  it('is off unless the config turns it on', async () => {
    const { loadRuleSet } = await import('../host/testing/harness.js');
    await using h = await loadRuleSet();
    assert.ok(!h.rules.includes('uri-check'));
  });
});

describe('sender-domain name-server checks', () => {
  const dns: DnsTable = fakeDns.merge(
    fakeDns.mx('flux.example', 'mx.flux.example'),
    fakeDns.mx('mail.flux.example', 'mx.flux.example'),
    fakeDns.ns('flux.example', 'ns1.gone-parent.example'),
    fakeDns.mx('dyn-ns.example', 'mx.dyn-ns.example'),
    fakeDns.ns('dyn-ns.example', 'ns1.dyn-ns.example', 'ns-198-51-100-4.dynamic.example'),
    fakeDns.address('dynamic.example'),
    fakeDns.mx('fine.example', 'mx.fine.example'),
    fakeDns.ns('fine.example', 'ns1.dns-host.example'),
    fakeDns.address('dns-host.example'),
    fakeDns.mx('broken.example', 'mx.broken.example'),
    { 'lost.example': { MX: ['mx.lost.example'], NS: ['ns1.timeout.example'] }, 'timeout.example': 'ETIMEOUT' },
  );

  it('nsNxdomain refuses a domain delegated under a non-existent domain at MAIL FROM, 550 5.1.8; others pass', async () => {
    await using h = await loadRule('rules/sender-domain.ts', { dns, options: { nsNxdomain: true } });
    const s = await h.connect(good);
    const r = await s.mail('x@mail.flux.example');
    assert.equal(r.reply, '550 5.1.8 Sender address rejected: name server ns1.gone-parent.example of flux.example is under a domain that does not exist');
    assert.deepEqual(r.logs, ['name server ns1.gone-parent.example of flux.example is under a domain that does not exist (gone-parent.example): refused with 550']);
    for (const from of ['x@fine.example', 'x@dyn-ns.example', 'x@lost.example', '']) assert.equal((await s.mail(from)).reply, null, from);
  });

  it('ipInNs refuses a name server with an IP address in its name; 450 4.1.8 with code 450', async () => {
    await using h = await loadRule('rules/sender-domain.ts', { dns, options: { ipInNs: true, code: 450 } });
    const s = await h.connect(good);
    assert.equal((await s.mail('x@dyn-ns.example')).reply, '450 4.1.8 Sender address rejected: name server ns-198-51-100-4.dynamic.example of dyn-ns.example has an IP address in its name');
    assert.equal((await s.mail('x@fine.example')).reply, null);
  });

  it('caches a domain\'s name-server facts, but not when a lookup in them failed', async () => {
    await using h = await loadRule('rules/sender-domain.ts', { dns, options: { nsNxdomain: true } });
    for (const from of ['a@fine.example', 'b@fine.example', 'a@lost.example', 'b@lost.example']) {
      const s = await h.connect(good);
      assert.equal((await s.mail(from)).reply, null, from);
      await s.close();
    }
    assert.equal(await h.metrics.get('dns_lookups_total', { kind: 'ns' }), 3, 'fine.example once, lost.example twice');
    assert.equal(await h.metrics.get('dns_cache_hits_total', { kind: 'ns' }), 1);
    assert.equal(await h.metrics.get('dns_errors_total', { zone: 'ns', code: 'ETIMEOUT' }), 2);
  });

  it('does not look up NS records unless a name-server check is on', async () => {
    await using h = await loadRule('rules/sender-domain.ts', { dns });
    const s = await h.connect(good);
    assert.equal((await s.mail('x@flux.example')).reply, null);
    assert.equal(await h.metrics.get('dns_lookups_total', { kind: 'ns' }), 0);
  });
});
